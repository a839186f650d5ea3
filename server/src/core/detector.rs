//! The detector: model + LOF index -> Classify or Reject, with the evidence.
//!
//! Two stages that the serving side runs separately (embedding is batched across
//! requests, thresholds per request): [`Detector::embed`] and [`Detector::score`], then
//! [`Scored::judge`].

use ndarray::ArrayView2;
use oodgate_lof::{LofIndex, Neighbour, SearchMode, Thresholds, Verdict, decide};

use crate::core::embed::{EmbedError, Embedded, Embedder};
use crate::core::model::ModelFiles;
use crate::core::reference::{Calibration, Provenance};

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("LOF: {0}")]
    Lof(#[from] oodgate_lof::LofError),
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
    /// (`TrainingDistribution::training_tail`): ranks images whatever the threshold.
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

/// How a loaded model and index judge: the configuration's `index` section.
#[derive(Debug, Clone, Copy)]
pub struct DetectorSettings {
    pub search: SearchMode,
    /// The default threshold: the share of training images each part rejects.
    pub contamination: f64,
    /// Whether verdicts also hold the k-th neighbour distance to a threshold.
    pub distance_check: bool,
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
    /// Where the index's items came from, and the calibration (None: an index built
    /// before they were recorded).
    pub provenance: Option<Provenance>,
}

impl Detector {
    /// The default threshold is the calibration's when the index has one, else the
    /// contamination's.
    pub fn new(
        model: ModelFiles,
        embedder: Embedder,
        index: LofIndex,
        settings: DetectorSettings,
        provenance: Option<Provenance>,
    ) -> Result<Self, DetectorError> {
        if matches!(settings.search, SearchMode::Hnsw { .. }) && !index.has_graph() {
            return Err(oodgate_lof::LofError::NoGraph.into());
        }
        let calibration = provenance.as_ref().and_then(|p| p.calibration.as_ref());
        let default_thresholds = match calibration {
            Some(c) if settings.distance_check => Thresholds {
                lof: c.fused_lof_threshold,
                distance: Some(c.fused_distance_threshold),
            },
            Some(c) => Thresholds {
                lof: c.lof_threshold,
                distance: None,
            },
            None => thresholds(&index, settings.contamination, settings.distance_check)?,
        };
        Ok(Self {
            model,
            embedder,
            index,
            search: settings.search,
            default_contamination: settings.contamination,
            default_thresholds,
            distance_check: settings.distance_check,
            provenance,
        })
    }

    /// The calibration that fixed the default threshold, if one did.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.provenance.as_ref()?.calibration.as_ref()
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

/// The batcher's view of the detector: the model run, then LOF on the whole batch.
impl crate::core::batcher::Scorer for Detector {
    type Embedded = Embedded;
    type Scored = Scored;
    type Error = DetectorError;

    fn embed(&self, pixels: &[f32], count: usize) -> Result<Embedded, DetectorError> {
        Detector::embed(self, pixels, count)
    }

    fn score(&self, embedded: &Embedded) -> Result<Vec<Scored>, DetectorError> {
        Detector::score(self, embedded)
    }

    fn select(&self, embedded: &Embedded, rows: &[std::ops::Range<usize>]) -> Embedded {
        let dim = self.embedder.embedding_dim;
        let classes = self.embedder.classes;
        let mut kept = Embedded::default();
        for rows in rows {
            kept.embeddings
                .extend_from_slice(&embedded.embeddings[rows.start * dim..rows.end * dim]);
            kept.probabilities.extend_from_slice(
                &embedded.probabilities[rows.start * classes..rows.end * classes],
            );
        }
        kept
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
    /// The verdict by `oodgate_lof::decide`, the one rule; `training_tail` comes
    /// from [`Detector::score`].
    pub fn judge(self, thresholds: Thresholds) -> Judgement {
        let d = decide(self.score, self.kth_distance, thresholds);
        Judgement {
            class: self.class,
            probability: self.probability,
            score: self.score,
            threshold: thresholds.lof,
            decision: d.lof,
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
