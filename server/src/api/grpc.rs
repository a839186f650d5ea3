//! The `oodgate.v1.Detector` gRPC service: wire types in and out of the [`Pipeline`].
//!
//! Every refusal becomes a gRPC status in [`status`], the one place that maps them.
//! Requests name their gate (empty: the default one); a stream may use several, each
//! on the model it had at the stream's first request for it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{Stream, StreamExt};
use oodgate_proto::v1;
use oodgate_proto::v1::detector_server::Detector as DetectorRpc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::core::detector::{Detector, ThresholdSpec};
use crate::core::pipeline::{
    ClientImage, DetectInput, Field, Gate, ImageData, Pipeline, ServeError, StreamSlot,
};
use crate::core::view::{self, Answer, Evidence, ModelView, VerdictView};
use crate::metrics;

pub(crate) use oodgate_proto::v1::admin_server::AdminServer;
pub(crate) use oodgate_proto::v1::detector_server::DetectorServer;

pub(crate) struct DetectorService {
    pipeline: Arc<Pipeline>,
    /// Requests of one stream in flight at once.
    depth: usize,
    next_stream: AtomicU64,
}

impl DetectorService {
    /// `depth`: requests of one stream in flight at once.
    pub(crate) fn new(pipeline: Arc<Pipeline>, depth: usize) -> Self {
        Self {
            pipeline,
            depth,
            next_stream: AtomicU64::new(1),
        }
    }

    /// The tonic server for this service, with the message size limit.
    pub(crate) fn into_server(self, max_message_bytes: usize) -> DetectorServer<Self> {
        DetectorServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

type VerdictStream = Pin<Box<dyn Stream<Item = Result<v1::DetectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DetectorRpc for DetectorService {
    type DetectStreamStream = VerdictStream;

    async fn detect_stream(
        &self,
        request: Request<Streaming<v1::DetectRequest>>,
    ) -> Result<Response<VerdictStream>, Status> {
        let opened = if self.pipeline.is_loaded() {
            self.pipeline.open_stream()
        } else {
            Err(ServeError::NotReady)
        };
        let slot = match opened {
            Ok(slot) => slot,
            Err(e) => {
                let status = status(&e);
                metrics::record_request(
                    metrics::GATE_NONE,
                    "DetectStream",
                    code_name(status.code()),
                );
                return Err(status);
            }
        };
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let span = tracing::info_span!("stream", id, %peer);
        let (tx, rx) = mpsc::channel(self.depth);
        tokio::spawn(
            relay(
                self.pipeline.clone(),
                slot,
                request.into_inner(),
                tx,
                self.depth,
            )
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn detect(
        &self,
        request: Request<v1::DetectRequest>,
    ) -> Result<Response<v1::DetectResponse>, Status> {
        let request = request.into_inner();
        let label = self.pipeline.gate_label(&request.gate).to_owned();
        let answer = match self
            .pipeline
            .gate(&request.gate)
            .and_then(|gate| Ok((gate, gate.loaded()?)))
        {
            Ok((gate, detector)) => detect(&self.pipeline, gate, detector, request).await,
            Err(e) => Err(status(&e)),
        };
        metrics::record_request(&label, "Detect", code(&answer));
        answer.map(Response::new)
    }

    async fn get_model_info(
        &self,
        request: Request<v1::GetModelInfoRequest>,
    ) -> Result<Response<v1::ModelInfo>, Status> {
        let name = request.into_inner().gate;
        let answer = self
            .pipeline
            .gate(&name)
            .and_then(|gate| gate.model_view())
            .map(model_info)
            .map_err(|e| status(&e));
        let label = self.pipeline.gate_label(&name);
        metrics::record_request(label, "GetModelInfo", code(&answer));
        answer.map(Response::new)
    }

    async fn list_gates(
        &self,
        _request: Request<v1::ListGatesRequest>,
    ) -> Result<Response<v1::ListGatesResponse>, Status> {
        let answer = model_views(&self.pipeline)
            .map(|views| v1::ListGatesResponse {
                default_gate: self.pipeline.default_gate().name().to_owned(),
                gates: views.into_iter().map(model_info).collect(),
            })
            .map_err(|e| status(&e));
        metrics::record_request(metrics::GATE_NONE, "ListGates", code(&answer));
        answer.map(Response::new)
    }
}

/// Every gate's model, the default first; NOT_READY while one is still loading.
pub(crate) fn model_views(pipeline: &Pipeline) -> Result<Vec<ModelView>, ServeError> {
    pipeline
        .gates()
        .iter()
        .map(|gate| gate.model_view())
        .collect()
}

/// The gate and model a stream's request goes to: the gate's model at the stream's
/// first request for it, kept across reloads.
fn stream_model(
    pipeline: &Pipeline,
    models: &mut HashMap<String, (Arc<Gate>, Arc<Detector>)>,
    name: &str,
) -> Result<(Arc<Gate>, Arc<Detector>), ServeError> {
    let gate = pipeline.gate(name)?;
    if let Some(chosen) = models.get(gate.name()) {
        return Ok(chosen.clone());
    }
    let chosen = (gate.clone(), gate.loaded()?);
    models.insert(gate.name().to_owned(), chosen.clone());
    Ok(chosen)
}

/// Answers one stream's requests in order, up to `depth` of them at once, until the
/// client closes its side, goes away, or a request is refused (its status ends the stream).
async fn relay(
    pipeline: Arc<Pipeline>,
    _slot: StreamSlot,
    inbound: Streaming<v1::DetectRequest>,
    tx: mpsc::Sender<Result<v1::DetectResponse, Status>>,
    depth: usize,
) {
    tracing::debug!("stream opened");
    let _open = metrics::OpenStream::new();
    // During shutdown the stream stops reading at some point: requests already read are
    // answered, then UNAVAILABLE (below) tells the client to resend the rest.
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = {
        let (cut, stop) = (cut.clone(), pipeline.stop_reading());
        async move {
            stop.await;
            cut.store(true, Ordering::Relaxed);
        }
    };
    let mut models = HashMap::new();
    let mut answers = inbound
        .take_until(Box::pin(stop))
        .map(|message| {
            // Resolved in order, as read: a gate's model is the one of its first request.
            let chosen = match message.map_err(oversized) {
                // A message over the size limit names no gate it can be counted under.
                Err(refused) => Err((metrics::GATE_NONE.to_owned(), refused)),
                Ok(request) => match stream_model(&pipeline, &mut models, &request.gate) {
                    Ok((gate, detector)) => Ok((gate, detector, request)),
                    Err(e) => Err((pipeline.gate_label(&request.gate).to_owned(), status(&e))),
                },
            };
            let pipeline = pipeline.clone();
            async move {
                match chosen {
                    Ok((gate, detector, request)) => {
                        let answer = detect(&pipeline, &gate, detector, request).await;
                        (gate.name().to_owned(), answer)
                    }
                    Err((label, refused)) => (label, Err(refused)),
                }
            }
        })
        .buffered(depth);
    let (mut requests, mut images) = (0u64, 0u64);
    let mut end = StreamEnd::ClientFinished;
    while let Some((gate, answer)) = answers.next().await {
        let failed = answer.as_ref().err().map(|s| s.code());
        metrics::record_request(&gate, "DetectStream", code(&answer));
        if let Ok(response) = &answer {
            requests += 1;
            images += response.verdicts.len() as u64;
        }
        if tx.send(answer).await.is_err() {
            // In-flight requests are dropped with `answers`; the batcher skips them.
            end = StreamEnd::ClientGone;
            break;
        }
        if let Some(code) = failed {
            tracing::debug!(?code, "stream ended by an error");
            end = StreamEnd::Refused;
            break;
        }
    }
    if end == StreamEnd::ClientFinished && cut.load(Ordering::Relaxed) {
        end = StreamEnd::ShuttingDown;
        let _ = tx
            .send(Err(Status::unavailable(
                "the server is shutting down: requests after the last answer were not read; send them again",
            )))
            .await;
    }
    tracing::info!(requests, images, end = end.as_str(), "stream closed");
}

/// Why a stream ended, as its closing log line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    ClientFinished,
    ClientGone,
    /// A request was refused: its status ended the stream.
    Refused,
    /// Shutdown stopped reading; the client was told to resend the rest.
    ShuttingDown,
}

impl StreamEnd {
    fn as_str(self) -> &'static str {
        match self {
            Self::ClientFinished => "client finished",
            Self::ClientGone => "client went away",
            Self::Refused => "error",
            Self::ShuttingDown => "server shutting down",
        }
    }
}

async fn detect(
    pipeline: &Pipeline,
    gate: &Gate,
    detector: Arc<Detector>,
    request: v1::DetectRequest,
) -> Result<v1::DetectResponse, Status> {
    let detection = pipeline
        .detect_on(gate, detector, detect_input(request))
        .await
        .map_err(|e| status(&e))?;
    Ok(v1::DetectResponse {
        verdicts: view::verdicts(detection).into_iter().map(verdict).collect(),
    })
}

/// tonic refuses a message over the size limit with OUT_OF_RANGE; gRPC's convention
/// (and this API's) is RESOURCE_EXHAUSTED.
fn oversized(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange && status.message().contains("too large") {
        Status::resource_exhausted(status.message().to_owned())
    } else {
        status
    }
}

/// The same for unary calls, whose decoding fails before the handler runs: rewrites
/// the status in the trailers-only response.
pub(crate) fn oversized_response(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.replace("%20", " ").contains("too large"));
    if out_of_range && too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

fn code<T>(answer: &Result<T, Status>) -> &'static str {
    code_name(
        answer
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok),
    )
}

/// The one mapping from refusals to gRPC status codes.
pub(crate) fn status(error: &ServeError) -> Status {
    let message = error.to_string();
    match error {
        ServeError::InvalidArgument { field, message } => {
            Status::invalid_argument(format!("{}: {message}", proto_field(*field)))
        }
        ServeError::Overloaded { .. } => Status::resource_exhausted(message),
        ServeError::NotReady => Status::unavailable(message),
        ServeError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
        ServeError::TooManyStreams { .. } => Status::resource_exhausted(message),
        ServeError::UnknownGate { .. } => Status::not_found(message),
        ServeError::Internal(_) => {
            tracing::error!(%message, "request failed");
            Status::internal(message)
        }
    }
}

/// A request field as the proto names it.
fn proto_field(field: Field) -> &'static str {
    match field {
        Field::Images => "images",
        Field::Contamination => "threshold.contamination",
        Field::FalseRejectionRate => "threshold.false_rejection_rate",
    }
}

/// A wire request as the pipeline takes it (no copies of pixel bytes).
pub fn detect_input(request: v1::DetectRequest) -> DetectInput {
    use v1::image::Data;
    use v1::threshold::Kind;

    let images = request
        .images
        .into_iter()
        .map(|image| ClientImage {
            id: image.id,
            data: image.data.map(|data| match data {
                Data::Raw(raw) => ImageData::Raw {
                    width: raw.width,
                    height: raw.height,
                    channels: raw.channels,
                    pixels: raw.pixels,
                },
                Data::Encoded(bytes) => ImageData::Encoded(bytes),
            }),
        })
        .collect();
    let threshold = match request.threshold.and_then(|t| t.kind) {
        None => ThresholdSpec::Default,
        Some(Kind::Contamination(c)) => ThresholdSpec::Contamination(c),
        Some(Kind::FalseRejectionRate(r)) => ThresholdSpec::FalseRejectionRate(r),
    };
    DetectInput {
        images,
        threshold,
        source: request.source,
        gate: request.gate,
    }
}

fn verdict(verdict: VerdictView) -> v1::Verdict {
    use v1::verdict::Outcome;

    let (rejected, evidence) = match verdict.answer {
        Answer::Classify(evidence) => (false, evidence),
        Answer::Reject(evidence) => (true, evidence),
        Answer::Error { error } => {
            return v1::Verdict {
                id: verdict.id,
                outcome: Some(Outcome::Error(v1::ImageError { message: error })),
                ..Default::default()
            };
        }
    };
    let Evidence {
        class,
        lof,
        neighbours,
        distance,
        training_tail,
    } = evidence;
    let class = v1::Classification {
        class_index: class.class_index,
        class_name: class.class_name,
        probability: class.probability,
    };
    let outcome = if rejected {
        Outcome::Reject(v1::Rejection {
            neighbours: neighbours
                .unwrap_or_default()
                .into_iter()
                .map(|n| v1::Neighbour {
                    training_id: n.training_id,
                    label: n.label,
                    label_name: n.label_name,
                    distance: n.distance as f32,
                    reference: n.reference.unwrap_or_default(),
                })
                .collect(),
            would_classify_as: Some(class),
        })
    } else {
        Outcome::Classify(class)
    };
    v1::Verdict {
        id: verdict.id,
        outcome: Some(outcome),
        lof: Some(v1::LofEvidence {
            score: lof.score,
            threshold: lof.threshold,
            decision: lof.decision,
        }),
        distance: distance.map(|d| v1::DistanceEvidence {
            kth_distance: d.kth_distance,
            threshold: d.threshold,
            decision: d.decision,
        }),
        training_tail,
    }
}

pub(crate) fn model_info(view: ModelView) -> v1::ModelInfo {
    v1::ModelInfo {
        model_name: view.model_name,
        model_sha256: view.model_sha256,
        input_layout: view.input_layout.into(),
        input_height: view.input_height,
        input_width: view.input_width,
        input_channels: view.input_channels,
        classes: view.classes,
        embedding_dim: view.embedding_dim,
        k: view.k,
        index_size: view.index_size,
        default_contamination: view.default_contamination,
        default_threshold: view.default_threshold,
        distance_check: view.distance_check,
        default_distance_threshold: view.default_distance_threshold,
        search_mode: view.search_mode.into(),
        reference: view.reference,
        reference_fingerprint: view.reference_fingerprint,
        calibration_false_rejection_rate: view.calibration_false_rejection_rate,
        calibration_size: view.calibration_size,
        calibration_rejected: view.calibration_rejected,
        gate: view.gate,
        model_variant: view.model_variant.into(),
    }
}

/// What the Admin RPC needs from the application: load a gate's model and swap it in.
#[tonic::async_trait]
pub(crate) trait Reload: Send + Sync + 'static {
    /// `gate`: empty for the default one; `model_dir`: None for the configured one. The
    /// new model, and the seconds it took. An unknown gate fails with
    /// [`ServeError::UnknownGate`].
    async fn reload(
        &self,
        gate: &str,
        model_dir: Option<PathBuf>,
    ) -> anyhow::Result<(ModelView, f64)>;
}

/// `oodgate.v1.Admin`: hot reload.
pub(crate) struct AdminService {
    reloader: Arc<dyn Reload>,
}

impl AdminService {
    pub(crate) fn new(reloader: Arc<dyn Reload>) -> Self {
        Self { reloader }
    }
}

#[tonic::async_trait]
impl oodgate_proto::v1::admin_server::Admin for AdminService {
    async fn reload(
        &self,
        request: Request<v1::ReloadRequest>,
    ) -> Result<Response<v1::ReloadResponse>, Status> {
        let request = request.into_inner();
        let dir = (!request.model_dir.is_empty()).then(|| PathBuf::from(request.model_dir));
        match self.reloader.reload(&request.gate, dir).await {
            Ok((model, seconds)) => Ok(Response::new(v1::ReloadResponse {
                model: Some(model_info(model)),
                seconds,
            })),
            Err(e) => match e.downcast_ref::<ServeError>() {
                Some(refused) => Err(status(refused)),
                None => Err(Status::failed_precondition(format!(
                    "reload failed, the current model keeps serving: {e:#}"
                ))),
            },
        }
    }
}

/// gRPC's canonical names (as grpc-go and Envoy label them), for the metrics.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
