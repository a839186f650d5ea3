//! Protocol-neutral views of a verdict and of a model: what the gRPC and HTTP sides
//! both answer, shaped once here. Each protocol copies from them field by field; the
//! JSON answers are these views serialised.

use serde::Serialize;

use crate::core::detector::{Detector, Judgement};
use crate::core::pipeline::Detection;

/// What a gate's model and index are (gRPC `ModelInfo`, HTTP `GET /v1/model`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ModelView {
    /// The gate that serves them.
    pub gate: String,
    pub model_name: String,
    pub model_sha256: String,
    /// "fp32" or "int8": which ONNX file of the folder serves.
    pub model_variant: &'static str,
    pub input_layout: &'static str,
    pub input_height: u32,
    pub input_width: u32,
    pub input_channels: u32,
    pub classes: Vec<String>,
    pub embedding_dim: u32,
    pub k: u32,
    pub index_size: u64,
    pub default_contamination: f64,
    pub default_threshold: f64,
    pub distance_check: bool,
    /// 0 when the distance check is off.
    pub default_distance_threshold: f64,
    /// "exact" or "hnsw".
    pub search_mode: &'static str,
    /// The reference set the index was built from (kind and location; empty for an
    /// index built before it was recorded) and its fingerprint.
    pub reference: String,
    pub reference_fingerprint: String,
    /// When a held-out set fixed the default threshold: the false-rejection rate asked,
    /// the set's size and the share of it the default threshold rejects (all 0 without).
    pub calibration_false_rejection_rate: f64,
    pub calibration_size: u64,
    pub calibration_rejected: f64,
}

impl ModelView {
    pub(crate) fn of(gate: &str, detector: &Detector) -> Self {
        let input = detector.embedder.input;
        let calibration = detector.calibration();
        Self {
            gate: gate.to_owned(),
            model_name: detector.model.name.clone(),
            model_sha256: detector.model.sha256.clone(),
            model_variant: detector.model.variant.as_str(),
            input_layout: input.layout.as_str(),
            input_height: input.height,
            input_width: input.width,
            input_channels: input.channels,
            classes: detector.model.classes.clone(),
            embedding_dim: detector.embedder.embedding_dim as u32,
            k: detector.index.k() as u32,
            index_size: detector.index.len() as u64,
            default_contamination: detector.default_contamination,
            default_threshold: detector.default_thresholds.lof,
            distance_check: detector.distance_check,
            default_distance_threshold: detector.default_thresholds.distance.unwrap_or(0.0),
            search_mode: search_mode_name(detector.search),
            reference: detector
                .provenance
                .as_ref()
                .map(|p| format!("{} {}", p.reference.kind, p.reference.location))
                .unwrap_or_default(),
            reference_fingerprint: detector
                .provenance
                .as_ref()
                .map(|p| p.reference.fingerprint.clone())
                .unwrap_or_default(),
            calibration_false_rejection_rate: calibration.map_or(0.0, |c| c.false_rejection_rate),
            calibration_size: calibration.map_or(0, |c| c.set.count as u64),
            calibration_rejected: calibration.map_or(0.0, |c| {
                if detector.distance_check {
                    c.rejected_fused
                } else {
                    c.rejected_lof
                }
            }),
        }
    }
}

pub(crate) fn search_mode_name(mode: oodgate_lof::SearchMode) -> &'static str {
    match mode {
        oodgate_lof::SearchMode::Exact => "exact",
        oodgate_lof::SearchMode::Hnsw { .. } => "hnsw",
    }
}

/// One image's answer. Serialises as the HTTP API's verdict object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct VerdictView {
    pub id: String,
    #[serde(flatten)]
    pub answer: Answer,
}

/// Classify or Reject with the evidence, or why the image could not be judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub(crate) enum Answer {
    Classify(Evidence),
    Reject(Evidence),
    Error { error: String },
}

/// The two parts of a verdict and what the classifier said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Evidence {
    /// The classifier's answer (for a rejection: what it would have said).
    #[serde(flatten)]
    pub class: ClassView,
    pub lof: LofView,
    /// The k nearest training images, nearest first (rejections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neighbours: Option<Vec<NeighbourView>>,
    /// The distance part (None when `index.distance_check` is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<DistanceView>,
    /// The share of training images at least as unusual: ranks images whatever the
    /// threshold.
    pub training_tail: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ClassView {
    pub class_index: u32,
    pub class_name: String,
    pub probability: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct LofView {
    pub score: f64,
    pub threshold: f64,
    pub decision: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct DistanceView {
    pub kth_distance: f64,
    pub threshold: f64,
    pub decision: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct NeighbourView {
    /// Index into the training images; `GET /v1/training/{training_id}` shows it.
    pub training_id: u32,
    pub label: u32,
    pub label_name: String,
    pub distance: f64,
    /// Where the reference item came from: a folder image's path relative to the
    /// folder, or `file#index` (absent for the known datasets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The verdicts of one answered request, in request order.
pub(crate) fn verdicts(detection: Detection) -> Vec<VerdictView> {
    let detector = &detection.detector;
    detection
        .verdicts
        .into_iter()
        .map(|verdict| VerdictView {
            id: verdict.id,
            answer: match verdict.outcome {
                Ok(judgement) => answer(judgement, detector),
                Err(error) => Answer::Error {
                    error: error.to_string(),
                },
            },
        })
        .collect()
}

fn answer(judgement: Judgement, detector: &Detector) -> Answer {
    let classes = &detector.model.classes;
    let reference = detector.provenance.as_ref().map(|p| &p.reference);
    let name = |class: usize| classes.get(class).cloned().unwrap_or_default();
    let rejected = judgement.rejected();
    let evidence = Evidence {
        class: ClassView {
            class_index: judgement.class as u32,
            class_name: name(judgement.class),
            probability: judgement.probability,
        },
        lof: LofView {
            score: judgement.score,
            threshold: judgement.threshold,
            decision: judgement.decision,
        },
        neighbours: rejected.then(|| {
            judgement
                .neighbours
                .iter()
                .map(|n| NeighbourView {
                    training_id: n.id,
                    label: u32::from(n.label),
                    label_name: name(usize::from(n.label)),
                    distance: n.distance,
                    reference: reference.and_then(|r| r.item(n.id as usize)),
                })
                .collect()
        }),
        distance: judgement
            .distance_threshold
            .zip(judgement.distance_decision)
            .map(|(threshold, decision)| DistanceView {
                kth_distance: judgement.kth_distance,
                threshold,
                decision,
            }),
        training_tail: judgement.training_tail,
    };
    if rejected {
        Answer::Reject(evidence)
    } else {
        Answer::Classify(evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(neighbours: Option<Vec<NeighbourView>>) -> Evidence {
        Evidence {
            class: ClassView {
                class_index: 4,
                class_name: "4".into(),
                probability: 0.5,
            },
            lof: LofView {
                score: -1.5,
                threshold: -1.2,
                decision: -0.3,
            },
            neighbours,
            distance: Some(DistanceView {
                kth_distance: 2.0,
                threshold: 1.0,
                decision: -1.0,
            }),
            training_tail: 0.001,
        }
    }

    /// The HTTP API's verdict objects, as documented in the README.
    #[test]
    fn verdicts_serialise_as_the_json_api_answers() {
        let reject = VerdictView {
            id: "a".into(),
            answer: Answer::Reject(evidence(Some(vec![NeighbourView {
                training_id: 7,
                label: 4,
                label_name: "4".into(),
                distance: 1.5,
                reference: None,
            }]))),
        };
        assert_eq!(
            serde_json::to_value(&reject).unwrap(),
            serde_json::json!({
                "id": "a", "outcome": "reject",
                "class_index": 4, "class_name": "4", "probability": 0.5,
                "lof": {"score": -1.5, "threshold": -1.2, "decision": -0.3},
                "neighbours": [{"training_id": 7, "label": 4, "label_name": "4", "distance": 1.5}],
                "distance": {"kth_distance": 2.0, "threshold": 1.0, "decision": -1.0},
                "training_tail": 0.001
            })
        );
        let classify = VerdictView {
            id: "b".into(),
            answer: Answer::Classify(evidence(None)),
        };
        let json = serde_json::to_value(&classify).unwrap();
        assert_eq!(json["outcome"], "classify");
        assert!(json.get("neighbours").is_none());
        let error = VerdictView {
            id: "c".into(),
            answer: Answer::Error {
                error: "bad".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            serde_json::json!({"id": "c", "outcome": "error", "error": "bad"})
        );
    }
}
