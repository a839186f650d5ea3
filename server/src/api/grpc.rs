//! The `oodgate.v1.Detector` gRPC service: wire types in and out of the [`Pipeline`].
//!
//! Every refusal becomes a gRPC status in [`status`], the one place that maps them.

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

use crate::app::config::Config;
use crate::app::reload::Reloader;
use crate::core::detector::{Detector, ThresholdSpec};
use crate::core::pipeline::{
    ClientImage, DetectInput, Detection, ImageData, Pipeline, ServeError, StreamSlot,
};
use crate::metrics;

pub use oodgate_proto::v1::admin_server::AdminServer;
pub use oodgate_proto::v1::detector_server::DetectorServer;

pub struct DetectorService {
    pipeline: Arc<Pipeline>,
    /// Requests of one stream in flight at once.
    depth: usize,
    next_stream: AtomicU64,
}

impl DetectorService {
    pub fn new(pipeline: Arc<Pipeline>, config: &Config) -> Self {
        Self {
            pipeline,
            depth: config.server.stream_pipeline_depth,
            next_stream: AtomicU64::new(1),
        }
    }

    /// The tonic server for this service, with the configured message size limit.
    pub fn into_server(self, config: &Config) -> DetectorServer<Self> {
        DetectorServer::new(self)
            .max_decoding_message_size(config.server.max_message_bytes)
            .max_encoding_message_size(config.server.max_message_bytes)
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
        // The stream keeps this model to its end, across reloads.
        let opened = self
            .pipeline
            .detector()
            .ok_or(ServeError::NotReady)
            .and_then(|detector| Ok((detector, self.pipeline.open_stream()?)));
        let (detector, slot) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let status = status(&e);
                metrics::record_request("DetectStream", status.code());
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
                detector,
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
        let answer = match self.pipeline.detector() {
            Some(detector) => detect(&self.pipeline, detector, request.into_inner()).await,
            None => Err(status(&ServeError::NotReady)),
        };
        metrics::record_request("Detect", code(&answer));
        answer.map(Response::new)
    }

    async fn get_model_info(
        &self,
        _request: Request<v1::GetModelInfoRequest>,
    ) -> Result<Response<v1::ModelInfo>, Status> {
        let answer = self
            .pipeline
            .detector()
            .map(|detector| model_info(&detector))
            .ok_or_else(|| status(&ServeError::NotReady));
        metrics::record_request("GetModelInfo", code(&answer));
        answer.map(Response::new)
    }
}

/// Answers one stream's requests in order, up to `depth` of them at once, until the
/// client closes its side, goes away, or a request is refused (its status ends the stream).
async fn relay(
    pipeline: Arc<Pipeline>,
    detector: Arc<Detector>,
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
    let mut answers = inbound
        .take_until(Box::pin(stop))
        .map(|message| {
            let pipeline = pipeline.clone();
            let detector = detector.clone();
            async move { detect(&pipeline, detector, message.map_err(oversized)?).await }
        })
        .buffered(depth);
    let (mut requests, mut images) = (0u64, 0u64);
    let mut end = "client finished";
    while let Some(answer) = answers.next().await {
        let failed = answer.as_ref().err().map(|s| s.code());
        metrics::record_request("DetectStream", code(&answer));
        if let Ok(response) = &answer {
            requests += 1;
            images += response.verdicts.len() as u64;
        }
        if tx.send(answer).await.is_err() {
            // In-flight requests are dropped with `answers`; the batcher skips them.
            end = "client went away";
            break;
        }
        if let Some(code) = failed {
            tracing::debug!(?code, "stream ended by an error");
            end = "error";
            break;
        }
    }
    if end == "client finished" && cut.load(Ordering::Relaxed) {
        end = "server shutting down";
        let _ = tx
            .send(Err(Status::unavailable(
                "the server is shutting down: requests after the last answer were not read; send them again",
            )))
            .await;
    }
    tracing::info!(requests, images, end, "stream closed");
}

async fn detect(
    pipeline: &Pipeline,
    detector: Arc<Detector>,
    request: v1::DetectRequest,
) -> Result<v1::DetectResponse, Status> {
    let detection = pipeline
        .detect_on(detector, detect_input(request))
        .await
        .map_err(|e| status(&e))?;
    Ok(detect_response(detection))
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
pub fn oversized_response(
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

fn code<T>(answer: &Result<T, Status>) -> tonic::Code {
    answer
        .as_ref()
        .map_or_else(Status::code, |_| tonic::Code::Ok)
}

/// The one mapping from refusals to gRPC status codes.
pub fn status(error: &ServeError) -> Status {
    let message = error.to_string();
    match error {
        ServeError::InvalidArgument { .. } => Status::invalid_argument(message),
        ServeError::Overloaded { .. } => Status::resource_exhausted(message),
        ServeError::NotReady => Status::unavailable(message),
        ServeError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
        ServeError::TooManyStreams { .. } => Status::resource_exhausted(message),
        ServeError::Internal(_) => {
            tracing::error!(%message, "request failed");
            Status::internal(message)
        }
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
        return_inputs: false,
    }
}

fn detect_response(detection: Detection) -> v1::DetectResponse {
    use v1::verdict::Outcome;

    let classes = &detection.detector.model.classes;
    let name = |class: usize| classes.get(class).cloned().unwrap_or_default();
    let verdicts = detection
        .verdicts
        .into_iter()
        .map(|verdict| {
            let judgement = match verdict.outcome {
                Ok(judgement) => judgement,
                Err(error) => {
                    return v1::Verdict {
                        id: verdict.id,
                        outcome: Some(Outcome::Error(v1::ImageError {
                            message: error.to_string(),
                        })),
                        ..Default::default()
                    };
                }
            };
            let class = v1::Classification {
                class_index: judgement.class as u32,
                class_name: name(judgement.class),
                probability: judgement.probability,
            };
            let outcome = if judgement.rejected() {
                Outcome::Reject(v1::Rejection {
                    neighbours: judgement
                        .neighbours
                        .iter()
                        .map(|n| v1::Neighbour {
                            training_id: n.id,
                            label: u32::from(n.label),
                            label_name: name(usize::from(n.label)),
                            distance: n.distance as f32,
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
                    score: judgement.score,
                    threshold: judgement.threshold,
                    decision: judgement.decision,
                }),
                distance: judgement
                    .distance_threshold
                    .zip(judgement.distance_decision)
                    .map(|(threshold, decision)| v1::DistanceEvidence {
                        kth_distance: judgement.kth_distance,
                        threshold,
                        decision,
                    }),
                training_tail: judgement.training_tail,
            }
        })
        .collect();
    v1::DetectResponse { verdicts }
}

pub fn model_info(detector: &Detector) -> v1::ModelInfo {
    let input = detector.embedder.input;
    v1::ModelInfo {
        model_name: detector.model.name.clone(),
        model_sha256: detector.model.sha256.clone(),
        input_layout: input.layout.as_str().into(),
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
        search_mode: match detector.search {
            oodgate_lof::index::SearchMode::Exact => "exact".into(),
            oodgate_lof::index::SearchMode::Hnsw { .. } => "hnsw".into(),
        },
    }
}

/// `oodgate.v1.Admin`: hot reload.
pub struct AdminService {
    reloader: Arc<Reloader>,
}

impl AdminService {
    pub fn new(reloader: Arc<Reloader>) -> Self {
        Self { reloader }
    }
}

#[tonic::async_trait]
impl oodgate_proto::v1::admin_server::Admin for AdminService {
    async fn reload(
        &self,
        request: Request<v1::ReloadRequest>,
    ) -> Result<Response<v1::ReloadResponse>, Status> {
        let dir = request.into_inner().model_dir;
        let dir = (!dir.is_empty()).then(|| std::path::PathBuf::from(dir));
        match self.reloader.reload(dir).await {
            Ok(reloaded) => Ok(Response::new(v1::ReloadResponse {
                model: Some(model_info(&reloaded.detector)),
                seconds: reloaded.seconds,
            })),
            Err(e) => Err(Status::failed_precondition(format!(
                "reload failed, the current model keeps serving: {e:#}"
            ))),
        }
    }
}
