//! Sections 2 and 3 of the benchmark, Python side: `bench/seed_stack.py` fits
//! scikit-learn's LOF on the exported training embeddings, scores the exported test
//! embeddings, and times the seed's Keras model on the exported raw images.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use ndarray::Array1;
use ndarray_npy::ReadNpyExt;

use super::results::Seed;
use super::{BenchOptions, CONTAMINATION};

/// The script's figures, and scikit-learn's score of every test query.
pub(super) struct SeedRun {
    pub(super) seed: Seed,
    pub(super) sklearn_scores: Array1<f64>,
}

/// Runs the script on the files that [`super::in_process::embed_and_export`] wrote to
/// `work`.
pub(super) fn run(options: &BenchOptions, work: &Path) -> anyhow::Result<SeedRun> {
    let seed_dir = work.join("seed");
    let status = Command::new(&options.python)
        .arg(&options.seed_script)
        .arg("--dir")
        .arg(work)
        .arg("--out")
        .arg(&seed_dir)
        .args(["--single", &options.seed_single.to_string()])
        .args(["--contamination", &CONTAMINATION.to_string()])
        .status()
        .with_context(|| format!("running {}", options.python.display()))?;
    if !status.success() {
        bail!("{} failed: {status}", options.seed_script.display());
    }
    let seed = serde_json::from_slice(&std::fs::read(seed_dir.join("seed.json"))?)
        .context("reading seed.json")?;
    let sklearn_scores =
        Array1::<f64>::read_npy(std::fs::File::open(seed_dir.join("scores.npy"))?)?;
    Ok(SeedRun {
        seed,
        sklearn_scores,
    })
}
