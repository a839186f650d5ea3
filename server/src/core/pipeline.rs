//! The serving core that every RPC (and the HTTP side) goes through:
//! admission, decoding (off the async runtime unless it is a few raw images),
//! dynamic batching (model and LOF), thresholds and verdicts in order.
//!
//! Several gates (a model, its index and its training images each) share one pipeline.
//! Each [`Gate`] has its own detector slot and its own batcher, so a batch never mixes
//! gates. Admission is fair by partition: **each gate may hold at most
//! `queue_capacity / number of gates` images admitted and not yet answered**, so a gate
//! flooded past its share is refused (RESOURCE_EXHAUSTED) while the others keep theirs;
//! the configuration makes every share hold one largest request. The stream limit, the
//! request timeout and the source labels are the process's.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use oodgate_lof::Thresholds;

use crate::core::batcher::{BatchError, BatchSettings, Batcher};
use crate::core::detector::{Detector, DetectorError, Judgement, ThresholdSpec};
use crate::core::preprocess::{ImageError, ImageInput, InputSpec, Limits, prepare};
use crate::core::training::TrainingImages;
use crate::core::view::ModelView;
use crate::core::worker::{WorkerError, off_runtime};
use crate::metrics;

/// One image as a client sent it, already off the wire.
#[derive(Debug, Clone)]
pub struct ClientImage {
    pub id: String,
    pub data: Option<ImageData>,
}

#[derive(Debug, Clone)]
pub enum ImageData {
    Raw {
        width: u32,
        height: u32,
        channels: u32,
        pixels: Vec<u8>,
    },
    /// PNG or JPEG.
    Encoded(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct DetectInput {
    pub images: Vec<ClientImage>,
    pub threshold: ThresholdSpec,
    pub source: String,
    /// The gate's name; empty: the default gate.
    pub gate: String,
}

/// The answer for one request: a verdict per image, in request order.
pub(crate) struct Detection {
    /// The gate that judged it.
    pub gate: String,
    /// The model and index that judged it (their class names label the verdicts).
    pub detector: Arc<Detector>,
    pub verdicts: Vec<ImageVerdict>,
    /// The request's source, reduced to the bounded set of metric labels.
    pub source: String,
    pub timings: Timings,
}

#[derive(Debug)]
pub(crate) struct ImageVerdict {
    pub id: String,
    pub outcome: Result<Judgement, ImageError>,
}

/// Where one request's time went (queue, model run and LOF are shared with the other
/// requests of its batch).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Timings {
    pub preprocess: Duration,
    pub queue_wait: Duration,
    pub embed: Duration,
    pub lof: Duration,
    /// Images in the model run that embedded this request (0 if none were valid).
    pub batch_images: usize,
}

/// Why a whole request was refused. Mapped to gRPC and HTTP codes in one place each.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServeError {
    /// Each protocol names the field its own way (`threshold.contamination` in the
    /// proto, `contamination` in JSON).
    #[error("{field:?}: {message}")]
    InvalidArgument { field: Field, message: String },
    #[error(
        "server busy: {requested} images asked for, {available} of {capacity} queue slots free; retry later"
    )]
    Overloaded {
        requested: usize,
        available: usize,
        /// The gate's share of the queue.
        capacity: usize,
    },
    #[error("no gate {gate:?}; the gates are: {}", known.join(", "))]
    UnknownGate { gate: String, known: Vec<String> },
    #[error("the model and index are still loading")]
    NotReady,
    #[error("the request took longer than {0:?}")]
    DeadlineExceeded(Duration),
    #[error("{open} streams are open, the limit is {max}; retry later")]
    TooManyStreams { open: usize, max: usize },
    #[error("internal error: {0}")]
    Internal(#[from] InternalError),
}

/// The request fields the pipeline checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Images,
    Contamination,
    FalseRejectionRate,
}

/// A failure of the server's own, not the request's.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InternalError {
    #[error("decoding: {0}")]
    Decode(#[from] WorkerError),
    #[error(transparent)]
    Batch(#[from] BatchError<DetectorError>),
}

/// The pipeline's part of the configuration (the `server` and `batching` sections).
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub max_batch_size: usize,
    pub max_wait: Duration,
    /// Images admitted and not yet answered, at most.
    pub queue_capacity: usize,
    pub max_images: usize,
    pub limits: Limits,
    /// Source labels allowed for metrics (empty: the first `max_sources` seen).
    pub sources: Vec<String>,
    pub max_sources: usize,
    pub timeout: Option<Duration>,
    pub max_streams: usize,
    /// How long open streams still read requests after shutdown begins.
    pub read_after_drain: Duration,
}

pub(crate) struct Pipeline {
    /// The default gate first.
    gates: Vec<Arc<Gate>>,
    max_images: usize,
    limits: Limits,
    sources: SourceLabels,
    timeout: Option<Duration>,
    /// One permit per open DetectStream.
    streams: Arc<Semaphore>,
    /// Set on shutdown.
    draining: tokio::sync::watch::Sender<bool>,
    /// How long open streams still read requests after shutdown begins.
    read_after_drain: Duration,
    max_streams: usize,
}

/// One gate: its model and index (swapped on reload), its batcher and its share of the
/// queue.
pub(crate) struct Gate {
    name: String,
    detector: ArcSwapOption<Detector>,
    batcher: Batcher<Detector>,
    /// One permit per image admitted and not yet answered: the gate's share of the queue.
    admission: Arc<Semaphore>,
    share: usize,
    /// The index's training images, for the neighbours a rejection names.
    training: TrainingImages,
}

impl Gate {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn set_detector(&self, detector: Arc<Detector>) {
        self.detector.store(Some(detector));
    }

    pub(crate) fn detector(&self) -> Option<Arc<Detector>> {
        self.detector.load_full()
    }

    /// The serving detector, or NOT_READY while it loads.
    pub(crate) fn loaded(&self) -> Result<Arc<Detector>, ServeError> {
        self.detector().ok_or(ServeError::NotReady)
    }

    /// What the gate serves (NOT_READY while it loads).
    pub(crate) fn model_view(&self) -> Result<ModelView, ServeError> {
        Ok(ModelView::of(&self.name, &*self.loaded()?))
    }

    pub(crate) fn training(&self) -> &TrainingImages {
        &self.training
    }

    fn admit(&self, count: usize) -> Result<Admitted, ServeError> {
        let permit = self
            .admission
            .clone()
            .try_acquire_many_owned(count as u32)
            .map_err(|_| ServeError::Overloaded {
                requested: count,
                available: self.admission.available_permits(),
                capacity: self.share,
            })?;
        metrics::queue_changed(&self.name, count as f64);
        Ok(Admitted {
            _permit: permit,
            images: count,
            gate: self.name.clone(),
        })
    }
}

/// Held while a stream is open.
pub(crate) struct StreamSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Pipeline {
    /// Starts a batcher per gate (`gates`: their names, the default first); requests get
    /// NOT_READY until [`Gate::set_detector`].
    pub(crate) fn new(settings: PipelineSettings, gates: &[String]) -> Self {
        assert!(!gates.is_empty(), "a pipeline serves at least one gate");
        let share = settings.queue_capacity / gates.len();
        let gates = gates
            .iter()
            .map(|name| {
                metrics::register_gate(name);
                Arc::new(Gate {
                    name: name.clone(),
                    detector: ArcSwapOption::empty(),
                    batcher: Batcher::spawn(BatchSettings {
                        max_batch_size: settings.max_batch_size,
                        max_wait: settings.max_wait,
                        gate: name.as_str().into(),
                    }),
                    admission: Arc::new(Semaphore::new(share)),
                    share,
                    training: TrainingImages::default(),
                })
            })
            .collect();
        Self {
            gates,
            max_images: settings.max_images,
            limits: settings.limits,
            sources: SourceLabels::new(&settings.sources, settings.max_sources),
            timeout: settings.timeout,
            streams: Arc::new(Semaphore::new(settings.max_streams)),
            draining: tokio::sync::watch::Sender::new(false),
            read_after_drain: settings.read_after_drain,
            max_streams: settings.max_streams,
        }
    }

    /// The bounds every image is held to.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Every gate, the default first.
    pub(crate) fn gates(&self) -> &[Arc<Gate>] {
        &self.gates
    }

    pub(crate) fn default_gate(&self) -> &Arc<Gate> {
        &self.gates[0]
    }

    /// The gate called `name` (empty: the default one), or NOT_FOUND listing the gates.
    pub(crate) fn gate(&self, name: &str) -> Result<&Arc<Gate>, ServeError> {
        if name.is_empty() {
            return Ok(self.default_gate());
        }
        self.gates
            .iter()
            .find(|gate| gate.name == name)
            .ok_or_else(|| ServeError::UnknownGate {
                gate: name.to_owned(),
                known: self.gates.iter().map(|g| g.name.clone()).collect(),
            })
    }

    /// The `gate` label of a call naming `name`: the gate's, or "none" for an unknown one
    /// (clients choose the name; the label stays bounded).
    pub(crate) fn gate_label(&self, name: &str) -> &str {
        self.gate(name)
            .map_or(metrics::GATE_NONE, |gate| gate.name())
    }

    /// Every gate loaded and not shutting down.
    pub(crate) fn is_ready(&self) -> bool {
        self.is_loaded() && !self.is_draining()
    }

    /// Every gate has a model and index.
    pub(crate) fn is_loaded(&self) -> bool {
        self.gates.iter().all(|gate| gate.detector.load().is_some())
    }

    /// Shutdown has begun: open streams answer what they have read and end.
    pub(crate) fn drain(&self) {
        self.draining.send_replace(true);
    }

    pub(crate) fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves when open streams must stop reading: some time into the shutdown, so
    /// clients that are finishing finish, and those that are not get UNAVAILABLE with
    /// everything read still answered before the grace period ends.
    pub(crate) fn stop_reading(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut draining = self.draining.subscribe();
        let window = self.read_after_drain;
        async move {
            let _ = draining.wait_for(|d| *d).await;
            tokio::time::sleep(window).await;
        }
    }

    /// A slot for one more open stream, or RESOURCE_EXHAUSTED past `server.max_streams`.
    pub(crate) fn open_stream(&self) -> Result<StreamSlot, ServeError> {
        self.streams
            .clone()
            .try_acquire_owned()
            .map(StreamSlot)
            .map_err(|_| ServeError::TooManyStreams {
                open: self.max_streams - self.streams.available_permits(),
                max: self.max_streams,
            })
    }

    /// Verdicts for one request on its gate's current model.
    pub(crate) async fn detect(&self, input: DetectInput) -> Result<Detection, ServeError> {
        let gate = self.gate(&input.gate)?.clone();
        let detector = gate.loaded()?;
        self.detect_on(&gate, detector, input).await
    }

    /// Verdicts for one request on a given model of `gate` (a stream keeps the one it
    /// started with across reloads), recorded in the metrics. A request dropped before
    /// it finishes (its client went away) is counted as cancelled.
    pub(crate) async fn detect_on(
        &self,
        gate: &Gate,
        detector: Arc<Detector>,
        input: DetectInput,
    ) -> Result<Detection, ServeError> {
        let started = std::time::Instant::now();
        let unfinished = Unfinished(&gate.name);
        let result = match self.timeout {
            Some(limit) => tokio::time::timeout(limit, self.run(gate, detector, input))
                .await
                .unwrap_or(Err(ServeError::DeadlineExceeded(limit))),
            None => self.run(gate, detector, input).await,
        };
        std::mem::forget(unfinished);
        if let Ok(detection) = &result {
            record(detection, started.elapsed());
        }
        result
    }

    async fn run(
        &self,
        gate: &Gate,
        detector: Arc<Detector>,
        input: DetectInput,
    ) -> Result<Detection, ServeError> {
        validate(&input, self.max_images)?;
        let count = input.images.len();
        let threshold = threshold(&detector, input.threshold)?;
        let source = self.sources.label(&input.source);
        let _permit = gate.admit(count)?;
        let ticket = gate.batcher.announce(count);

        let spec = detector.embedder.input;
        let limits = self.limits;
        let started = std::time::Instant::now();
        let (ids, prepared, pixels) = if decodes_in_place(&input.images) {
            decode(input.images, &spec, &limits)
        } else {
            off_runtime(move || decode(input.images, &spec, &limits))
                .await
                .map_err(InternalError::from)?
        };
        let mut timings = Timings {
            preprocess: started.elapsed(),
            ..Timings::default()
        };

        let valid = prepared.iter().filter(|p| p.is_ok()).count();
        let mut judged = Vec::new();
        if valid > 0 {
            let output = ticket
                .score(detector.clone(), pixels, valid)
                .await
                .map_err(InternalError::from)?;
            timings.queue_wait = output.queue_wait;
            timings.embed = output.embed_time;
            timings.lof = output.lof_time;
            timings.batch_images = output.batch_images;
            judged = output
                .scored
                .into_iter()
                .map(|scored| scored.judge(threshold))
                .collect();
        } else {
            drop(ticket);
        }

        let mut judged = judged.into_iter();
        let verdicts = ids
            .into_iter()
            .zip(prepared)
            .map(|(id, prepared)| ImageVerdict {
                id,
                outcome: prepared.map(|()| judged.next().expect("one judgement per valid image")),
            })
            .collect();
        Ok(Detection {
            gate: gate.name.clone(),
            detector,
            verdicts,
            source,
            timings,
        })
    }
}

/// Queue slots held by one request until it is answered or dropped.
struct Admitted {
    _permit: OwnedSemaphorePermit,
    images: usize,
    gate: String,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        metrics::queue_changed(&self.gate, -(self.images as f64));
    }
}

/// One answered request in the metrics.
fn record(detection: &Detection, elapsed: Duration) {
    let classes = &detection.detector.model.classes;
    let outcomes = detection
        .verdicts
        .iter()
        .map(|verdict| match &verdict.outcome {
            Ok(judgement) if judgement.rejected() => metrics::ImageOutcome::Rejected {
                decision: judgement.decision,
            },
            Ok(judgement) => metrics::ImageOutcome::Classified {
                class: classes.get(judgement.class).map_or("", String::as_str),
                decision: judgement.decision,
            },
            Err(_) => metrics::ImageOutcome::Error,
        });
    let t = &detection.timings;
    let stages = metrics::Stages {
        preprocess: t.preprocess,
        batched: (t.batch_images > 0).then_some(metrics::BatchStages {
            queue: t.queue_wait,
            embed: t.embed,
            lof: t.lof,
        }),
    };
    metrics::record_detection(
        &detection.gate,
        &detection.source,
        outcomes,
        elapsed,
        stages,
    );
}

/// Dropped only if the request's future is dropped before it finishes.
struct Unfinished<'a>(&'a str);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        metrics::record_cancelled(self.0);
    }
}

fn invalid(field: Field, message: String) -> ServeError {
    ServeError::InvalidArgument { field, message }
}

/// The checks that need no model: the batch's size and the threshold's range.
pub fn validate(input: &DetectInput, max_images: usize) -> Result<(), ServeError> {
    let count = input.images.len();
    if count == 0 {
        return Err(invalid(Field::Images, "the batch is empty".into()));
    }
    if count > max_images {
        return Err(invalid(
            Field::Images,
            format!("{count} images in one request, the limit is {max_images}"),
        ));
    }
    if let Some((field, value)) = threshold_field(input.threshold)
        && !(value.is_finite() && value > 0.0 && value <= 0.5)
    {
        return Err(invalid(field, format!("must be in (0, 0.5], got {value}")));
    }
    Ok(())
}

fn threshold_field(spec: ThresholdSpec) -> Option<(Field, f64)> {
    match spec {
        ThresholdSpec::Default => None,
        ThresholdSpec::Contamination(c) => Some((Field::Contamination, c)),
        ThresholdSpec::FalseRejectionRate(r) => Some((Field::FalseRejectionRate, r)),
    }
}

/// The thresholds of a validated spec.
fn threshold(detector: &Detector, spec: ThresholdSpec) -> Result<Thresholds, ServeError> {
    match threshold_field(spec) {
        None => Ok(detector.default_thresholds),
        Some((field, _)) => detector
            .threshold(spec)
            .map_err(|e| invalid(field, e.to_string())),
    }
}

/// Raw pixels up to this many bytes in all (about 20 MNIST images) are converted on
/// the request's own task: microseconds of work, less than a hand-off to the rayon
/// pool. Encoded images always go to the pool (a small file can decode to many pixels).
const IN_PLACE_DECODE_BYTES: usize = 16 * 1024;

fn decodes_in_place(images: &[ClientImage]) -> bool {
    let mut bytes = 0;
    for image in images {
        match &image.data {
            Some(ImageData::Raw { pixels, .. }) => bytes += pixels.len(),
            Some(ImageData::Encoded(_)) => return false,
            None => {}
        }
    }
    bytes <= IN_PLACE_DECODE_BYTES
}

pub(crate) type Decoded = (Vec<String>, Vec<Result<(), ImageError>>, Vec<f32>);

/// Each image to the model's input; valid ones packed back to back. The ids, each
/// image's outcome, and the packed pixels.
pub fn decode(images: Vec<ClientImage>, spec: &InputSpec, limits: &Limits) -> Decoded {
    let mut ids = Vec::with_capacity(images.len());
    let mut outcomes = Vec::with_capacity(images.len());
    let mut pixels = Vec::with_capacity(images.len() * spec.len());
    for image in images {
        ids.push(image.id);
        let input = match &image.data {
            None => Err(ImageError::Missing),
            Some(ImageData::Raw {
                width,
                height,
                channels,
                pixels,
            }) => Ok(ImageInput::Raw {
                width: *width,
                height: *height,
                channels: *channels,
                pixels,
            }),
            Some(ImageData::Encoded(bytes)) => Ok(ImageInput::Encoded(bytes)),
        };
        let prepared = input.and_then(|input| prepare(input, spec, limits));
        outcomes.push(prepared.map(|values| pixels.extend_from_slice(&values)));
    }
    (ids, outcomes, pixels)
}

/// Per image, in order, the model input it becomes (floats in [0, 1] in `spec`'s
/// layout), `None` for an image that cannot be used: what the demo page shows.
pub(crate) fn model_inputs(
    images: Vec<ClientImage>,
    spec: &InputSpec,
    limits: &Limits,
) -> Vec<Option<Vec<f32>>> {
    let (_, prepared, pixels) = decode(images, spec, limits);
    split_inputs(&prepared, &pixels, spec.len())
}

/// The packed inputs of the valid images, back to one entry per image.
fn split_inputs(
    prepared: &[Result<(), ImageError>],
    pixels: &[f32],
    len: usize,
) -> Vec<Option<Vec<f32>>> {
    let mut chunks = pixels.chunks(len);
    prepared
        .iter()
        .map(|p| {
            p.as_ref()
                .ok()
                .and_then(|()| chunks.next().map(<[f32]>::to_vec))
        })
        .collect()
}

/// The request's `source`, reduced to a bounded set of labels so metrics stay small.
pub struct SourceLabels {
    allowed: Vec<String>,
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl SourceLabels {
    pub const OTHER: &'static str = "other";
    pub const NONE: &'static str = "none";

    /// Every label known before any request: the allowed ones, "other" if some are
    /// allowed, and "none".
    pub fn known(allowed: &[String]) -> Vec<String> {
        let mut labels = allowed.to_vec();
        if !labels.is_empty() {
            labels.push(Self::OTHER.into());
        }
        labels.push(Self::NONE.into());
        labels
    }

    pub fn new(allowed: &[String], max: usize) -> Self {
        Self {
            allowed: allowed.to_vec(),
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    pub fn label(&self, source: &str) -> String {
        if source.is_empty() {
            return Self::NONE.into();
        }
        if !self.allowed.is_empty() {
            return if self.allowed.iter().any(|a| a == source) {
                source.into()
            } else {
                Self::OTHER.into()
            };
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(source) {
            return source.into();
        }
        // Labels are client-chosen: keep them short and never let their number grow.
        if seen.len() < self.max && source.len() <= 64 {
            seen.insert(source.to_owned());
            return source.into();
        }
        Self::OTHER.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_gates(queue_capacity: usize) -> Pipeline {
        let settings = PipelineSettings {
            max_batch_size: 8,
            max_wait: Duration::ZERO,
            queue_capacity,
            max_images: 8,
            limits: Limits::default(),
            sources: Vec::new(),
            max_sources: 1,
            timeout: None,
            max_streams: 1,
            read_after_drain: Duration::ZERO,
        };
        Pipeline::new(settings, &["a".into(), "b".into()])
    }

    #[tokio::test]
    async fn a_gate_past_its_share_is_refused_while_another_is_admitted() {
        let pipeline = two_gates(16);
        let a = pipeline.gate("a").unwrap();
        let held = a.admit(8).unwrap();
        // a's share (16 / 2) is taken: a is refused, b still has all of its own.
        match a.admit(1) {
            Err(ServeError::Overloaded {
                requested,
                available,
                capacity,
            }) => assert_eq!((requested, available, capacity), (1, 0, 8)),
            other => panic!("{:?}", other.map(|_| ())),
        }
        let b = pipeline.gate("b").unwrap().admit(8).unwrap();
        drop(held);
        let _again = a.admit(8).unwrap();
        drop(b);
    }

    #[tokio::test]
    async fn gates_are_found_by_name_and_unknown_ones_listed() {
        let pipeline = two_gates(16);
        assert_eq!(pipeline.gate("").unwrap().name(), "a");
        assert_eq!(pipeline.gate("b").unwrap().name(), "b");
        assert_eq!(pipeline.gate_label("b"), "b");
        assert_eq!(pipeline.gate_label("zzz"), metrics::GATE_NONE);
        let unknown = pipeline.gate("fashion").err().unwrap();
        assert_eq!(
            unknown.to_string(),
            "no gate \"fashion\"; the gates are: a, b"
        );
        // Nothing loaded yet.
        assert!(!pipeline.is_loaded());
        assert!(matches!(
            pipeline.gate("a").unwrap().model_view(),
            Err(ServeError::NotReady)
        ));
    }

    #[test]
    fn source_labels_are_bounded() {
        let open = SourceLabels::new(&[], 2);
        assert_eq!(open.label(""), "none");
        assert_eq!(open.label("a"), "a");
        assert_eq!(open.label("b"), "b");
        assert_eq!(open.label("c"), "other");
        assert_eq!(open.label("a"), "a");
        assert_eq!(open.label(&"x".repeat(65)), "other");

        let listed = SourceLabels::new(&["mnist".into()], 2);
        assert_eq!(listed.label("mnist"), "mnist");
        assert_eq!(listed.label("fashion"), "other");
    }

    #[test]
    fn decode_keeps_order_and_reports_bad_images() {
        let spec = InputSpec {
            layout: crate::core::preprocess::Layout::Nhwc,
            height: 28,
            width: 28,
            channels: 1,
            transform: crate::core::preprocess::Transform::Legacy,
        };
        let raw = |n: usize| ImageData::Raw {
            width: 28,
            height: 28,
            channels: 1,
            pixels: vec![7; n],
        };
        let images = vec![
            ClientImage {
                id: "ok1".into(),
                data: Some(raw(784)),
            },
            ClientImage {
                id: "short".into(),
                data: Some(raw(100)),
            },
            ClientImage {
                id: "none".into(),
                data: None,
            },
            ClientImage {
                id: "junk".into(),
                data: Some(ImageData::Encoded(b"not an image".to_vec())),
            },
            ClientImage {
                id: "ok2".into(),
                data: Some(raw(784)),
            },
        ];
        let (ids, outcomes, pixels) = decode(images, &spec, &Limits::default());
        assert_eq!(ids, ["ok1", "short", "none", "junk", "ok2"]);
        assert!(outcomes[0].is_ok() && outcomes[4].is_ok());
        assert!(matches!(outcomes[1], Err(ImageError::PixelCount { .. })));
        assert_eq!(outcomes[2], Err(ImageError::Missing));
        assert_eq!(outcomes[3], Err(ImageError::UnknownEncoding));
        assert_eq!(pixels.len(), 2 * 784);

        let inputs = split_inputs(&outcomes, &pixels, 784);
        assert_eq!(inputs.len(), 5);
        assert!(inputs[1..4].iter().all(Option::is_none));
        for i in [0, 4] {
            assert_eq!(inputs[i].as_deref(), Some(&[7.0f32 / 255.0; 784][..]));
        }
    }
}
