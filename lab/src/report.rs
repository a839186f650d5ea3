//! `oodgate report`: the seed article's figures as PNG files.
//!
//! - t-SNE maps of one seeded random sample of MNIST test images in three spaces: the
//!   input pixels (784-d), the plain CNN's embedding and the served (L2) model's
//!   embedding (`tsne-input.png`, `tsne-plain.png`, `tsne-model.png`);
//! - the served model's misclassified MNIST test images (`misclassified.png`);
//! - LOF score histograms of MNIST, Fashion-MNIST and CIFAR-10 test with the thresholds
//!   of the seed's contaminations (`lof-scores.png`), and the ROC curves of both
//!   out-of-distribution sets against MNIST test (`roc.png`).
//!
//! The data path is `oodgate eval`'s: [`embed_dataset`] and [`prepare_dataset`] (the
//! client preprocessing), [`FittedLof`] fitted on MNIST train, [`auroc`] for the AUROC.
//! t-SNE is the `bhtsne` crate's Barnes-Hut fit (perplexity 30, theta 0.5, 1000
//! iterations, spectral initialisation) on exact neighbours from the LOF crate's
//! [`ExactIndex`], so no PCA step is needed even for the 784-d pixels. Drawing is
//! `plotters` on an in-memory bitmap with an embedded font ([`figures`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use ndarray::{Array2, ArrayView2};
use oodgate_datasets::{DataDir, Dataset, Split};
use oodgate_lof::{ExactIndex, FittedLof, auroc};
use rand::SeedableRng;

use crate::eval::CONTAMINATIONS;
use oodgate_server::ModelFiles;
use oodgate_server::argmax;
use oodgate_server::preprocess::{InputSpec, Layout, Transform, prepare_dataset};
use oodgate_server::{Embedder, SessionOptions, embed_dataset};

pub mod figures;

pub(crate) use figures::{Misclassified, ScoreSet, TsneMap, thousands};

/// t-SNE settings (the usual ones; van der Maaten's defaults).
pub(crate) const PERPLEXITY: f32 = 30.0;
pub(crate) const THETA: f32 = 0.5;
pub(crate) const ITERATIONS: usize = 1000;

/// The files `run` writes, in order.
pub const FIGURES: [&str; 6] = [
    "tsne-input.png",
    "tsne-plain.png",
    "tsne-model.png",
    "misclassified.png",
    "lof-scores.png",
    "roc.png",
];

pub struct ReportOptions {
    pub out: PathBuf,
    /// The served model (LOF, misclassified images, third t-SNE map).
    pub model: PathBuf,
    /// The plain CNN (second t-SNE map).
    pub plain_model: PathBuf,
    /// MNIST test images in the t-SNE sample.
    pub sample: usize,
    pub seed: u64,
    /// LOF neighbours.
    pub k: usize,
    /// Only the first n images of every set (a quick check, not the real figures).
    pub limit: Option<usize>,
    pub progress: bool,
}

/// One written figure.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// Seconds spent on this figure's own computation and drawing.
    pub seconds: f64,
}

/// The images `rows` of `d`, as a dataset of their own.
fn select(d: &Dataset, rows: &[usize]) -> Dataset {
    let mut pixels = Vec::with_capacity(rows.len() * d.image_len());
    for &i in rows {
        pixels.extend_from_slice(d.image(i));
    }
    Dataset {
        name: format!("{}-sample", d.name),
        class_names: d.class_names.clone(),
        width: d.width,
        height: d.height,
        channels: d.channels,
        pixels,
        labels: rows.iter().map(|&i| d.labels[i]).collect(),
    }
}

/// `n` distinct indices below `len`, chosen by a generator seeded with `seed`, ascending.
pub(crate) fn sample_indices(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rows = rand::seq::index::sample(&mut rng, len, n.min(len)).into_vec();
    rows.sort_unstable();
    rows
}

/// Barnes-Hut t-SNE of `n` rows of `dim` floats to 2-d, on exact Euclidean neighbours.
pub(crate) fn tsne(points: &[f32], dim: usize) -> anyhow::Result<Vec<f32>> {
    let n = points.len() / dim;
    // 3 x perplexity neighbours, as the Barnes-Hut paper (and bhtsne's own tree search) use.
    let k = ((3.0 * PERPLEXITY) as usize).min(n.saturating_sub(1));
    anyhow::ensure!(
        (n as f32) > 3.0 * PERPLEXITY + 1.0,
        "t-SNE with perplexity {PERPLEXITY} needs more than {} points, got {n}",
        3.0 * PERPLEXITY + 1.0
    );
    let index = ExactIndex::new(Array2::from_shape_vec((n, dim), points.to_vec())?);
    let lists = index.search_training(k, None);
    let neighbours: Vec<Vec<bhtsne::Neighbor<f32>>> = (0..n)
        .map(|i| {
            lists
                .ids(i)
                .iter()
                .zip(lists.dists(i))
                .map(|(&id, &d)| bhtsne::Neighbor {
                    index: id as usize,
                    distance: d as f32,
                })
                .collect()
        })
        .collect();
    let rows: Vec<&[f32]> = points.chunks(dim).collect();
    // One thread: the crate's parallel sums are reduced in whatever order the threads
    // finish, so with more the maps differ in the last bits from run to run; one
    // thread makes the committed figures reproducible to the byte.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    Ok(pool.install(|| {
        let mut fit: bhtsne::tSNE<f32, &[f32]> = bhtsne::tSNE::new(&rows);
        fit.perplexity(PERPLEXITY)
            .epochs(ITERATIONS)
            .spectral_init()
            .barnes_hut_with_neighbors(THETA, &neighbours);
        fit.embedding()
    }))
}

fn write(
    out: &Path,
    name: &str,
    image: image::RgbImage,
    started: Instant,
) -> anyhow::Result<Written> {
    let path = out.join(name);
    figures::save_png(&image, &path)?;
    Ok(Written {
        bytes: std::fs::metadata(&path)?.len(),
        path,
        width: image.width(),
        height: image.height(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn tsne_map(
    title: String,
    points: &[f32],
    dim: usize,
    labels: &[u8],
) -> anyhow::Result<image::RgbImage> {
    let coords = tsne(points, dim)?;
    figures::tsne_map(&TsneMap {
        title,
        coords: &coords,
        labels,
    })
}

/// Writes every figure of [`FIGURES`] into `options.out`.
pub fn run(
    env: &ort::environment::Environment,
    options: &ReportOptions,
) -> anyhow::Result<Vec<Written>> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    figures::register_font()?;
    let data = DataDir::from_env()?;
    let train = data.mnist(Split::Train)?.truncated(options.limit);
    let mnist = data.mnist(Split::Test)?.truncated(options.limit);
    let fashion = data.fashion_mnist(Split::Test)?.truncated(options.limit);
    let cifar = data.cifar10_test()?.truncated(options.limit);

    let model = ModelFiles::load(&options.model)?;
    let embedder = Embedder::load(env, &model.onnx_path, SessionOptions::default())?;
    let plain = ModelFiles::load(&options.plain_model)?;
    let plain_embedder = Embedder::load(env, &plain.onnx_path, SessionOptions::default())?;
    let dim = embedder.embedding_dim;
    let mut written = Vec::new();

    // The t-SNE sample, the same images in every space.
    let rows = sample_indices(mnist.len(), options.sample, options.seed);
    let sample = select(&mnist, &rows);
    let n = thousands(sample.len());
    let gray = InputSpec {
        layout: Layout::Nhwc,
        height: 28,
        width: 28,
        channels: 1,
        transform: Transform::Legacy,
    };

    let t = Instant::now();
    let pixels = prepare_dataset(&sample, &gray)?;
    let image = tsne_map(
        format!("t-SNE of {n} MNIST test images: input pixels (784-d)"),
        &pixels,
        gray.len(),
        &sample.labels,
    )?;
    written.push(write(&options.out, FIGURES[0], image, t)?);

    let t = Instant::now();
    let plain_sample = embed_dataset(&plain_embedder, &sample, false)?;
    let image = tsne_map(
        format!(
            "t-SNE of {n} MNIST test images: {} embedding ({}-d)",
            plain.name, plain_embedder.embedding_dim
        ),
        &plain_sample.embeddings,
        plain_embedder.embedding_dim,
        &sample.labels,
    )?;
    written.push(write(&options.out, FIGURES[1], image, t)?);

    // The served model: every set once; the sample's rows come from MNIST test's.
    let t = Instant::now();
    let embed = |d: &Dataset| embed_dataset(&embedder, d, options.progress);
    let mnist_embedded = embed(&mnist)?;
    let model_sample: Vec<f32> = rows
        .iter()
        .flat_map(|&i| &mnist_embedded.embeddings[i * dim..(i + 1) * dim])
        .copied()
        .collect();
    let image = tsne_map(
        format!(
            "t-SNE of {n} MNIST test images: {} embedding ({}-d)",
            model.name, dim
        ),
        &model_sample,
        dim,
        &sample.labels,
    )?;
    written.push(write(&options.out, FIGURES[2], image, t)?);

    let t = Instant::now();
    let misclassified: Vec<Misclassified> = mnist_embedded
        .probabilities
        .chunks(embedder.classes)
        .enumerate()
        .filter_map(|(i, p)| {
            let (predicted, probability) = argmax(p);
            let truth = usize::from(mnist.labels[i]);
            (predicted != truth).then(|| Misclassified {
                pixels: mnist.image(i),
                predicted,
                truth,
                probability,
            })
        })
        .collect();
    let image = figures::misclassified_grid(
        &format!(
            "{}: the {} misclassified MNIST test images (of {})",
            model.name,
            misclassified.len(),
            thousands(mnist.len())
        ),
        &misclassified,
    )?;
    written.push(write(&options.out, FIGURES[3], image, t)?);

    // LOF on the served model's embedding, fitted on MNIST train: `oodgate eval`'s numbers.
    let t = Instant::now();
    let train_embedded = embed(&train)?;
    let fashion_embedded = embed(&fashion)?;
    let cifar_embedded = embed(&cifar)?;
    let lof = FittedLof::fit(train_embedded.embeddings, dim, options.k, options.progress)?;
    let score = |x: &[f32]| -> anyhow::Result<Vec<f64>> {
        Ok(lof
            .score(
                ArrayView2::from_shape((x.len() / dim, dim), x)?,
                options.progress,
            )?
            .scores)
    };
    let mnist_scores = score(&mnist_embedded.embeddings)?;
    let fashion_scores = score(&fashion_embedded.embeddings)?;
    let cifar_scores = score(&cifar_embedded.embeddings)?;
    let thresholds = CONTAMINATIONS
        .iter()
        .map(|&c| Ok((c, lof.offset(c)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sets = [
        ScoreSet {
            name: "MNIST test",
            scores: &mnist_scores,
        },
        ScoreSet {
            name: "Fashion-MNIST test",
            scores: &fashion_scores,
        },
        ScoreSet {
            name: "CIFAR-10 test",
            scores: &cifar_scores,
        },
    ];
    let subtitle = format!(
        "{}: LOF (k = {}, exact) fitted on {} MNIST training embeddings",
        model.name,
        options.k,
        thousands(train.len())
    );
    let image = figures::score_histograms(&subtitle, &sets, &thresholds)?;
    written.push(write(&options.out, FIGURES[4], image, t)?);

    let t = Instant::now();
    let aurocs = [
        auroc(&mnist_scores, &fashion_scores),
        auroc(&mnist_scores, &cifar_scores),
    ];
    let image = figures::roc_curves(&subtitle, &sets, &aurocs, &thresholds)?;
    written.push(write(&options.out, FIGURES[5], image, t)?);
    Ok(written)
}
