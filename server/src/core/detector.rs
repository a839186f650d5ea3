//! The detector: model + LOF index -> Classify or Reject, with the evidence.
//!
//! Two stages that the serving side runs separately (embedding is batched across
//! requests, scoring per request): [`Detector::embed`] and [`Detector::judge`].

use std::path::{Path, PathBuf};

use ndarray::ArrayView2;
use oodgate_lof::hnsw::HnswParams;
use oodgate_lof::index::{LofIndex, Neighbour, SearchMode};
use oodgate_lof::{Thresholds, Verdict, decide_fused};

use crate::app::config::{self, Config};
use crate::core::embed::{EmbedError, Embedded, Embedder, SessionOptions, embed_dataset};
use crate::core::model::{ModelError, ModelFiles};
use crate::core::runtime::{self, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    // The LOF errors name the file themselves.
    #[error("LOF index: {source}")]
    Index {
        path: PathBuf,
        source: oodgate_lof::error::LofError,
    },
    #[error("LOF: {0}")]
    Lof(#[from] oodgate_lof::error::LofError),
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

/// Where the Classify/Reject line is drawn for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdSpec {
    /// The server's configured contamination.
    Default,
    /// Fraction of training images LOF calls outliers, in (0, 0.5].
    Contamination(f64),
    /// Fraction of training images rejected, in (0, 0.5].
    FalseRejectionRate(f64),
}

/// One image's answer before it is put on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The classifier's top class and its softmax probability.
    pub class: usize,
    pub probability: f32,
    /// LOF part: scikit-learn's `score_samples` (higher is more normal).
    pub score: f64,
    pub threshold: f64,
    /// score - threshold; LOF rejects when negative.
    pub decision: f64,
    /// Distance part: the distance to the k-th nearest training point, and the
    /// threshold it is held to (None when `index.distance_check` is off).
    pub kth_distance: f64,
    pub distance_threshold: Option<f64>,
    /// `(distance_threshold - kth_distance) / distance_threshold`; negative rejects.
    pub distance_decision: Option<f64>,
    /// The share of training images at least as unusual, by the more suspicious part
    /// (`oodgate_lof::training_tail`): ranks images whatever the threshold.
    pub training_tail: f64,
    pub rejected: bool,
    /// The k nearest training points, nearest first.
    pub neighbours: Vec<Neighbour>,
}

impl Judgement {
    pub fn rejected(&self) -> bool {
        self.rejected
    }
}

pub struct Detector {
    pub model: ModelFiles,
    pub embedder: Embedder,
    pub index: LofIndex,
    pub search: SearchMode,
    pub default_contamination: f64,
    /// Both parts' thresholds at the default contamination.
    pub default_thresholds: Thresholds,
    /// Whether verdicts also hold the k-th neighbour distance to a threshold.
    pub distance_check: bool,
}

impl Detector {
    /// Loads the configured model and its index, building and caching the index from
    /// the MNIST training images when there is none yet.
    pub fn from_config(config: &Config) -> Result<Self, DetectorError> {
        let env = runtime::environment(Some(&config.model.ort_dylib_path))?;
        let model = ModelFiles::load(&config.model.dir)?;
        let embedder = Embedder::load(env, &model.onnx_path, session_options(config))?;
        let path = index_path(config, &model);
        let index = if path.is_file() {
            let started = std::time::Instant::now();
            let index =
                LofIndex::load(&path, &model.sha256).map_err(|source| DetectorError::Index {
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
                .map_err(|source| DetectorError::Index {
                    path: path.clone(),
                    source,
                })?;
            index
        };
        if index.k() != config.index.k {
            return Err(DetectorError::IndexK {
                path,
                found: index.k(),
                wanted: config.index.k,
            });
        }
        Self::new(model, embedder, index, config)
    }

    pub fn new(
        model: ModelFiles,
        embedder: Embedder,
        index: LofIndex,
        config: &Config,
    ) -> Result<Self, DetectorError> {
        let distance_check = config.index.distance_check;
        let default_thresholds = thresholds(&index, config.index.contamination, distance_check)?;
        Ok(Self {
            model,
            embedder,
            index,
            search: search_mode(config),
            default_contamination: config.index.contamination,
            default_thresholds,
            distance_check,
        })
    }

    /// Both parts' thresholds for a request. A contamination and a false-rejection rate
    /// map the same way: each part rejects that share of the training images.
    pub fn threshold(&self, spec: ThresholdSpec) -> Result<Thresholds, DetectorError> {
        Ok(match spec {
            ThresholdSpec::Default => self.default_thresholds,
            ThresholdSpec::Contamination(rate) | ThresholdSpec::FalseRejectionRate(rate) => {
                thresholds(&self.index, rate, self.distance_check)?
            }
        })
    }

    /// Runs the model on n preprocessed images.
    pub fn embed(&self, pixels: &[f32], n: usize) -> Result<Embedded, DetectorError> {
        Ok(self.embedder.run(pixels, n)?)
    }

    /// Verdicts for n embedded images.
    pub fn judge(
        &self,
        embedded: &Embedded,
        threshold: Thresholds,
    ) -> Result<Vec<Judgement>, DetectorError> {
        Ok(self
            .score(embedded)?
            .into_iter()
            .map(|scored| scored.judge(threshold))
            .collect())
    }

    /// Top class and LOF score of n embedded images, before any threshold: one model
    /// batch is scored at once, whatever thresholds its requests asked for.
    pub fn score(&self, embedded: &Embedded) -> Result<Vec<Scored>, DetectorError> {
        let dim = self.embedder.embedding_dim;
        let n = embedded.embeddings.len() / dim;
        let queries = ArrayView2::from_shape((n, dim), &embedded.embeddings)
            .map_err(|e| EmbedError::Run(format!("embedding batch shape: {e}")))?;
        let results = self.index.query(queries, self.search)?;
        Ok(results
            .into_iter()
            .zip(embedded.probabilities.chunks(self.embedder.classes))
            .map(|(result, probabilities)| {
                let (class, probability) = argmax(probabilities);
                let kth_distance = result.neighbours.last().map_or(0.0, |n| n.distance);
                Scored {
                    class,
                    probability,
                    score: result.score,
                    kth_distance,
                    training_tail: self.index.training().training_tail(
                        result.score,
                        kth_distance,
                        self.distance_check,
                    ),
                    neighbours: result.neighbours,
                }
            })
            .collect())
    }
}

/// One image's class and LOF score; a threshold makes it a [`Judgement`].
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub class: usize,
    pub probability: f32,
    pub score: f64,
    /// Distance to the k-th (farthest) of `neighbours`.
    pub kth_distance: f64,
    pub training_tail: f64,
    pub neighbours: Vec<Neighbour>,
}

impl Scored {
    /// The verdict by `oodgate_lof::decide_fused`, the one rule; `training_tail` comes
    /// from [`Detector::score`].
    pub fn judge(self, thresholds: Thresholds) -> Judgement {
        let d = decide_fused(self.score, self.kth_distance, thresholds);
        Judgement {
            class: self.class,
            probability: self.probability,
            score: self.score,
            threshold: thresholds.lof,
            decision: d.lof.decision,
            kth_distance: self.kth_distance,
            distance_threshold: thresholds.distance,
            distance_decision: d.distance,
            training_tail: self.training_tail,
            rejected: d.verdict == Verdict::Reject,
            neighbours: self.neighbours,
        }
    }
}

/// The LOF threshold at `rate` and, with the distance check, the k-distance threshold.
fn thresholds(
    index: &LofIndex,
    rate: f64,
    distance_check: bool,
) -> Result<Thresholds, DetectorError> {
    Ok(Thresholds {
        lof: index.offset(rate)?,
        distance: distance_check
            .then(|| index.training().distance_threshold(rate))
            .transpose()?,
    })
}

pub fn argmax(p: &[f32]) -> (usize, f32) {
    p.iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
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
) -> Result<LofIndex, DetectorError> {
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
