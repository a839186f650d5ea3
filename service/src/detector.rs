//! The detector: model + LOF index -> Classify or Reject, with the evidence.
//!
//! Two stages that the serving side runs separately (embedding is batched across
//! requests, scoring per request): [`Detector::embed`] and [`Detector::judge`].

use std::path::{Path, PathBuf};

use ndarray::ArrayView2;
use oodgate_lof::hnsw::HnswParams;
use oodgate_lof::index::{LofIndex, Neighbour, SearchMode};

use crate::config::{self, Config};
use crate::embed::{EmbedError, Embedded, Embedder, SessionOptions, embed_dataset};
use crate::model::{ModelError, ModelFiles};
use crate::runtime::{self, RuntimeError};

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
    /// scikit-learn's `score_samples` (higher is more normal).
    pub score: f64,
    pub threshold: f64,
    /// score - threshold; Reject when negative.
    pub decision: f64,
    /// The k nearest training points, nearest first.
    pub neighbours: Vec<Neighbour>,
}

impl Judgement {
    pub fn rejected(&self) -> bool {
        self.decision < 0.0
    }
}

pub struct Detector {
    pub model: ModelFiles,
    pub embedder: Embedder,
    pub index: LofIndex,
    pub search: SearchMode,
    pub default_contamination: f64,
    pub default_threshold: f64,
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
        let default_threshold = index.offset(config.index.contamination)?;
        Ok(Self {
            model,
            embedder,
            index,
            search: search_mode(config),
            default_contamination: config.index.contamination,
            default_threshold,
        })
    }

    pub fn threshold(&self, spec: ThresholdSpec) -> Result<f64, DetectorError> {
        Ok(match spec {
            ThresholdSpec::Default => self.default_threshold,
            ThresholdSpec::Contamination(c) => self.index.offset(c)?,
            ThresholdSpec::FalseRejectionRate(r) => {
                self.index.threshold_for_false_rejection_rate(r)?
            }
        })
    }

    /// Runs the model on n preprocessed images.
    pub fn embed(&self, pixels: &[f32], n: usize) -> Result<Embedded, DetectorError> {
        Ok(self.embedder.run(pixels, n)?)
    }

    /// LOF verdicts for n embedded images.
    pub fn judge(
        &self,
        embedded: &Embedded,
        threshold: f64,
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
                Scored {
                    class,
                    probability,
                    score: result.score,
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
    pub neighbours: Vec<Neighbour>,
}

impl Scored {
    pub fn judge(self, threshold: f64) -> Judgement {
        Judgement {
            class: self.class,
            probability: self.probability,
            score: self.score,
            threshold,
            decision: self.score - threshold,
            neighbours: self.neighbours,
        }
    }
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
