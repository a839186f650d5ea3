//! The replay's summary: the seed article's table (accepted / rejected per set), the
//! classifier's accuracy on labelled digits (and how many are both accepted and right),
//! AUROC of each other set against the reference set and its rejection at the threshold
//! that accepts 99 % of the reference set, from the returned scores; throughput and
//! latency percentiles.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::replay::{Answer, Replay, Threshold};
use crate::sets::ReplaySet;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub model: String,
    pub model_sha256: String,
    pub search_mode: String,
    /// The threshold the requests asked for (None: the server's default contamination).
    pub threshold: Option<Threshold>,
    pub server_default_contamination: f64,
    pub sets: Vec<SetSummary>,
    /// The set the others' AUROC is measured against (in-distribution).
    pub reference: Option<String>,
    pub images: usize,
    pub requests: usize,
    pub streams: usize,
    pub batch_size: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Request round trips, in milliseconds.
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetSummary {
    pub name: String,
    pub sent: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub errors: usize,
    /// Fractions of the images that got a verdict (errors excluded).
    pub accepted_fraction: f64,
    pub rejected_fraction: f64,
    /// Classifier accuracy over every judged image (accepted or not), for digit sets.
    pub accuracy: Option<f64>,
    /// Reference set's scores against this set's (None for the reference itself).
    pub auroc: Option<f64>,
    /// Fraction rejected at the threshold (on the returned scores) that accepts 99 % of
    /// the reference set, as `oodgate eval` computes it (None for the reference itself).
    pub rejected_at_99_accepted: Option<f64>,
    /// For digit sets: fraction accepted (at the replay's threshold: the server default
    /// unless one was asked for) and classified as the right digit.
    pub accepted_and_right: Option<f64>,
    /// For digit sets: fraction whose score is at or above the threshold that accepts
    /// 99 % of the reference set and classified as the right digit.
    pub accepted_and_right_at_99_accepted: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least q of them at or below it.
        let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: ms[ms.len() - 1],
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

impl Summary {
    /// `reference`: the in-distribution set for AUROC; default: the first digit set.
    pub fn new(replay: &Replay, sets: &[ReplaySet], reference: Option<&str>) -> Self {
        let reference = reference.map(str::to_owned).or_else(|| {
            sets.iter()
                .find(|s| s.labelled_digits)
                .map(|s| s.name.clone())
        });
        let scores =
            |answers: &[Answer]| -> Vec<f64> { answers.iter().filter_map(Answer::score).collect() };
        let reference_scores = reference
            .as_ref()
            .and_then(|name| sets.iter().position(|s| &s.name == name))
            .map(|i| scores(&replay.answers[i]));
        // The rule of `oodgate eval`: the (1 - 0.99) quantile of the reference scores.
        let threshold_99 = reference_scores
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| oodgate_lof::threshold_accepting(s, 0.99));
        let summaries: Vec<SetSummary> = sets
            .iter()
            .zip(&replay.answers)
            .map(|(set, answers)| {
                let accepted = answers
                    .iter()
                    .filter(|a| matches!(a, Answer::Accepted { .. }))
                    .count();
                let rejected = answers
                    .iter()
                    .filter(|a| matches!(a, Answer::Rejected { .. }))
                    .count();
                let judged = (accepted + rejected).max(1) as f64;
                let right = |a: &Answer, label: u8| a.class() == Some(u32::from(label));
                // Digit sets: the fraction of judged images that `keep` and got right.
                let right_and = |keep: &dyn Fn(&Answer) -> bool| {
                    set.labelled_digits.then(|| {
                        let n = answers
                            .iter()
                            .zip(&set.dataset.labels)
                            .filter(|(a, label)| keep(a) && right(a, **label))
                            .count();
                        n as f64 / judged
                    })
                };
                let accuracy = right_and(&|_| true);
                let accepted_and_right = right_and(&|a| matches!(a, Answer::Accepted { .. }));
                let accepted_and_right_at_99_accepted = threshold_99
                    .and_then(|t| right_and(&|a: &Answer| a.score().is_some_and(|s| s >= t)));
                let is_reference = reference.as_deref() == Some(set.name.as_str());
                let auroc = match &reference_scores {
                    Some(inliers) if !is_reference => {
                        Some(oodgate_lof::auroc(inliers, &scores(answers)))
                    }
                    _ => None,
                };
                let rejected_at_99_accepted = threshold_99
                    .filter(|_| !is_reference)
                    .map(|t| oodgate_lof::rejected_fraction(&scores(answers), t));
                SetSummary {
                    name: set.name.clone(),
                    sent: answers.len(),
                    accepted,
                    rejected,
                    errors: answers.len() - accepted - rejected,
                    accepted_fraction: accepted as f64 / judged,
                    rejected_fraction: rejected as f64 / judged,
                    accuracy,
                    auroc,
                    rejected_at_99_accepted,
                    accepted_and_right,
                    accepted_and_right_at_99_accepted,
                }
            })
            .collect();
        let images: usize = summaries.iter().map(|s| s.sent).sum();
        let seconds = replay.elapsed.as_secs_f64();
        Self {
            model: replay.model.model_name.clone(),
            model_sha256: replay.model.model_sha256.clone(),
            search_mode: replay.model.search_mode.clone(),
            threshold: replay.options.threshold,
            server_default_contamination: replay.model.default_contamination,
            sets: summaries,
            reference,
            images,
            requests: replay.latencies.len(),
            streams: replay.options.streams,
            batch_size: replay.options.batch_size,
            seconds,
            images_per_second: images as f64 / seconds.max(1e-9),
            latency_ms: Latency::of(&replay.latencies),
        }
    }

    pub fn markdown(&self) -> String {
        let threshold = match self.threshold {
            None => format!(
                "server default (contamination {})",
                self.server_default_contamination
            ),
            Some(Threshold::Contamination(c)) => format!("contamination {c}"),
            Some(Threshold::FalseRejectionRate(r)) => format!("false-rejection rate {r}"),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "model {} ({}), LOF search {}, threshold: {threshold}\n",
            self.model,
            &self.model_sha256[..self.model_sha256.len().min(12)],
            self.search_mode
        );
        let reference = self.reference.as_deref().unwrap_or("reference");
        let _ = writeln!(
            out,
            "| set | images | accepted | rejected | errors | accuracy | accepted and right | AUROC | rejected at 99 % {reference} accepted | accepted and right at 99 % {reference} accepted |"
        );
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        let pct = |x: Option<f64>| x.map(|a| format!("{:.2} %", 100.0 * a)).unwrap_or_default();
        for s in &self.sets {
            let auroc = match (&s.auroc, &self.reference) {
                (Some(a), Some(reference)) => format!("{a:.5} vs {reference}"),
                _ => "".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} % | {:.2} % | {} | {} | {} | {} | {} | {} |",
                s.name,
                s.sent,
                100.0 * s.accepted_fraction,
                100.0 * s.rejected_fraction,
                s.errors,
                pct(s.accuracy),
                pct(s.accepted_and_right),
                auroc,
                pct(s.rejected_at_99_accepted),
                pct(s.accepted_and_right_at_99_accepted),
            );
        }
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "\n{} images in {} requests over {} streams (batch {}) in {:.2} s: {:.0} images/s",
            self.images,
            self.requests,
            self.streams,
            self.batch_size,
            self.seconds,
            self.images_per_second
        );
        let _ = writeln!(
            out,
            "request latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.p50, l.p90, l.p99, l.max
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oodgate_proto::v1;

    fn set(name: &str, labels: Vec<u8>, labelled_digits: bool) -> ReplaySet {
        ReplaySet {
            name: name.into(),
            dataset: oodgate_datasets::Dataset {
                name: name.into(),
                class_names: (0..10).map(|d| d.to_string()).collect(),
                width: 1,
                height: 1,
                channels: 1,
                pixels: vec![0; labels.len()],
                labels,
            },
            labelled_digits,
        }
    }

    #[test]
    fn rejection_at_99_and_accepted_and_right_follow_the_reference_scores() {
        // Reference: 101 digits scored 0..=100, all accepted by the server, all class 3
        // but labelled 3 only for the first 50. Its 99 % threshold is 1.0 (numpy's 1st
        // percentile), so score 0 falls below it.
        let reference: Vec<Answer> = (0..=100)
            .map(|i| Answer::Accepted {
                class: 3,
                score: f64::from(i),
                lof: f64::from(i),
            })
            .collect();
        let labels: Vec<u8> = (0..=100).map(|i| if i < 50 { 3 } else { 4 }).collect();
        // Another digit set: scores -2, 0.5, 1, 5; the server rejected the first two.
        let typed = vec![
            Answer::Rejected {
                class: 7,
                score: -2.0,
                lof: -2.0,
            },
            Answer::Rejected {
                class: 7,
                score: 0.5,
                lof: 0.5,
            },
            Answer::Accepted {
                class: 7,
                score: 1.0,
                lof: 1.0,
            },
            Answer::Accepted {
                class: 1,
                score: 5.0,
                lof: 5.0,
            },
        ];
        // A non-digit set, one error among its answers.
        let letters = vec![
            Answer::Rejected {
                class: 0,
                score: 0.0,
                lof: 0.0,
            },
            Answer::Accepted {
                class: 0,
                score: 3.0,
                lof: 3.0,
            },
            Answer::Error("bad image".into()),
        ];
        let sets = vec![
            set("mnist", labels, true),
            set("typed-digits", vec![7, 7, 7, 7], true),
            set("letters", vec![0, 0, 0], false),
        ];
        let replay = Replay {
            model: v1::ModelInfo {
                model_sha256: "abc".into(),
                ..Default::default()
            },
            answers: vec![reference, typed, letters],
            latencies: vec![Duration::from_millis(1)],
            elapsed: Duration::from_secs(1),
            options: crate::ReplayOptions::default(),
        };
        let summary = Summary::new(&replay, &sets, None);
        let [mnist, typed, letters] = &summary.sets[..] else {
            panic!("three sets")
        };
        assert_eq!(summary.reference.as_deref(), Some("mnist"));
        assert_eq!(mnist.rejected_at_99_accepted, None);
        assert_eq!(mnist.accepted_and_right, Some(50.0 / 101.0));
        // Scores 1..=49 of the right ones are at or above the threshold 1.0.
        assert_eq!(mnist.accepted_and_right_at_99_accepted, Some(49.0 / 101.0));

        assert_eq!(typed.rejected_at_99_accepted, Some(0.5));
        assert_eq!(typed.accuracy, Some(0.75));
        assert_eq!(typed.accepted_and_right, Some(0.25));
        assert_eq!(typed.accepted_and_right_at_99_accepted, Some(0.25));

        assert_eq!(letters.rejected_at_99_accepted, Some(0.5));
        assert_eq!(letters.accepted_and_right, None);
        assert_eq!(letters.errors, 1);
        let table = summary.markdown();
        assert!(
            table.contains("| rejected at 99 % mnist accepted |"),
            "{table}"
        );
        assert!(
            table.contains("| letters | 3 | 50.00 % | 50.00 % | 1 |"),
            "{table}"
        );
    }

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&samples);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert!((l.mean - 50.5).abs() < 1e-9);
        assert_eq!(Latency::of(&[]).p50, 0.0);
    }
}
