//! The stages that run in this process, on the test images preprocessed once: ONNX
//! Runtime alone, LOF alone, embed + LOF back to back (the pipeline limit), one image
//! at a time, and every search mode on all test queries against scikit-learn.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2, Array4, Axis, Slice};
use oodgate_datasets::{DataDir, Dataset, Split};
use oodgate_lof::SearchMode;
use oodgate_server::Detector;
use oodgate_server::config::Config;
use oodgate_server::preprocess::prepare_dataset;

use super::results::{
    LatencyStats, LofAlone, LofComparison, LofMode, ModelInfo, OrtBatch, OrtSweep, PipelineLimit,
    Preprocess, Seed,
};
use super::{BATCH_SIZES, EFS, STREAM_BATCH};
use crate::npy::write_npy;

/// The three test sets (MNIST, Fashion-MNIST, CIFAR-10), preprocessed as the service
/// does, one after another.
pub(super) struct TestImages {
    pub(super) data: DataDir,
    pub(super) sets: [Dataset; 3],
    /// The model inputs of every image, back to back.
    pub(super) pixels: Vec<f32>,
    /// Floats per image.
    pub(super) per: usize,
    pub(super) total: usize,
    /// Where each set starts.
    offsets: Vec<usize>,
}

/// The exported raw images' file names, in the order of [`TestImages::sets`].
pub(super) const SET_NAMES: [&str; 3] = ["mnist", "fashion-mnist", "cifar10"];

impl TestImages {
    pub(super) fn load(detector: &Detector) -> anyhow::Result<(Self, Preprocess)> {
        let data = DataDir::from_env()?;
        let sets = [
            data.mnist(Split::Test)?,
            data.fashion_mnist(Split::Test)?,
            data.cifar10_test()?,
        ];
        let started = Instant::now();
        let mut pixels = Vec::new();
        for set in &sets {
            pixels.extend(prepare_dataset(set, &detector.embedder.input)?);
        }
        let per = detector.embedder.input.len();
        let total = pixels.len() / per;
        let offsets = sets
            .iter()
            .scan(0, |acc, s| {
                let start = *acc;
                *acc += s.len();
                Some(start)
            })
            .collect();
        let preprocess = Preprocess {
            images: total,
            seconds: started.elapsed().as_secs_f64(),
        };
        let images = Self {
            data,
            sets,
            pixels,
            per,
            total,
            offsets,
        };
        Ok((images, preprocess))
    }

    /// The model input of image `i`.
    pub(super) fn image(&self, i: usize) -> &[f32] {
        &self.pixels[i * self.per..(i + 1) * self.per]
    }

    /// Image `i` as (set, index in that set).
    pub(super) fn locate(&self, i: usize) -> (usize, usize) {
        let s = self.offsets.iter().rposition(|&o| o <= i).unwrap();
        (s, i - self.offsets[s])
    }

    /// `n` images spread evenly over all of them.
    pub(super) fn picks(&self, n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| i * (self.total - 1) / (n - 1).max(1))
            .collect()
    }
}

pub(super) fn model_info(config: &Config, detector: &Detector) -> ModelInfo {
    ModelInfo {
        name: detector.model.name.clone(),
        sha256: detector.model.sha256.clone(),
        intra_threads: config.model.intra_threads,
        search: format!("{:?}", detector.search),
        index_size: detector.index.len(),
        k: detector.index.k(),
    }
}

/// Embeddings of all test images; they, the training embeddings and the raw images are
/// also written to `work` for the Python stage.
pub(super) fn embed_and_export(
    detector: &Detector,
    images: &TestImages,
    work: &Path,
) -> anyhow::Result<Array2<f32>> {
    let (per, total) = (images.per, images.total);
    let dim = detector.embedder.embedding_dim;
    let mut embeddings = Vec::with_capacity(total * dim);
    for chunk in images.pixels.chunks(256 * per) {
        embeddings.extend(detector.embed(chunk, chunk.len() / per)?.embeddings);
    }
    let queries = Array2::from_shape_vec((total, dim), embeddings)?;
    write_npy(&work.join("queries.npy"), &queries)?;
    write_npy(
        &work.join("train.npy"),
        &detector.index.embeddings().to_owned(),
    )?;
    for (set, name) in images.sets.iter().zip(SET_NAMES) {
        write_npy(&work.join(format!("{name}.npy")), &raw_images(set)?)?;
    }
    Ok(queries)
}

fn raw_images(set: &Dataset) -> anyhow::Result<Array4<u8>> {
    Ok(Array4::from_shape_vec(
        (
            set.len(),
            set.height as usize,
            set.width as usize,
            set.channels as usize,
        ),
        set.pixels.clone(),
    )?)
}

/// ONNX Runtime alone on the first `limit` MNIST test images, at each batch size: the
/// best of two rounds (batch 1 on at most 1,000 images).
pub(super) fn ort_sweep(
    detector: &Detector,
    images: &TestImages,
    limit: usize,
) -> anyhow::Result<OrtSweep> {
    let per = images.per;
    let ort_n = limit.min(images.sets[0].len());
    let ort_pixels = &images.pixels[..ort_n * per];
    let mut sweep = Vec::new();
    for &b in &BATCH_SIZES {
        let n = if b == 1 {
            ort_n.min(1000)
        } else {
            ort_n / b * b
        };
        detector.embed(&ort_pixels[..b * per], b)?; // warm-up
        let mut best: f64 = 0.0;
        let mut rounds = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            for chunk in ort_pixels[..n * per].chunks(b * per) {
                detector.embed(chunk, b)?;
            }
            let rate = n as f64 / started.elapsed().as_secs_f64();
            rounds.push(rate);
            best = best.max(rate);
        }
        eprintln!("  batch {b}: {best:.0} images/s");
        sweep.push(OrtBatch {
            batch: b,
            images: n,
            images_per_second: best,
            rounds,
        });
    }
    let best_batch = sweep
        .iter()
        .max_by(|a, b| a.images_per_second.total_cmp(&b.images_per_second))
        .map_or(256, |row| row.batch);
    Ok(OrtSweep {
        images: ort_n,
        sweep,
        best_batch,
    })
}

/// LOF alone on the first `n` test embeddings (those of the ONNX Runtime sweep), in
/// each of `modes`, on chunks of 1 (at most 500 queries), a streaming request, the best
/// ONNX batch and the service's largest batch.
pub(super) fn lof_alone(
    detector: &Detector,
    queries: &Array2<f32>,
    n: usize,
    modes: [SearchMode; 2],
    best_batch: usize,
    max_batch: usize,
) -> anyhow::Result<Vec<LofAlone>> {
    let ort_queries = queries.slice_axis(Axis(0), Slice::from(..n));
    let mut rows = Vec::new();
    for mode in modes {
        let mut chunk_sizes = vec![1, STREAM_BATCH, best_batch, max_batch];
        chunk_sizes.sort_unstable();
        chunk_sizes.dedup();
        for chunk_size in chunk_sizes {
            let n = if chunk_size == 1 { n.min(500) } else { n };
            let started = Instant::now();
            for chunk in ort_queries
                .slice_axis(Axis(0), Slice::from(..n))
                .axis_chunks_iter(Axis(0), chunk_size)
            {
                detector.index.query(chunk, mode)?;
            }
            let rate = n as f64 / started.elapsed().as_secs_f64();
            eprintln!("  {mode:?}, batch {chunk_size}: {rate:.0} queries/s");
            rows.push(LofAlone {
                mode: format!("{mode:?}"),
                queries: n,
                batch: chunk_size,
                queries_per_second: rate,
            });
        }
    }
    Ok(rows)
}

/// One measurement of the pipeline limit.
pub(super) struct Limit {
    /// The best batch's rate.
    pub(super) images_per_second: f64,
    pub(super) batch: usize,
    pub(super) by_batch: BTreeMap<usize, f64>,
}

impl Limit {
    /// This measurement (before the service run) with `after`, over `images` images in
    /// chunks of each of `batches`: their mean is the limit.
    pub(super) fn and_after(self, after: Limit, batches: &[usize], images: usize) -> PipelineLimit {
        PipelineLimit {
            batches: batches.to_vec(),
            images,
            before_service_images_per_second: self.images_per_second,
            after_service_images_per_second: after.images_per_second,
            before_batch: self.batch,
            after_batch: after.batch,
            before_by_batch: self.by_batch,
            after_by_batch: after.by_batch,
            images_per_second: (self.images_per_second + after.images_per_second) / 2.0,
        }
    }
}

/// Embed then LOF (`mode`), one after the other with no overlap, over all test images
/// in chunks of each of `batches`.
pub(super) fn pipeline_limit(
    detector: &Detector,
    images: &TestImages,
    batches: &[usize],
    mode: SearchMode,
) -> anyhow::Result<Limit> {
    let (per, dim) = (images.per, detector.embedder.embedding_dim);
    let mut best = (0.0, 0);
    let mut by_batch = BTreeMap::new();
    for &batch in batches {
        let started = Instant::now();
        let mut n = 0;
        for chunk in images.pixels.chunks(batch * per) {
            let count = chunk.len() / per;
            let embedded = detector.embed(chunk, count)?;
            let view = ndarray::ArrayView2::from_shape((count, dim), &embedded.embeddings)?;
            n += detector.index.query(view, mode)?.len();
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        by_batch.insert(batch, rate);
        if rate > best.0 {
            best = (rate, batch);
        }
    }
    eprintln!("  {:.0} images/s (batch {})", best.0, best.1);
    Ok(Limit {
        images_per_second: best.0,
        batch: best.1,
        by_batch,
    })
}

/// What the service does for one image, in process: embed, score, judge.
pub(super) fn single_image(
    detector: &Detector,
    images: &TestImages,
    i: usize,
) -> anyhow::Result<()> {
    let embedded = detector.embed(images.image(i), 1)?;
    for scored in detector.score(&embedded)? {
        scored.judge(detector.default_thresholds);
    }
    Ok(())
}

/// [`single_image`] on each of `picks` after a warm-up of ten.
pub(super) fn single_images(
    detector: &Detector,
    images: &TestImages,
    picks: &[usize],
) -> anyhow::Result<LatencyStats> {
    for &i in picks.iter().take(10) {
        single_image(detector, images, i)?;
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for &i in picks {
        let started = Instant::now();
        single_image(detector, images, i)?;
        latencies.push(started.elapsed());
    }
    Ok(LatencyStats::of(&latencies))
}

/// One search mode on all test queries, in one call.
pub(super) struct LofRun {
    /// "exact" or "HNSW ef N".
    pub(super) name: String,
    pub(super) mode: SearchMode,
    pub(super) seconds: f64,
    pub(super) scores: Vec<f64>,
    /// Each query's neighbours.
    pub(super) ids: Vec<Vec<u32>>,
}

/// Exact search (first), then HNSW at each of [`EFS`].
pub(super) fn lof_runs(detector: &Detector, queries: &Array2<f32>) -> anyhow::Result<Vec<LofRun>> {
    let mut modes: Vec<(String, SearchMode)> = vec![("exact".into(), SearchMode::Exact)];
    modes.extend(
        EFS.iter()
            .map(|&ef| (format!("HNSW ef {ef}"), SearchMode::Hnsw { ef })),
    );
    let mut runs = Vec::new();
    for (name, mode) in modes {
        let started = Instant::now();
        let results = detector.index.query(queries.view(), mode)?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("  {name}: {seconds:.2} s");
        runs.push(LofRun {
            name,
            mode,
            seconds,
            scores: results.iter().map(|q| q.score).collect(),
            ids: results
                .iter()
                .map(|q| q.neighbours.iter().map(|n| n.id).collect())
                .collect(),
        });
    }
    Ok(runs)
}

/// Each run's speed, recall and verdicts against exact search (the first run) and, with
/// the seed stage's figures and scores, against scikit-learn. Verdicts at `offset`
/// (oodgate's threshold) and scikit-learn's own `offset_`.
pub(super) fn lof_comparison(
    runs: &[LofRun],
    offset: f64,
    sklearn: Option<(&Seed, &Array1<f64>)>,
) -> LofComparison {
    let exact = &runs[0];
    let total = exact.scores.len();
    let modes = runs
        .iter()
        .map(|run| {
            let recall = run
                .ids
                .iter()
                .zip(&exact.ids)
                .map(|(a, e)| a.iter().filter(|id| e.contains(id)).count() as f64 / e.len() as f64)
                .sum::<f64>()
                / run.ids.len() as f64;
            let agreement_with_exact = run
                .scores
                .iter()
                .zip(&exact.scores)
                .filter(|(a, b)| (**a < offset) == (**b < offset))
                .count() as f64
                / total as f64;
            let mut row = LofMode {
                mode: run.name.clone(),
                search: format!("{:?}", run.mode),
                seconds: run.seconds,
                queries_per_second: total as f64 / run.seconds,
                recall_at_k: recall,
                agreement_with_exact,
                agreement_with_sklearn: None,
                max_relative_score_difference: None,
                speedup_vs_sklearn: None,
            };
            if let Some((seed, sk)) = sklearn {
                let agree = run
                    .scores
                    .iter()
                    .zip(sk.iter())
                    .filter(|(a, b)| (**a < offset) == (**b < seed.lof_offset))
                    .count() as f64
                    / total as f64;
                let worst = run
                    .scores
                    .iter()
                    .zip(sk.iter())
                    .map(|(a, b)| ((a - b) / b).abs())
                    .fold(0.0, f64::max);
                row.agreement_with_sklearn = Some(agree);
                row.max_relative_score_difference = Some(worst);
                row.speedup_vs_sklearn = Some(seed.lof_score_seconds / run.seconds);
            }
            row
        })
        .collect();
    LofComparison {
        queries: total,
        offset,
        modes,
    }
}
