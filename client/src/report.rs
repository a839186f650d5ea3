//! The replay's summary: the seed article's table (accepted / rejected per set), the
//! classifier's accuracy on labelled digits, AUROC of each other set against the
//! reference set from the returned scores, throughput and latency percentiles.

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
                let accuracy = set.labelled_digits.then(|| {
                    let correct = answers
                        .iter()
                        .zip(&set.dataset.labels)
                        .filter(|(a, label)| a.class() == Some(u32::from(**label)))
                        .count();
                    correct as f64 / judged
                });
                let auroc = match (&reference_scores, &reference) {
                    (Some(inliers), Some(name)) if name != &set.name => {
                        Some(oodgate_lof::roc::auroc(inliers, &scores(answers)))
                    }
                    _ => None,
                };
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
        out.push_str("| set | images | accepted | rejected | errors | accuracy | AUROC |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for s in &self.sets {
            let auroc = match (&s.auroc, &self.reference) {
                (Some(a), Some(reference)) => format!("{a:.5} vs {reference}"),
                _ => "".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} % | {:.2} % | {} | {} | {} |",
                s.name,
                s.sent,
                100.0 * s.accepted_fraction,
                100.0 * s.rejected_fraction,
                s.errors,
                s.accuracy
                    .map(|a| format!("{:.2} %", 100.0 * a))
                    .unwrap_or_default(),
                auroc
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

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&samples);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert!((l.mean - 50.5).abs() < 1e-9);
        assert_eq!(Latency::of(&[]).p50, 0.0);
    }
}
