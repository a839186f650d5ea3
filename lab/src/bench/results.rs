//! What one `oodgate bench` run measured: one struct per stage, nested in
//! [`BenchResults`], saved as `results.json` and rendered by [`super::markdown`].
//!
//! The JSON keys are the report's file format (`oodgate bench --from-json` renders a
//! saved file again), so fields keep their names. A key that a run may leave out is an
//! `Option` skipped when `None`; an `Option` written as `null` is a figure the run could
//! not take (e.g. no `/proc` entry).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The whole run, as `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BenchResults {
    /// The command shown in the report.
    pub command: String,
    /// `--quick`: small samples, timings not to be quoted.
    pub quick: bool,
    pub total_seconds: f64,
    pub machine: Machine,
    pub model: ModelInfo,
    pub preprocess: Preprocess,
    pub ort: OrtSweep,
    pub lof_alone: Vec<LofAlone>,
    pub pipeline_limit: PipelineLimit,
    /// One image in process, measured alone before any server ran.
    pub in_process_single_ms: LatencyStats,
    pub lof_vs_sklearn: LofComparison,
    /// The Keras + scikit-learn stack (absent with `--skip-seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seed>,
    pub service: Service,
    /// The service again with the search mode that is not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_alternative: Option<AlternativeService>,
    /// One server with two gates streamed at once, next to one gate (absent from runs
    /// made before the stage existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub two_gates: Option<TwoGates>,
    /// Absent with `--skip-index-build`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_build: Option<IndexBuild>,
    /// Absent with `--skip-index-build`, and from runs made before the stage existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_start: Option<FirstStart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    /// The default gate's int8 model next to its fp32 model (absent from runs made
    /// before the stage existed, and when the gate has no int8 model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<Int8Comparison>,
    /// Unary calls over TCP and over a Unix socket, next to in-process (absent from runs
    /// made before the stage existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unary_transports: Option<UnaryTransports>,
}

/// One image per call over loopback TCP and over the server's Unix socket, each next to
/// the in-process path for the same image; the round-trip floor over both; the model
/// run of one image on the configured thread pool and on one thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct UnaryTransports {
    /// The server's `model.small_batch_max` and `model.intra_threads`.
    pub small_batch_max: usize,
    pub intra_threads: usize,
    pub in_process_ms: LatencyStats,
    pub tcp_ms: LatencyStats,
    pub uds_ms: LatencyStats,
    /// `GetModelInfo` (no model work) over each.
    pub tcp_floor_ms: LatencyStats,
    pub uds_floor_ms: LatencyStats,
    /// The server's own per-request means over the unary calls of both transports.
    pub inside_server_mean_ms: ServerStageMeans,
    /// `Embedder::run` on one image: `model.intra_threads` threads, and one thread.
    pub model_run_pooled_ms: LatencyStats,
    pub model_run_one_thread_ms: LatencyStats,
}

/// Where and when the run happened, and the load average at each stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub date: String,
    pub cpu: String,
    /// As `nproc` printed it.
    pub cores: String,
    pub memory: String,
    pub kernel: String,
    /// The ONNX Runtime library's file name.
    pub onnxruntime: Option<String>,
    pub rustc: String,
    pub git: String,
    pub loads: Vec<StageLoad>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StageLoad {
    pub stage: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute figures.
    pub load: String,
}

/// The configured model and index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModelInfo {
    pub name: String,
    pub sha256: String,
    pub intra_threads: usize,
    /// The configured search mode, as `SearchMode`'s `Debug` prints it.
    pub search: String,
    pub index_size: usize,
    pub k: usize,
}

/// Preprocessing the three test sets as the service does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Preprocess {
    pub images: usize,
    pub seconds: f64,
}

/// ONNX Runtime alone over batch sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OrtSweep {
    /// MNIST test images per batch size.
    pub images: usize,
    pub sweep: Vec<OrtBatch>,
    /// The batch size with the highest rate.
    pub best_batch: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OrtBatch {
    pub batch: usize,
    pub images: usize,
    /// The best of `rounds`.
    pub images_per_second: f64,
    pub rounds: Vec<f64>,
}

/// LOF alone on one chunk size and search mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LofAlone {
    /// `SearchMode`'s `Debug`.
    pub mode: String,
    pub queries: usize,
    pub batch: usize,
    pub queries_per_second: f64,
}

/// Embed then LOF in one process, no overlap: what the service is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PipelineLimit {
    /// The batch sizes tried (the better one counts).
    pub batches: Vec<usize>,
    pub images: usize,
    pub before_service_images_per_second: f64,
    pub after_service_images_per_second: f64,
    pub before_batch: usize,
    pub after_batch: usize,
    pub before_by_batch: BTreeMap<usize, f64>,
    pub after_by_batch: BTreeMap<usize, f64>,
    /// The mean of the two measurements.
    pub images_per_second: f64,
}

/// Order statistics of one set of latencies, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LatencyStats {
    pub n: usize,
    // An empty sample's statistics are NaN, which JSON writes as null.
    #[serde(deserialize_with = "nan_if_null")]
    pub p50: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p90: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p99: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub max: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
}

impl LatencyStats {
    /// numpy-style linear percentiles of `samples`.
    pub(crate) fn of(samples: &[Duration]) -> Self {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let percentile = |percent: f64| {
            if ms.is_empty() {
                f64::NAN
            } else {
                oodgate_lof::percentile_linear(&ms, percent)
            }
        };
        Self {
            n: ms.len(),
            p50: percentile(50.0),
            p90: percentile(90.0),
            p99: percentile(99.0),
            max: ms.last().copied().unwrap_or(f64::NAN),
            mean: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
        }
    }
}

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// oodgate's LOF in every search mode on all test queries, against scikit-learn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LofComparison {
    pub queries: usize,
    /// oodgate's threshold at the bench's contamination.
    pub offset: f64,
    pub modes: Vec<LofMode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LofMode {
    /// "exact" or "HNSW ef N".
    pub mode: String,
    /// `SearchMode`'s `Debug` (matches [`ModelInfo::search`]).
    pub search: String,
    pub seconds: f64,
    pub queries_per_second: f64,
    /// Against exact search.
    pub recall_at_k: f64,
    pub agreement_with_exact: f64,
    /// The three scikit-learn figures are absent without the seed stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_with_sklearn: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relative_score_difference: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup_vs_sklearn: Option<f64>,
}

/// `bench/seed_stack.py`'s `seed.json`: scikit-learn LOF and Keras.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Seed {
    pub import_seconds: f64,
    pub versions: SeedVersions,
    pub lof_fit_seconds: f64,
    /// scikit-learn's `offset_`.
    pub lof_offset: f64,
    /// The neighbour algorithm scikit-learn chose.
    pub lof_method: String,
    pub lof_score_seconds: f64,
    pub lof_queries: usize,
    pub batch_preprocess_seconds: f64,
    pub batch_predict_seconds: f64,
    pub batch_images: usize,
    pub batch_size: usize,
    /// Preprocess + predict + LOF scoring.
    pub batch_seconds: f64,
    pub batch_images_per_second: f64,
    pub single_indices: Vec<usize>,
    /// One image per call through `model.predict`.
    pub single_predict_ms: SeedLatency,
    /// One image per call through `model(x)`.
    pub single_call_ms: SeedLatency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeedVersions {
    pub tensorflow: String,
    pub keras: String,
    pub sklearn: String,
    pub numpy: String,
    pub python: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeedLatency {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
}

/// The service binary over loopback gRPC, configured search mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Service {
    /// Process start to health `SERVING`.
    pub startup_seconds: f64,
    pub stream: Stream,
    pub unary_ms: LatencyStats,
    pub unary_inside_server_mean_ms: ServerStageMeans,
    /// In process, each next to the unary call for the same image.
    pub in_process_interleaved_ms: LatencyStats,
    pub get_model_info_ms: LatencyStats,
    /// Peak RSS (`VmHWM`), kB; null where `/proc` does not say.
    pub vm_hwm_kb_after_stream: Option<u64>,
    pub vm_hwm_kb: Option<u64>,
}

/// All test images streamed by the replay library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stream {
    pub streams: usize,
    pub batch: usize,
    pub window: usize,
    pub images: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Per request, send to verdicts.
    pub request_latency_ms: LatencyStats,
    /// Null when the in-process run of that search mode is missing.
    pub scores_identical_to_in_process: Option<usize>,
}

/// Mean milliseconds per unary call inside the server, from its own histograms; a stage
/// that saw no request is absent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct ServerStageMeans {
    /// The whole request in the handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<f64>,
    /// Waiting for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<f64>,
    /// The model run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lof: Option<f64>,
}

/// A second server with the other search mode, streamed the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AlternativeService {
    /// `SearchMode`'s `Debug`.
    pub search: String,
    /// The `index.search` setting that selects it.
    pub setting: String,
    pub startup_seconds: f64,
    pub images: usize,
    /// In process with this mode, measured just before.
    pub pipeline_limit_images_per_second: f64,
    pub seconds: f64,
    pub images_per_second: f64,
    pub request_latency_ms: LatencyStats,
    pub scores_identical_to_in_process: Option<usize>,
}

/// One server serving two gates, each streamed its own test set at the same time, and
/// next to it a server serving the default gate alone, streamed the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TwoGates {
    /// The two-gate server: process start to health `SERVING`.
    pub startup_seconds: f64,
    /// Each gate's client: the one-gate streaming run's settings.
    pub streams: usize,
    pub batch: usize,
    pub window: usize,
    pub one_gate: OneGate,
    /// In the order the report lists them: the default gate first.
    pub gates: Vec<GateStream>,
    /// All gates' images over the wall clock from the common start to the last verdict.
    pub images: usize,
    pub seconds: f64,
    pub images_per_second: f64,
}

impl TwoGates {
    /// Total two-gate throughput / one-gate throughput.
    pub(crate) fn ratio(&self) -> f64 {
        self.images_per_second / self.one_gate.images_per_second
    }

    /// Every image got a verdict that is not an error.
    pub(crate) fn every_image_judged(&self) -> bool {
        self.gates
            .iter()
            .all(|g| g.verdicts == g.images && g.served_images == g.images as u64)
    }

    /// Each gate's model runs together carried exactly the images sent to that gate.
    pub(crate) fn batches_kept_apart(&self) -> bool {
        self.gates.iter().all(|g| g.batch_images == g.images as u64)
    }
}

/// The reference: the default gate alone, the same images (every gate's set, one after
/// the other) streamed by one client, just before and just after the two-gate run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OneGate {
    pub gate: String,
    pub images: usize,
    pub before_images_per_second: f64,
    pub after_images_per_second: f64,
    /// The mean of the two.
    pub images_per_second: f64,
    /// Two such clients at once, each streaming one gate's set to the default gate (as
    /// many images in flight as in the two-gate run), between the two.
    pub two_clients_images_per_second: f64,
}

/// One gate's stream during the two-gate run, and what the server's `/metrics` counted
/// for that gate over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GateStream {
    pub gate: String,
    /// The gate's model, as `GetModelInfo` named it.
    pub model: String,
    /// The test set streamed to it.
    pub set: String,
    pub images: usize,
    /// This gate's client, its first request to its last verdict.
    pub seconds: f64,
    pub images_per_second: f64,
    pub request_latency_ms: LatencyStats,
    /// Verdicts that are not errors.
    pub verdicts: usize,
    /// Share of the verdicts whose class (accepted or would-be) is the image's label.
    pub accuracy: f64,
    /// `oodgate_images_total` of this gate, over the stream.
    pub served_images: u64,
    /// `oodgate_batch_images`: this gate's model runs, and the images they carried.
    pub batches: u64,
    pub batch_images: u64,
}

/// `oodgate index build`, timed from outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IndexBuild {
    /// Without the HNSW graph (the default when the configuration searches exactly).
    pub seconds: f64,
    /// What the command printed.
    pub output: String,
    /// With `--graph` (absent from runs made before the graph was optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_output: Option<String>,
}

/// The service's start with no index cached: process start to health SERVING.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FirstStart {
    /// The gates the configuration serves, default first.
    pub gates: Vec<String>,
    pub all_gates_seconds: f64,
    /// The default gate alone.
    pub default_gate_seconds: f64,
}

/// How LOF cost grows with the index (see [`super::scaling`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Scaling {
    pub k: usize,
    pub contamination: f64,
    /// Largest size also built with exact training neighbours.
    pub exact_build_max: usize,
    /// Graph search width for a graph build's training neighbours.
    pub build_ef: usize,
    /// Noise of the synthetic points, relative to radius / sqrt(dim).
    pub jitter: f64,
    /// Each search time is the best of this many.
    pub runs: usize,
    /// "Near the threshold": within this fraction of it.
    pub near: f64,
    pub sizes: Vec<ScalingSize>,
}

/// One training set size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScalingSize {
    pub points: usize,
    /// Of `points`, how many are synthetic.
    pub synthetic: usize,
    pub queries: usize,
    /// Absent above [`Scaling::exact_build_max`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_build: Option<ScalingBuild>,
    pub graph_build: ScalingBuild,
    /// Verdicts of the two builds, both searched exactly (when both were built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_build_agreement_with_exact_build: Option<f64>,
}

impl ScalingSize {
    /// The builds measured at this size, labelled for the report.
    pub(crate) fn builds(&self) -> impl Iterator<Item = (&'static str, &ScalingBuild)> {
        let exact = self.exact_build.as_ref().map(|b| ("exact", b));
        exact
            .into_iter()
            .chain(std::iter::once(("graph", &self.graph_build)))
    }
}

/// One index built at one size, and its searches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScalingBuild {
    pub build_seconds: f64,
    /// Size of the saved index artifact.
    pub artifact_bytes: u64,
    /// The build's own recall check (null when it did none).
    pub recall_at_k: Option<f64>,
    /// Exact search first, then HNSW at each width.
    pub modes: Vec<ScalingMode>,
}

/// One search mode on one index. The exact row has `near_threshold`; the HNSW rows
/// have `ef` and their comparison with exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScalingMode {
    pub search: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    pub seconds: f64,
    pub queries_per_second: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup_vs_exact: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_with_exact: Option<f64>,
}

/// The default gate's int8 model next to its fp32 model, measured in turns in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Int8Comparison {
    pub gate: String,
    pub fp32_sha256: String,
    pub int8_sha256: String,
    /// The card's `int8` entry: how the int8 model was made.
    pub quantization: Option<serde_json::Value>,
    pub fp32_ort: OrtSweep,
    pub int8_ort: OrtSweep,
    /// Images of each streaming run (the three test sets).
    pub stream_images: usize,
    pub fp32_stream_images_per_second: f64,
    pub int8_stream_images_per_second: f64,
    /// MNIST test images of the accuracy figures.
    pub test_images: usize,
    pub fp32_accuracy: f64,
    pub int8_accuracy: f64,
    /// MNIST test first, then the out-of-distribution sets.
    pub sets: Vec<Int8Set>,
}

impl Int8Comparison {
    fn best(sweep: &OrtSweep) -> (usize, f64) {
        sweep
            .sweep
            .iter()
            .map(|row| (row.batch, row.images_per_second))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, f64::NAN))
    }

    /// (batch, images/s) at the fp32 model's best batch.
    pub(crate) fn fp32_ort_best(&self) -> (usize, f64) {
        Self::best(&self.fp32_ort)
    }

    pub(crate) fn int8_ort_best(&self) -> (usize, f64) {
        Self::best(&self.int8_ort)
    }

    pub(crate) fn accuracy_drop_points(&self) -> f64 {
        100.0 * (self.fp32_accuracy - self.int8_accuracy)
    }

    /// Equal verdicts over all sets' images.
    pub(crate) fn verdicts_equal(&self) -> f64 {
        let equal: usize = self.sets.iter().map(|s| s.verdicts_equal).sum();
        let images: usize = self.sets.iter().map(|s| s.images).sum();
        equal as f64 / images.max(1) as f64
    }

    /// The largest |int8 - fp32| of AUROC and of the rejection at 99 % accepted, over
    /// the out-of-distribution sets.
    pub(crate) fn largest_separation_delta(&self) -> f64 {
        self.sets
            .iter()
            .filter_map(|s| s.separation.as_ref())
            .flat_map(|x| {
                [
                    (x.int8_auroc - x.fp32_auroc).abs(),
                    (x.int8_rejected_at_99_accepted - x.fp32_rejected_at_99_accepted).abs(),
                ]
            })
            .fold(0.0, f64::max)
    }

    /// The card's settings in a few words.
    pub(crate) fn quantization_summary(&self) -> String {
        let Some(q) = &self.quantization else {
            return "none".into();
        };
        let get = |k: &str| q.get(k).map(|v| v.to_string()).unwrap_or_default();
        format!(
            "format {}, {} calibration on {} training images, per-channel {}, reduce-range {}, ops {}",
            get("format"),
            get("calibration_method"),
            q.pointer("/calibration/count")
                .map(|v| v.to_string())
                .unwrap_or_default(),
            get("per_channel"),
            get("reduce_range"),
            get("ops_quantized"),
        )
    }
}

/// One set as both models judged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Int8Set {
    pub set: String,
    pub images: usize,
    pub verdicts_equal: usize,
    pub fp32_rejected: f64,
    pub int8_rejected: f64,
    /// From MNIST test (absent for MNIST test itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separation: Option<Int8Separation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Int8Separation {
    pub fp32_auroc: f64,
    pub int8_auroc: f64,
    pub fp32_rejected_at_99_accepted: f64,
    pub int8_rejected_at_99_accepted: f64,
}
