//! Loading a model and its LOF index as the configuration says: the one place that
//! turns `Config` into the core's settings.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oodgate_lof::{HnswParams, LofIndex, SearchMode};

use crate::app::config::{self, Config, GateSpec};
use crate::core::detector::{Detector, DetectorError, DetectorSettings};
use crate::core::embed::{EmbedError, Embedder, SessionOptions};
use crate::core::gate::{GateConfig, Source};
use crate::core::model::{ModelError, ModelFiles, ModelVariant};
use crate::core::pipeline::PipelineSettings;
use crate::core::preprocess::Limits;
use crate::core::reference::{self, Provenance, ReadOptions, ReferenceError};
use crate::core::runtime::{self, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Detector(#[from] DetectorError),
    // The LOF errors name the file themselves.
    #[error("LOF index: {source}")]
    Index {
        path: PathBuf,
        source: oodgate_lof::LofError,
    },
    #[error("LOF: {0}")]
    Lof(#[from] oodgate_lof::LofError),
    #[error("training data for the index: {0}")]
    Data(#[from] oodgate_datasets::DatasetError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A set that cannot be read, with where it was named (the gate config's field, or
    /// the command line's option), since its own message names only its files.
    #[error("{origin}: {source}")]
    Set {
        origin: String,
        source: ReferenceError,
    },
    #[error(
        "{origin}: {count} items, but LOF with k = {k} ({k_field}) needs at least {}; add images or lower k",
        k + 1
    )]
    TooFewItems {
        origin: String,
        count: usize,
        k: usize,
        k_field: String,
    },
    #[error(
        "{path}: no [reference] set to build the index from; add one, or give --reference to `oodgate index build`"
    )]
    NoReference { path: PathBuf },
    #[error(
        "{field} = \"{variant}\": {path} does not exist (`train/quantize.py {dir}` writes it)",
        variant = variant.as_str(),
        dir = dir.display(),
        path = path.display()
    )]
    MissingVariant {
        field: String,
        variant: ModelVariant,
        path: PathBuf,
        dir: PathBuf,
    },
    #[error("{dir}: classes.json names {names} classes, at most 256 are supported")]
    TooManyClasses { dir: PathBuf, names: usize },
    #[error("{dir}: classes.json names {names} classes, the model's class output has {outputs}")]
    Classes {
        dir: PathBuf,
        names: usize,
        outputs: usize,
    },
    #[error("index {path}: unreadable provenance: {message}")]
    Provenance { path: PathBuf, message: String },
    #[error(
        "index {path} was built for gate config {found}, {dir} has {wanted} (its input, embedding output, k, reference or calibration set changed); rebuild it with `oodgate index build --gate {dir}`"
    )]
    IndexConfig {
        path: PathBuf,
        found: String,
        wanted: String,
        dir: PathBuf,
    },
    #[error(
        "index {path} was built with k={found}, the config asks for k={wanted}; delete it or set index.k"
    )]
    IndexK {
        path: PathBuf,
        found: usize,
        wanted: usize,
    },
}

/// Loads a gate's model and its index, building and caching the index from the
/// reference set when there is none yet (the gate's `[reference]`, or MNIST train for a
/// model folder without gate.toml).
pub fn detector(config: &Config, gate: &GateSpec) -> Result<Detector, LoadError> {
    let mut config = config.clone();
    config.model.dir = gate.dir.clone();
    config.index.path = gate.index_path.clone();
    config.model.variant = gate.variant;
    let field = gate.variant_field(&config);
    let config = &config;
    let (model, embedder) = variant_embedder(config, field)?;
    let path = index_path(config, &model);
    let settings = detector_settings(config, &model);
    let (mut index, provenance) = if path.is_file() {
        let started = Instant::now();
        let loaded = load_index(&path, &model)?;
        tracing::info!(path = %path.display(), count = loaded.0.len(), graph = loaded.0.has_graph(), seconds = started.elapsed().as_secs_f64(), "index loaded");
        loaded
    } else {
        tracing::info!(path = %path.display(), "no index yet: building it from the reference set");
        let built = build_index(&embedder, &model, config, &IndexOptions::default())?;
        write_index(&built.index, Some(&built.provenance), &path, &model)?;
        (built.index, Some(built.provenance))
    };
    if needs_graph(config) && !index.has_graph() {
        tracing::info!(path = %path.display(), "index.search is hnsw and the index has no graph: building it");
        index.add_graph(false)?;
        // Kept for the next start when the index is the server's own cache; a file the
        // operator named is left as it is.
        if path.starts_with(&config.index.cache_dir) {
            write_index(&index, provenance.as_ref(), &path, &model)?;
        }
    }
    if index.k() != settings.k {
        return Err(LoadError::IndexK {
            path,
            found: index.k(),
            wanted: settings.k,
        });
    }
    Ok(Detector::new(
        model,
        embedder,
        index,
        settings.detector,
        provenance,
    )?)
}

/// Loads an index artifact, refusing one built for another model or another gate
/// config (`index_sha256`: input, embedding output, k, reference and calibration sets).
pub fn load_index(
    path: &Path,
    model: &ModelFiles,
) -> Result<(LofIndex, Option<Provenance>), LoadError> {
    let (index, provenance) =
        LofIndex::load_with_provenance(path, &model.sha256).map_err(|source| LoadError::Index {
            path: path.to_path_buf(),
            source,
        })?;
    let provenance: Option<Provenance> = provenance
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| LoadError::Provenance {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let wanted = model.gate.as_ref().map(|g| g.index_sha256.clone());
    let found = provenance.as_ref().and_then(|p| p.gate_config.clone());
    if wanted != found {
        return Err(LoadError::IndexConfig {
            path: path.to_path_buf(),
            found: found.unwrap_or_else(|| "none".into()),
            wanted: wanted.unwrap_or_else(|| "none (no gate.toml)".into()),
            dir: model.dir.clone(),
        });
    }
    Ok((index, provenance))
}

/// The configured model's files (`model.variant` of `model.dir`) and its ONNX session.
pub fn embedder(config: &Config) -> Result<(ModelFiles, Embedder), LoadError> {
    variant_embedder(config, "model.variant".into())
}

/// [`embedder`], naming `field` as the setting that chose the variant when its file is
/// missing.
fn variant_embedder(config: &Config, field: String) -> Result<(ModelFiles, Embedder), LoadError> {
    let env = runtime::environment(Some(&config.model.ort_dylib_path))?;
    let model = model_files(config, field)?;
    let embedder = model_embedder(env, &model, session_options(config))?;
    Ok((model, embedder))
}

/// The files of `model.variant` in `model.dir`; `field` names the setting in the error
/// when the variant's file is missing.
pub fn model_files(config: &Config, field: String) -> Result<ModelFiles, LoadError> {
    let variant = config.model.variant;
    let path = config.model.dir.join(variant.file_name());
    // model.onnx missing stays the model folder's own error; a missing variant is the
    // setting's.
    if variant != ModelVariant::Fp32 && !path.is_file() {
        return Err(LoadError::MissingVariant {
            field,
            variant,
            path,
            dir: config.model.dir.clone(),
        });
    }
    Ok(ModelFiles::load_variant(&config.model.dir, variant)?)
}

/// The ONNX session of a model folder, reading the input and outputs its gate config names.
pub fn model_embedder(
    env: &ort::environment::Environment,
    model: &ModelFiles,
    options: SessionOptions,
) -> Result<Embedder, LoadError> {
    let mut embedder = Embedder::load_with(env, &model.onnx_path, options, &model.io())?;
    embedder.input.transform = model.transform(embedder.input.channels)?;
    // The index stores a label per item in one byte.
    if model.classes.len() > 256 {
        return Err(LoadError::TooManyClasses {
            dir: model.dir.clone(),
            names: model.classes.len(),
        });
    }
    if embedder.classes != model.classes.len() {
        return Err(LoadError::Classes {
            dir: model.dir.clone(),
            names: model.classes.len(),
            outputs: embedder.classes,
        });
    }
    Ok(embedder)
}

/// How one gate judges: the server's `[index]` section, overridden by the gate config's
/// `[lof]`.
pub struct GateSettings {
    pub k: usize,
    pub detector: DetectorSettings,
}

pub fn detector_settings(config: &Config, model: &ModelFiles) -> GateSettings {
    let lof = model
        .gate
        .as_ref()
        .map(|g| g.file.lof.clone())
        .unwrap_or_default();
    GateSettings {
        k: lof.k.unwrap_or(config.index.k),
        detector: DetectorSettings {
            search: search_mode(config),
            contamination: lof.contamination.unwrap_or(config.index.contamination),
            distance_check: lof.distance_check.unwrap_or(config.index.distance_check),
        },
    }
}

pub fn session_options(config: &Config) -> SessionOptions {
    SessionOptions {
        intra_threads: config.model.intra_threads,
        optimization_level: config.model.optimization_level,
        intra_spinning: config.model.intra_spinning,
        small_batch_max: config.model.small_batch_max,
    }
}

pub fn search_mode(config: &Config) -> SearchMode {
    match config.index.search {
        config::SearchMode::Exact => SearchMode::Exact,
        config::SearchMode::Hnsw => SearchMode::Hnsw {
            ef: config.index.ef,
        },
    }
}

/// Whether the gates search with the HNSW graph, so their indexes need one.
pub fn needs_graph(config: &Config) -> bool {
    config.index.search == config::SearchMode::Hnsw
}

pub fn hnsw_params(config: &Config) -> HnswParams {
    HnswParams {
        max_nb_connection: config.index.hnsw_m,
        ef_construction: config.index.hnsw_ef_construction,
        ef_search: config.index.ef,
    }
}

/// What the pipeline needs from the `server` and `batching` sections.
pub fn pipeline_settings(config: &Config) -> PipelineSettings {
    let server = &config.server;
    PipelineSettings {
        max_batch_size: config.batching.max_batch_size,
        max_wait: Duration::from_micros(config.batching.max_wait_micros),
        queue_capacity: config.batching.queue_capacity,
        max_images: server.max_images_per_request,
        limits: Limits {
            max_side: server.max_image_side,
            max_pixels: server.max_image_pixels,
        },
        sources: server.sources.clone(),
        max_sources: server.max_sources,
        timeout: (server.request_timeout_seconds > 0.0)
            .then(|| Duration::from_secs_f64(server.request_timeout_seconds)),
        max_streams: server.max_streams,
        // Three quarters of the grace period, leaving the rest to answer what was read.
        read_after_drain: Duration::from_secs(server.shutdown_grace_seconds) * 3 / 4,
    }
}

/// The configured artifact; else the gate folder's index of the model's variant
/// (`index.lof`, `index.int8.lof`) when it has one; else
/// one per model (and gate config) hash and k in the cache folder.
pub fn index_path(config: &Config, model: &ModelFiles) -> PathBuf {
    if !config.index.path.as_os_str().is_empty() {
        return config.index.path.clone();
    }
    let in_folder = model.dir.join(model.variant.gate_index_file());
    if model.gate.is_some() && in_folder.is_file() {
        return in_folder;
    }
    let k = detector_settings(config, model).k;
    let name = match &model.gate {
        None => format!("{}-{}-k{k}.lof", model.name, &model.sha256[..12]),
        Some(gate) => format!(
            "{}-{}-{}-k{k}.lof",
            model.name,
            &model.sha256[..12],
            &gate.index_sha256[..8]
        ),
    };
    Path::new(&config.index.cache_dir).join(name)
}

/// What to build an index from, when not the gate's own `[reference]` and
/// `[calibration]`: the sets `oodgate index build` was given (errors about them name
/// its `--reference` and `--calibration`).
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    pub reference: Option<Source>,
    /// A held-out set and the false-rejection rate to fix the default threshold at.
    pub calibration: Option<(Source, f64)>,
    pub skip_unreadable: bool,
    pub progress: bool,
    /// Build the HNSW graph even when the configuration searches exactly (it is built
    /// anyway when `index.search` is `hnsw`).
    pub graph: bool,
}

/// An index and what it records about its sets.
pub struct BuiltIndex {
    pub index: LofIndex,
    pub provenance: Provenance,
}

/// Embeds the reference set and fits the LOF index on it (exact neighbours, then the
/// HNSW graph and its recall check), then calibrates the default threshold when a
/// calibration set is given. The reference set: `options`, else the gate's
/// `[reference]`, else (for a model folder without gate.toml) MNIST train.
pub fn build_index(
    embedder: &Embedder,
    model: &ModelFiles,
    config: &Config,
    options: &IndexOptions,
) -> Result<BuiltIndex, LoadError> {
    let gate = model.gate.as_ref();
    let reference = match (&options.reference, gate) {
        (Some(source), _) => source.clone(),
        (None, Some(gate)) => gate
            .reference
            .clone()
            .ok_or_else(|| LoadError::NoReference {
                path: gate.path.clone(),
            })?,
        (None, None) => Source::Dataset {
            id: oodgate_datasets::DatasetId::Mnist,
            split: oodgate_datasets::Split::Train,
        },
    };
    let calibration = options
        .calibration
        .clone()
        .or_else(|| gate.and_then(|g| g.calibration.clone()));
    let read = ReadOptions {
        classes: &model.classes,
        skip_unreadable: options.skip_unreadable,
        progress: options.progress,
    };
    let reference_origin = set_origin(options.reference.is_some(), gate, "reference", &reference);
    let named = |origin: &Option<String>| {
        let origin = origin.clone();
        move |source: ReferenceError| match origin {
            Some(origin) => LoadError::Set { origin, source },
            None => LoadError::Reference(source),
        }
    };
    let set =
        reference::embed_source(&reference, embedder, read).map_err(named(&reference_origin))?;
    let settings = detector_settings(config, model);
    if set.record.count <= settings.k {
        let k_field = match gate {
            Some(gate) if gate.file.lof.k.is_some() => format!("lof.k of {}", gate.path.display()),
            _ => "index.k of the server config".into(),
        };
        return Err(LoadError::TooFewItems {
            origin: reference_origin.unwrap_or_else(|| set.record.location.clone()),
            count: set.record.count,
            k: settings.k,
            k_field,
        });
    }
    // Exact search needs no graph, and the graph is most of a build's time.
    let build = match options.graph || needs_graph(config) {
        true => LofIndex::build,
        false => LofIndex::build_exact,
    };
    let (index, report) = build(
        set.embeddings,
        set.labels,
        embedder.embedding_dim,
        settings.k,
        hnsw_params(config),
        options.progress,
    )?;
    tracing::info!(
        count = index.len(),
        knn_seconds = report.knn.as_secs_f64(),
        graph_seconds = report.graph.map(|g| g.build.as_secs_f64()),
        total_seconds = report.total.as_secs_f64(),
        recall = ?report.graph.map(|g| g.recall),
        "index built"
    );
    let calibration = match calibration {
        None => None,
        Some((source, rate)) => {
            let origin = set_origin(options.calibration.is_some(), gate, "calibration", &source);
            let held_out =
                reference::embed_source(&source, embedder, read).map_err(named(&origin))?;
            let calibration = reference::calibrate(&index, held_out, rate)?;
            tracing::info!(
                count = calibration.set.count,
                rate,
                rejected_lof = calibration.rejected_lof,
                rejected_fused = calibration.rejected_fused,
                "default threshold calibrated"
            );
            Some(calibration)
        }
    };
    Ok(BuiltIndex {
        index,
        provenance: Provenance {
            gate_config: gate.map(|g| g.index_sha256.clone()),
            reference: set.record,
            calibration,
        },
    })
}

/// Where a set was named, for its errors: `--<section>` when the command line gave it,
/// else the gate config's field; `None` for a model folder's default set.
fn set_origin(
    given: bool,
    gate: Option<&GateConfig>,
    section: &str,
    source: &Source,
) -> Option<String> {
    match (given, gate) {
        (true, _) => Some(format!("--{section}")),
        (false, Some(gate)) => Some(field_origin(gate, section, source)),
        (false, None) => None,
    }
}

/// `<gate.toml>: <section>.<form>`, e.g. `models/x/gate.toml: reference.folder`.
fn field_origin(gate: &GateConfig, section: &str, source: &Source) -> String {
    let form = match source {
        Source::Dataset { .. } => "dataset",
        Source::Folder(_) => "folder",
        Source::Idx { .. } => "idx",
        Source::Cifar10(_) => "cifar10",
        Source::Npy { .. } => "npy",
    };
    format!("{}: {section}.{form}", gate.path.display())
}

/// Writes a built index with its provenance.
pub fn save_index(built: &BuiltIndex, path: &Path, model: &ModelFiles) -> Result<(), LoadError> {
    write_index(&built.index, Some(&built.provenance), path, model)
}

fn write_index(
    index: &LofIndex,
    provenance: Option<&Provenance>,
    path: &Path,
    model: &ModelFiles,
) -> Result<(), LoadError> {
    let provenance = provenance.map(|p| serde_json::to_value(p).expect("plain data serialises"));
    index
        .save_with_provenance(path, &model.sha256, provenance)
        .map_err(|source| LoadError::Index {
            path: path.to_path_buf(),
            source,
        })
}
