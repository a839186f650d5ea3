//! `oodgate export-embeddings`: the index's training embeddings and the test sets'
//! embeddings as .npy files, for checking LOF against scikit-learn.

use std::path::Path;

use ndarray::Array2;
use oodgate_datasets::{DataDir, Split};
use oodgate_server::config::Config;
use oodgate_server::embed_dataset;

use crate::npy::write_npy;

/// `train.npy` (exactly the index's training embeddings) and `queries.npy` (MNIST,
/// Fashion-MNIST and CIFAR-10 test embeddings, in that order) plus `queries.json`.
pub fn run(config: &Config, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let detector = oodgate_server::load::detector(config, &config.default_gate())?;
    let index = &detector.index;
    write_npy(&out.join("train.npy"), &index.embeddings().to_owned())?;

    let data = DataDir::from_env()?;
    let sets = [
        data.mnist(Split::Test)?,
        data.fashion_mnist(Split::Test)?,
        data.cifar10_test()?,
    ];
    let mut queries = Vec::new();
    let mut counts = Vec::new();
    for set in &sets {
        let embedded = embed_dataset(&detector.embedder, set, true)?;
        queries.extend(embedded.embeddings);
        counts.push(serde_json::json!({"name": set.name, "count": set.len()}));
    }
    let rows = queries.len() / index.dim();
    write_npy(
        &out.join("queries.npy"),
        &Array2::from_shape_vec((rows, index.dim()), queries)?,
    )?;
    std::fs::write(
        out.join("queries.json"),
        serde_json::to_string_pretty(
            &serde_json::json!({"sets": counts, "model_sha256": detector.model.sha256}),
        )?,
    )?;
    println!(
        "wrote {} training and {rows} query embeddings to {}",
        index.len(),
        out.display()
    );
    Ok(())
}
