//! `oodgate eval`: the seed article's tables for the committed models.
//!
//! For each space (raw input pixels, and each model's embedding) LOF is fitted on the
//! MNIST training set, exactly as scikit-learn does (exact neighbours), and scores
//! MNIST, Fashion-MNIST and CIFAR-10 test. Every image goes through the same
//! preprocessing as client images (CIFAR-10: grayscale, resized to 28x28).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::ArrayView2;
use oodgate_datasets::{DataDir, Dataset, Split};
use oodgate_lof::ExactLof;
use oodgate_lof::roc;
use serde::Serialize;

use crate::embed::{Embedder, SessionOptions, embed_dataset};
use crate::model::ModelFiles;
use crate::preprocess::{InputSpec, Layout, prepare_dataset};

/// Contaminations of the seed article's table.
pub const CONTAMINATIONS: [f64; 2] = [0.001, 0.01];

pub struct EvalOptions {
    pub models: Vec<PathBuf>,
    pub k: usize,
    /// Use only the first n images of every set (a quick check, not the real table).
    pub limit: Option<usize>,
    pub include_input_space: bool,
    pub progress: bool,
}

/// Rates at one contamination: fraction of MNIST test accepted, OOD sets rejected.
#[derive(Debug, Clone, Serialize)]
pub struct AtContamination {
    pub contamination: f64,
    pub threshold: f64,
    pub mnist_accepted: f64,
    pub fashion_rejected: f64,
    pub cifar_rejected: f64,
}

/// One OOD set against MNIST test.
#[derive(Debug, Clone, Serialize)]
pub struct Separation {
    pub auroc: f64,
    /// Fraction of the OOD set accepted at the threshold that accepts 95 % of MNIST test.
    pub fpr_at_95_tpr: f64,
    /// Fraction of the OOD set rejected at the threshold that accepts exactly 99 % of MNIST test.
    pub rejected_at_99_accepted: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpaceResult {
    /// "input pixels (784-d)" or the model's name.
    pub space: String,
    pub recipe: Option<String>,
    pub l2: Option<bool>,
    pub dim: usize,
    /// Classifier accuracy on MNIST test (None for the input space).
    pub test_accuracy: Option<f64>,
    pub at: Vec<AtContamination>,
    pub fashion: Separation,
    pub cifar: Separation,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub k: usize,
    pub limit: Option<usize>,
    pub mnist_train: usize,
    pub mnist_test: usize,
    pub fashion_test: usize,
    pub cifar_test: usize,
    pub spaces: Vec<SpaceResult>,
    pub seconds: f64,
}

struct Sets {
    train: Dataset,
    mnist: Dataset,
    fashion: Dataset,
    cifar: Dataset,
}

fn truncate(mut d: Dataset, limit: Option<usize>) -> Dataset {
    if let Some(n) = limit.filter(|n| *n < d.len()) {
        d.pixels.truncate(n * d.image_len());
        d.labels.truncate(n);
    }
    d
}

fn separation(mnist: &[f64], ood: &[f64]) -> Separation {
    let t95 = roc::threshold_accepting(mnist, 0.95);
    let t99 = roc::threshold_accepting(mnist, 0.99);
    Separation {
        auroc: roc::auroc(mnist, ood),
        fpr_at_95_tpr: 1.0 - roc::rejected_fraction(ood, t95),
        rejected_at_99_accepted: roc::rejected_fraction(ood, t99),
    }
}

/// Fits LOF on `train` and scores the three test sets.
fn score_space(
    train: Vec<f32>,
    dim: usize,
    tests: [&[f32]; 3],
    k: usize,
    progress: bool,
) -> anyhow::Result<(Vec<AtContamination>, Separation, Separation)> {
    let lof = ExactLof::fit(train, dim, k, progress)?;
    let score = |x: &[f32]| -> anyhow::Result<Vec<f64>> {
        let view = ArrayView2::from_shape((x.len() / dim, dim), x)?;
        Ok(lof.score(view, progress)?)
    };
    let [mnist, fashion, cifar] = tests;
    let (mnist, fashion, cifar) = (score(mnist)?, score(fashion)?, score(cifar)?);
    let at = CONTAMINATIONS
        .iter()
        .map(|&c| {
            let threshold = lof.offset(c)?;
            Ok(AtContamination {
                contamination: c,
                threshold,
                mnist_accepted: 1.0 - roc::rejected_fraction(&mnist, threshold),
                fashion_rejected: roc::rejected_fraction(&fashion, threshold),
                cifar_rejected: roc::rejected_fraction(&cifar, threshold),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((at, separation(&mnist, &fashion), separation(&mnist, &cifar)))
}

/// Pixels in [0, 1] at 28x28 gray, through the client preprocessing path.
fn input_space(d: &Dataset) -> anyhow::Result<Vec<f32>> {
    let spec = InputSpec {
        layout: Layout::Nhwc,
        height: 28,
        width: 28,
        channels: 1,
    };
    Ok(prepare_dataset(d, &spec)?)
}

fn accuracy(probabilities: &[f32], classes: usize, labels: &[u8]) -> f64 {
    let correct = probabilities
        .chunks(classes)
        .zip(labels)
        .filter(|(p, l)| crate::detector::argmax(p).0 == usize::from(**l))
        .count();
    correct as f64 / labels.len() as f64
}

pub fn run(env: &ort::environment::Environment, options: &EvalOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let data = DataDir::from_env()?;
    let sets = Sets {
        train: truncate(data.mnist(Split::Train)?, options.limit),
        mnist: truncate(data.mnist(Split::Test)?, options.limit),
        fashion: truncate(data.fashion_mnist(Split::Test)?, options.limit),
        cifar: truncate(data.cifar10_test()?, options.limit),
    };
    let mut spaces = Vec::new();

    if options.include_input_space {
        let t = Instant::now();
        let tests = [
            input_space(&sets.mnist)?,
            input_space(&sets.fashion)?,
            input_space(&sets.cifar)?,
        ];
        let (at, fashion, cifar) = score_space(
            input_space(&sets.train)?,
            784,
            [&tests[0], &tests[1], &tests[2]],
            options.k,
            options.progress,
        )?;
        spaces.push(SpaceResult {
            space: "input pixels (784-d)".into(),
            recipe: None,
            l2: None,
            dim: 784,
            test_accuracy: None,
            at,
            fashion,
            cifar,
            seconds: t.elapsed().as_secs_f64(),
        });
    }

    for dir in &options.models {
        let t = Instant::now();
        let model = ModelFiles::load(dir)?;
        let embedder = Embedder::load(env, &model.onnx_path, SessionOptions::default())?;
        let embed = |d: &Dataset| embed_dataset(&embedder, d, options.progress);
        let (train, mnist, fashion, cifar) = (
            embed(&sets.train)?,
            embed(&sets.mnist)?,
            embed(&sets.fashion)?,
            embed(&sets.cifar)?,
        );
        let test_accuracy = accuracy(&mnist.probabilities, embedder.classes, &sets.mnist.labels);
        let dim = embedder.embedding_dim;
        let (at, fashion, cifar) = score_space(
            train.embeddings,
            dim,
            [&mnist.embeddings, &fashion.embeddings, &cifar.embeddings],
            options.k,
            options.progress,
        )?;
        let recipe = model
            .card
            .pointer("/recipe/name")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let l2 = model.card.pointer("/recipe/l2").and_then(|v| v.as_bool());
        spaces.push(SpaceResult {
            space: model.name.clone(),
            recipe,
            l2,
            dim,
            test_accuracy: Some(test_accuracy),
            at,
            fashion,
            cifar,
            seconds: t.elapsed().as_secs_f64(),
        });
    }

    Ok(Report {
        k: options.k,
        limit: options.limit,
        mnist_train: sets.train.len(),
        mnist_test: sets.mnist.len(),
        fashion_test: sets.fashion.len(),
        cifar_test: sets.cifar.len(),
        spaces,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

fn space_label(s: &SpaceResult) -> String {
    match (&s.recipe, s.l2) {
        (Some(recipe), Some(l2)) => format!(
            "{} ({}, {}, {}-d)",
            s.space,
            recipe,
            if l2 { "L2" } else { "plain" },
            s.dim
        ),
        _ => s.space.clone(),
    }
}

/// The report as Markdown: the seed's table, then the threshold-free figures.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "LOF (k = {}, exact neighbours) fitted on {} MNIST training images; {} MNIST, {} Fashion-MNIST and {} CIFAR-10 test images.\n\n",
        report.k, report.mnist_train, report.mnist_test, report.fashion_test, report.cifar_test
    ));
    out.push_str("| LOF space | MNIST test accuracy | contamination | MNIST accepted | Fashion-MNIST rejected | CIFAR-10 rejected |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for s in &report.spaces {
        for a in &s.at {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                space_label(s),
                s.test_accuracy
                    .map_or("-".into(), |a| format!("{:.2} %", 100.0 * a)),
                a.contamination,
                pct(a.mnist_accepted),
                pct(a.fashion_rejected),
                pct(a.cifar_rejected)
            ));
        }
    }
    out.push_str("\n| LOF space | AUROC Fashion-MNIST | AUROC CIFAR-10 | FPR at 95 % TPR Fashion-MNIST | FPR at 95 % TPR CIFAR-10 | Fashion-MNIST rejected at 99 % MNIST accepted | CIFAR-10 rejected at 99 % MNIST accepted |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for s in &report.spaces {
        out.push_str(&format!(
            "| {} | {:.5} | {:.5} | {} | {} | {} | {} |\n",
            space_label(s),
            s.fashion.auroc,
            s.cifar.auroc,
            pct(s.fashion.fpr_at_95_tpr),
            pct(s.cifar.fpr_at_95_tpr),
            pct(s.fashion.rejected_at_99_accepted),
            pct(s.cifar.rejected_at_99_accepted)
        ));
    }
    out
}

/// Model folders under `root` (those with a model.onnx), sorted.
pub fn model_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}
