//! Loading a model and its LOF index as the configuration says: the one place that
//! turns `Config` into the core's settings.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oodgate_lof::{HnswParams, LofIndex, SearchMode};

use crate::app::config::{self, Config, GateSpec};
use crate::core::detector::{Detector, DetectorError, DetectorSettings};
use crate::core::embed::{EmbedError, Embedder, SessionOptions, embed_dataset};
use crate::core::model::{ModelError, ModelFiles};
use crate::core::pipeline::PipelineSettings;
use crate::core::preprocess::Limits;
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
    #[error(
        "index {path} was built with k={found}, the config asks for k={wanted}; delete it or set index.k"
    )]
    IndexK {
        path: PathBuf,
        found: usize,
        wanted: usize,
    },
}

/// Loads a gate's model and its index, building and caching the index from
/// the MNIST training images when there is none yet.
pub fn detector(config: &Config, gate: &GateSpec) -> Result<Detector, LoadError> {
    let mut config = config.clone();
    config.model.dir = gate.dir.clone();
    config.index.path = gate.index_path.clone();
    let config = &config;
    let (model, embedder) = embedder(config)?;
    let path = index_path(config, &model);
    let index = if path.is_file() {
        let started = Instant::now();
        let index = LofIndex::load(&path, &model.sha256).map_err(|source| LoadError::Index {
            path: path.clone(),
            source,
        })?;
        tracing::info!(path = %path.display(), count = index.len(), seconds = started.elapsed().as_secs_f64(), "index loaded");
        index
    } else {
        tracing::info!(path = %path.display(), "no index yet: building it from the MNIST training images");
        let index = build_index(&embedder, config, false)?;
        index
            .save(&path, &model.sha256)
            .map_err(|source| LoadError::Index {
                path: path.clone(),
                source,
            })?;
        index
    };
    if index.k() != config.index.k {
        return Err(LoadError::IndexK {
            path,
            found: index.k(),
            wanted: config.index.k,
        });
    }
    Ok(Detector::new(
        model,
        embedder,
        index,
        detector_settings(config),
    )?)
}

/// The configured model's files and its ONNX session.
pub fn embedder(config: &Config) -> Result<(ModelFiles, Embedder), LoadError> {
    let env = runtime::environment(Some(&config.model.ort_dylib_path))?;
    let model = ModelFiles::load(&config.model.dir)?;
    let embedder = Embedder::load(env, &model.onnx_path, session_options(config))?;
    Ok((model, embedder))
}

pub fn detector_settings(config: &Config) -> DetectorSettings {
    DetectorSettings {
        search: search_mode(config),
        contamination: config.index.contamination,
        distance_check: config.index.distance_check,
    }
}

pub fn session_options(config: &Config) -> SessionOptions {
    SessionOptions {
        intra_threads: config.model.intra_threads,
        optimization_level: config.model.optimization_level,
        intra_spinning: config.model.intra_spinning,
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

/// The configured artifact, or one per model hash and k in the cache folder.
pub fn index_path(config: &Config, model: &ModelFiles) -> PathBuf {
    if !config.index.path.as_os_str().is_empty() {
        return config.index.path.clone();
    }
    let name = format!(
        "{}-{}-k{}.lof",
        model.name,
        &model.sha256[..12],
        config.index.k
    );
    Path::new(&config.index.cache_dir).join(name)
}

/// Embeds the MNIST training images and fits the LOF index on them (exact
/// neighbours, then the HNSW graph and its recall check).
pub fn build_index(
    embedder: &Embedder,
    config: &Config,
    progress: bool,
) -> Result<LofIndex, LoadError> {
    let data = oodgate_datasets::DataDir::from_env()?;
    let train = data.mnist(oodgate_datasets::Split::Train)?;
    let embedded = embed_dataset(embedder, &train, progress)?;
    let (index, report) = LofIndex::build(
        embedded.embeddings,
        train.labels.clone(),
        embedder.embedding_dim,
        config.index.k,
        hnsw_params(config),
        progress,
    )?;
    tracing::info!(
        count = index.len(),
        knn_seconds = report.knn.as_secs_f64(),
        graph_seconds = report.graph.as_secs_f64(),
        total_seconds = report.total.as_secs_f64(),
        recall = ?report.recall,
        "index built"
    );
    Ok(index)
}
