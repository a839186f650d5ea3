//! The subcommands' glue: run a library function, print what it did.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use oodgate_lab::eval::{self, EvalOptions, InDistribution};
use oodgate_server::config::Config;
use oodgate_server::load;
use oodgate_server::runtime;

/// `oodgate index build`: the index of the configured model (or `--gate` folder) from
/// its reference set, written with its provenance.
pub(crate) fn build_index(
    config: &Config,
    out: Option<PathBuf>,
    options: load::IndexOptions,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let env = runtime::environment(Some(&config.model.ort_dylib_path))?;
    let model = load::model_files(config, "model.variant".into())?;
    let embedder = load::model_embedder(env, &model, load::session_options(config))?;
    let built = load::build_index(&embedder, &model, config, &options)?;
    let path = out.unwrap_or_else(|| match &model.gate {
        Some(_) => model.dir.join(model.variant.gate_index_file()),
        None => load::index_path(config, &model),
    });
    load::save_index(&built, &path, &model)?;
    let size = std::fs::metadata(&path)?.len();
    let load_started = Instant::now();
    let (loaded, _) = load::load_index(&path, &model)?;
    let reference = &built.provenance.reference;
    println!(
        "index {}: {} x {} embeddings, k = {}, {:.1} MB; HNSW graph recall@k {}; built in {:.1} s; loads in {:.3} s",
        path.display(),
        loaded.len(),
        loaded.dim(),
        loaded.k(),
        size as f64 / 1e6,
        loaded
            .recall()
            .map_or("none (no graph)".into(), |r| format!(
                "{:.4} (ef {})",
                r.recall, r.ef
            )),
        started.elapsed().as_secs_f64(),
        load_started.elapsed().as_secs_f64(),
    );
    println!(
        "reference: {} {} ({} items, fingerprint {}){}",
        reference.kind,
        reference.location,
        reference.count,
        &reference.fingerprint[..16],
        match reference.skipped.len() {
            0 => String::new(),
            n => format!("; {n} unreadable images skipped"),
        }
    );
    if let Some(c) = &built.provenance.calibration {
        println!(
            "calibration: {} items; default threshold rejects {:.2} % of them (asked {:.2} %; LOF alone {:.2} %)",
            c.set.count,
            100.0 * c.rejected_fused,
            100.0 * c.false_rejection_rate,
            100.0 * c.rejected_lof,
        );
    }
    Ok(())
}

pub(crate) fn eval(
    config: &Config,
    models: Vec<PathBuf>,
    dataset: Option<&str>,
    k: usize,
    limit: Option<usize>,
    input_space: bool,
    json: Option<PathBuf>,
) -> anyhow::Result<()> {
    let dataset = dataset.map(InDistribution::from_name).transpose()?;
    // Without --model: the models of one dataset (MNIST unless --dataset says), so one
    // table never mixes reference sets. With --model: their cards' dataset, unless
    // --dataset says (eval::run then checks that the cards agree).
    let (models, dataset) = if models.is_empty() {
        let dataset = dataset.unwrap_or(InDistribution::Mnist);
        (eval::model_dirs_of(Path::new("models"), dataset)?, dataset)
    } else {
        let dataset = match dataset {
            Some(d) => d,
            None => eval::dataset_of(&models)?,
        };
        (models, dataset)
    };
    let env = runtime::environment(Some(&config.model.ort_dylib_path))?;
    let options = EvalOptions {
        models,
        dataset,
        k,
        limit,
        include_input_space: input_space,
        progress: true,
    };
    let report = eval::run(env, &options)?;
    println!("{}", eval::markdown(&report));
    println!("total runtime {:.1} s", report.seconds);
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("JSON report written to {}", path.display());
    }
    Ok(())
}

/// `oodgate data synth`: a synthetic set as IDX files (and a contact sheet).
pub(crate) fn synth(
    name: &str,
    out: &Path,
    seed: Option<u64>,
    preview: Option<&Path>,
) -> anyhow::Result<()> {
    use oodgate_datasets::{SynthSet, contact_sheet};
    let started = Instant::now();
    let set =
        SynthSet::from_name(name).with_context(|| format!("unknown synthetic set {name:?}"))?;
    let seed = seed.unwrap_or_else(|| set.default_seed());
    let dataset = set.generate(seed)?;
    let seconds = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let images = out.join(format!("{name}-images-idx3-ubyte"));
    let labels = out.join(format!("{name}-labels-idx1-ubyte"));
    let classes = out.join(format!("{name}-classes.txt"));
    oodgate_datasets::write_idx_dataset(&dataset, &images, &labels)?;
    std::fs::write(&classes, dataset.class_names.join("\n") + "\n")
        .with_context(|| format!("writing {}", classes.display()))?;
    println!(
        "{name}: {} images of {} classes (seed {seed}) generated in {seconds:.2} s: {}, {}, {}",
        dataset.len(),
        dataset.class_names.len(),
        images.display(),
        labels.display(),
        classes.display()
    );
    if let Some(path) = preview {
        contact_sheet(&dataset, 400, 20, 2)
            .save(path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("contact sheet of the first 400 images: {}", path.display());
    }
    Ok(())
}

pub(crate) fn report(
    config: &Config,
    options: oodgate_lab::report::ReportOptions,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let env = runtime::environment(Some(&config.model.ort_dylib_path))?;
    for figure in oodgate_lab::report::run(env, &options)? {
        println!(
            "{} ({} x {}, {} kB, {:.1} s)",
            figure.path.display(),
            figure.width,
            figure.height,
            figure.bytes.div_ceil(1000),
            figure.seconds
        );
    }
    println!("total runtime {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
