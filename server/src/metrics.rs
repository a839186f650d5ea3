//! Prometheus metrics: every name, its help text and its buckets live here.
//!
//! The `metrics` facade records; `metrics-exporter-prometheus` renders `GET /metrics`.
//! The README documents each metric (name, type, labels, meaning).
//!
//! A leaf: it imports nothing from the rest of the crate, and the layers report to it in
//! plain values, so it never ties them together.
//!
//! Every series about requests, images, batches, the queue, a model or its reloads
//! carries a `gate` label (the gate's name; [`GATE_NONE`] for calls about no gate or an
//! unknown one, whose names are the client's and would make the label unbounded).
//! Process-wide ones have none: `oodgate_ready`, `oodgate_streams_active`,
//! `oodgate_streams_total` (a stream may use several gates) and
//! `oodgate_unauthenticated_total`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const IMAGES: &str = "oodgate_images_total";
pub const CLASSIFIED: &str = "oodgate_classified_total";
pub const REQUESTS: &str = "oodgate_requests_total";
pub const STREAMS_ACTIVE: &str = "oodgate_streams_active";
pub const STREAMS: &str = "oodgate_streams_total";
pub const CANCELLED: &str = "oodgate_cancelled_requests_total";
pub const IMAGE_SECONDS: &str = "oodgate_image_duration_seconds";
pub const STAGE_SECONDS: &str = "oodgate_stage_duration_seconds";
pub const BATCH_IMAGES: &str = "oodgate_batch_images";
pub const LOF_DECISION: &str = "oodgate_lof_decision";
pub const QUEUE_IMAGES: &str = "oodgate_queue_images";
pub const READY: &str = "oodgate_ready";
pub const MODEL_INFO: &str = "oodgate_model_info";
pub const UNAUTHENTICATED: &str = "oodgate_unauthenticated_total";
pub const RELOADS: &str = "oodgate_reloads_total";

const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
const DECISION_BUCKETS: &[f64] = &[
    -10.0, -5.0, -3.0, -2.0, -1.5, -1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0,
];

/// The `gate` label of calls about no gate (ListGates, a stream refused before its first
/// request) or naming one the server does not serve.
pub const GATE_NONE: &str = "none";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Builds the recorder with explicit buckets, installs it process-wide and describes
/// every metric; the handle renders the exposition text. The recorder is the process's:
/// a second server in the same process (a test) shares it, and gets the same handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(IMAGE_SECONDS.into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(STAGE_SECONDS.into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_IMAGES.into()), BATCH_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(LOF_DECISION.into()), DECISION_BUCKETS)?
        .install_recorder()?;
    describe();
    gauge!(READY).set(0.0);
    gauge!(STREAMS_ACTIVE).set(0.0);
    counter!(STREAMS).absolute(0);
    counter!(UNAUTHENTICATED).absolute(0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// A gate's series that exist before its model loads, at zero.
pub fn register_gate(gate: &str) {
    // Adding zero creates the series without resetting one that exists: a counter
    // that went back to 0 would read as a restart to Prometheus.
    gauge!(QUEUE_IMAGES, "gate" => gate.to_owned()).increment(0.0);
    counter!(CANCELLED, "gate" => gate.to_owned()).increment(0);
    for result in ["ok", "error"] {
        counter!(RELOADS, "gate" => gate.to_owned(), "result" => result).increment(0);
    }
}

fn describe() {
    describe_counter!(
        IMAGES,
        "Images answered, by gate, outcome (classified, rejected, error) and source label."
    );
    describe_counter!(
        CLASSIFIED,
        "Images classified (accepted), by gate and predicted class."
    );
    describe_counter!(
        REQUESTS,
        "Requests (each DetectStream message counts once), by gate, method and gRPC status code."
    );
    describe_gauge!(STREAMS_ACTIVE, "DetectStream calls open now.");
    describe_counter!(STREAMS, "DetectStream calls opened.");
    describe_counter!(
        CANCELLED,
        "Requests whose client went away before the answer."
    );
    describe_histogram!(
        IMAGE_SECONDS,
        metrics::Unit::Seconds,
        "Per image: from the request's arrival to its verdict."
    );
    describe_histogram!(
        STAGE_SECONDS,
        metrics::Unit::Seconds,
        "Per request, by stage: preprocess, queue (wait for the model), embed (model run), lof."
    );
    describe_histogram!(
        BATCH_IMAGES,
        "Images per ONNX Runtime run (dynamic batching)."
    );
    describe_histogram!(
        LOF_DECISION,
        "LOF decision value (score - threshold) per judged image; below 0 is a rejection."
    );
    describe_gauge!(
        QUEUE_IMAGES,
        "Images admitted and not yet answered, by gate."
    );
    describe_gauge!(READY, "1 when every gate's model and index are loaded.");
    describe_gauge!(
        MODEL_INFO,
        "The served model and index of each gate (value 1; the labels carry the information)."
    );
    describe_counter!(RELOADS, "Reloads of a gate's model, by gate and result.");
}

/// Keeps histograms bounded: the exporter drains them on upkeep.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
}

/// The labels of `oodgate_model_info`: which model and index serve.
#[derive(Debug, Clone)]
pub struct ModelLabels {
    pub gate: String,
    pub model: String,
    pub sha256: String,
    pub index_size: usize,
    pub k: usize,
    pub contamination: f64,
    /// "exact" or "hnsw".
    pub search: &'static str,
}

fn model_info(labels: &ModelLabels) -> metrics::Gauge {
    gauge!(
        MODEL_INFO,
        "gate" => labels.gate.clone(),
        "model" => labels.model.clone(),
        "sha256" => labels.sha256.clone(),
        "index_size" => labels.index_size.to_string(),
        "k" => labels.k.to_string(),
        "contamination" => labels.contamination.to_string(),
        "search" => labels.search,
    )
}

/// After a reload: the old model's info series drops to 0.
pub fn set_unloaded(labels: &ModelLabels) {
    model_info(labels).set(0.0);
}

pub fn record_reload(gate: &str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter!(RELOADS, "gate" => gate.to_owned(), "result" => result).increment(1);
}

pub fn record_unauthenticated() {
    counter!(UNAUTHENTICATED).increment(1);
}

/// A model is serving: its info series, and every series it can move at zero.
/// `sources` are the source labels known in advance (see the pipeline's `SourceLabels`).
pub fn set_loaded(labels: &ModelLabels, classes: &[String], sources: &[String]) {
    model_info(labels).set(1.0);
    let gate = &labels.gate;
    // Series that exist from the first scrape make rate() exact from the start.
    for source in sources {
        for outcome in ["classified", "rejected", "error"] {
            counter!(IMAGES, "gate" => gate.clone(), "outcome" => outcome, "source" => source.clone())
                .increment(0);
        }
    }
    for class in classes {
        counter!(CLASSIFIED, "gate" => gate.clone(), "class" => class.clone()).increment(0);
    }
    // Registering a histogram renders its buckets at zero, so the latency panels'
    // rate() has two samples from the first request on, not from the second scrape after it.
    let _ = histogram!(IMAGE_SECONDS, "gate" => gate.clone());
    let _ = histogram!(BATCH_IMAGES, "gate" => gate.clone());
    let _ = histogram!(LOF_DECISION, "gate" => gate.clone());
    for stage in STAGES {
        let _ = histogram!(STAGE_SECONDS, "gate" => gate.clone(), "stage" => stage);
    }
}

/// Every gate is loaded.
pub fn set_ready() {
    gauge!(READY).set(1.0);
}

pub fn set_not_ready() {
    gauge!(READY).set(0.0);
}

/// What became of one judged image.
#[derive(Debug, Clone, Copy)]
pub enum ImageOutcome<'a> {
    /// Accepted as `class`; `decision` is LOF's score - threshold.
    Classified {
        class: &'a str,
        decision: f64,
    },
    Rejected {
        decision: f64,
    },
    Error,
}

/// Where one request's time went; the last three are shared with its batch.
#[derive(Debug, Clone, Copy)]
pub struct Stages {
    pub preprocess: Duration,
    /// None when no image of the request reached the model.
    pub batched: Option<BatchStages>,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchStages {
    pub queue: Duration,
    pub embed: Duration,
    pub lof: Duration,
}

/// One answered request: images by outcome, classes, LOF decisions, stage times.
pub fn record_detection<'a>(
    gate: &str,
    source: &str,
    outcomes: impl IntoIterator<Item = ImageOutcome<'a>>,
    elapsed: Duration,
    stages: Stages,
) {
    let (mut classified, mut rejected, mut errors) = (0u64, 0u64, 0u64);
    let decisions = histogram!(LOF_DECISION, "gate" => gate.to_owned());
    for outcome in outcomes {
        match outcome {
            ImageOutcome::Classified { class, decision } => {
                decisions.record(decision);
                classified += 1;
                counter!(CLASSIFIED, "gate" => gate.to_owned(), "class" => class.to_owned())
                    .increment(1);
            }
            ImageOutcome::Rejected { decision } => {
                decisions.record(decision);
                rejected += 1;
            }
            ImageOutcome::Error => errors += 1,
        }
    }
    for (outcome, count) in [
        ("classified", classified),
        ("rejected", rejected),
        ("error", errors),
    ] {
        if count > 0 {
            counter!(IMAGES, "gate" => gate.to_owned(), "outcome" => outcome, "source" => source.to_owned())
                .increment(count);
        }
    }
    let images = (classified + rejected + errors) as usize;
    histogram!(IMAGE_SECONDS, "gate" => gate.to_owned()).record_many(elapsed.as_secs_f64(), images);
    record_stages(gate, &stages);
}

/// The values of `STAGE_SECONDS`'s "stage" label.
const STAGES: [&str; 4] = ["preprocess", "queue", "embed", "lof"];

fn record_stages(gate: &str, stages: &Stages) {
    let stage =
        |name: &'static str| histogram!(STAGE_SECONDS, "gate" => gate.to_owned(), "stage" => name);
    stage("preprocess").record(stages.preprocess.as_secs_f64());
    if let Some(batch) = stages.batched {
        stage("queue").record(batch.queue.as_secs_f64());
        stage("embed").record(batch.embed.as_secs_f64());
        stage("lof").record(batch.lof.as_secs_f64());
    }
}

/// One answered call; `code` is the gRPC status name ("OK", "INVALID_ARGUMENT", ...),
/// which HTTP answers are counted as too.
/// `gate`: the gate's name, or [`GATE_NONE`].
pub fn record_request(gate: &str, method: &'static str, code: &'static str) {
    counter!(REQUESTS, "gate" => gate.to_owned(), "method" => method, "code" => code).increment(1);
}

pub fn record_batch(gate: &str, images: usize) {
    histogram!(BATCH_IMAGES, "gate" => gate.to_owned()).record(images as f64);
}

pub fn record_cancelled(gate: &str) {
    counter!(CANCELLED, "gate" => gate.to_owned()).increment(1);
}

pub fn queue_changed(gate: &str, delta: f64) {
    gauge!(QUEUE_IMAGES, "gate" => gate.to_owned()).increment(delta);
}

/// Counts an open stream while alive.
pub struct OpenStream;

impl OpenStream {
    pub fn new() -> Self {
        counter!(STREAMS).increment(1);
        gauge!(STREAMS_ACTIVE).increment(1.0);
        Self
    }
}

impl Default for OpenStream {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        gauge!(STREAMS_ACTIVE).decrement(1.0);
    }
}
