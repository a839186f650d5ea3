//! The HTTP side, on its own port: Prometheus metrics and health for operators and
//! orchestrators, a JSON API over the gRPC side's [`Pipeline`], and the demo page.
//!
//! `POST /v1/detect` (the default gate) and `POST /v1/gates/{gate}/detect` go through
//! [`Pipeline::detect`] like the gRPC `Detect`; every
//! refusal becomes an HTTP status in [`http_status`], the one place that maps them (the
//! gRPC side's is [`crate::api::grpc::status`]). Every error answer is a JSON body
//! `{"error": "..."}`, including bodies axum's extractors refuse.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::grpc;
use crate::api::security::Token;
use crate::core::detector::ThresholdSpec;
use crate::core::pipeline::{
    ClientImage, DetectInput, Field, ImageData, Pipeline, ServeError, model_inputs,
};
use crate::core::preprocess::{InputSpec, Layout, Transform};
use crate::core::training::TrainingError;
use crate::core::view::{self, ModelView, VerdictView};
use crate::metrics;

/// The demo page: one self-contained HTML file (inline CSS and JS, nothing external).
const DEMO_PAGE: &str = include_str!("demo.html");

#[derive(Clone)]
pub(crate) struct HttpState {
    pub pipeline: Arc<Pipeline>,
    pub metrics: PrometheusHandle,
    /// Largest request body (`server.max_message_bytes`, as on gRPC).
    pub max_body_bytes: usize,
    pub auth: HttpAuth,
}

/// The token each group of endpoints asks for (open when `auth.protect_*` is off).
#[derive(Clone, Default)]
pub(crate) struct HttpAuth {
    pub api: Token,
    pub health: Token,
    pub metrics: Token,
}

impl HttpState {
    pub(crate) fn new(
        pipeline: Arc<Pipeline>,
        metrics: PrometheusHandle,
        max_body_bytes: usize,
        auth: HttpAuth,
    ) -> Self {
        Self {
            pipeline,
            metrics,
            max_body_bytes,
            auth,
        }
    }
}

pub(crate) fn router(state: HttpState) -> Router {
    let limit = state.max_body_bytes;
    // The page itself is open; the API it calls is not when a token is configured.
    let page = Router::new()
        .route("/", get(demo))
        .route("/demo", get(demo));
    // The routes without a gate are the default gate's.
    let api = Router::new()
        .route("/v1/detect", post(detect).fallback(method_not_allowed))
        .route("/v1/model", get(model_info))
        .route("/v1/training/{id}", get(training_image))
        .route("/v1/gates", get(list_gates))
        .route(
            "/v1/gates/{gate}/detect",
            post(gate_detect).fallback(method_not_allowed),
        )
        .route("/v1/gates/{gate}/model", get(gate_model_info))
        .route("/v1/gates/{gate}/training/{id}", get(gate_training_image));
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let metrics = Router::new().route("/metrics", get(metrics));
    Router::new()
        .merge(page)
        .merge(guarded(api, state.auth.api.clone()))
        .merge(guarded(health, state.auth.health.clone()))
        .merge(guarded(metrics, state.auth.metrics.clone()))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Requires the bearer token on every route of `routes` (constant-time comparison).
fn guarded(routes: Router<HttpState>, token: Token) -> Router<HttpState> {
    if !token.enabled() {
        return routes;
    }
    routes.route_layer(axum::middleware::from_fn(
        move |request: Request, next: axum::middleware::Next| {
            let token = token.clone();
            async move {
                let given = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.as_bytes());
                if token.admits(given) {
                    next.run(request).await
                } else {
                    metrics::record_unauthenticated();
                    let mut refused = ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "missing or wrong bearer token (Authorization: Bearer <token>)",
                    )
                    .into_response();
                    refused
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    refused
                }
            }
        },
    ))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Live: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the model and index are loaded.
async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.pipeline.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading\n")
    }
}

async fn demo() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(DEMO_PAGE))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use POST with a JSON body")
}

// ---- Errors ----------------------------------------------------------------------

/// An error answer: its status and a JSON body `{"error": message}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("{field}: {message}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// The one mapping from the pipeline's refusals to HTTP statuses.
pub(crate) fn http_status(error: &ServeError) -> StatusCode {
    match error {
        ServeError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        ServeError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServeError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        ServeError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
        // Streams are gRPC's; listed for completeness.
        ServeError::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServeError::UnknownGate { .. } => StatusCode::NOT_FOUND,
        ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A request field as the JSON body names it (the thresholds sit at its top level).
fn json_field(field: Field) -> &'static str {
    match field {
        Field::Images => "images",
        Field::Contamination => "contamination",
        Field::FalseRejectionRate => "false_rejection_rate",
    }
}

impl From<ServeError> for ApiError {
    fn from(error: ServeError) -> Self {
        let status = http_status(&error);
        let message = match &error {
            ServeError::InvalidArgument { field, message } => {
                format!("{}: {message}", json_field(*field))
            }
            ServeError::Internal(_) => {
                tracing::error!(%error, "request failed");
                error.to_string()
            }
            _ => error.to_string(),
        };
        Self::new(status, message)
    }
}

/// The gRPC code an HTTP answer counts as in `oodgate_requests_total`.
pub(crate) fn grpc_code(status: StatusCode) -> tonic::Code {
    match status.as_u16() {
        200..=299 => tonic::Code::Ok,
        404 => tonic::Code::NotFound,
        413 | 429 => tonic::Code::ResourceExhausted,
        503 => tonic::Code::Unavailable,
        504 => tonic::Code::DeadlineExceeded,
        400..=499 => tonic::Code::InvalidArgument,
        _ => tonic::Code::Internal,
    }
}

/// `axum::Json`, with its rejections (bad syntax, wrong types, missing content type, body
/// over the limit) answered as JSON errors.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<HttpState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &HttpState) -> Result<Self, ApiError> {
        // A declared length over the limit is refused before reading the body, so a
        // client that sent `Expect: 100-continue` (curl does for large bodies) is spared
        // the upload and reliably gets the answer.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
            return Err(too_large());
        }
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = match &rejection {
        // axum says 422 for well-formed JSON of the wrong shape; to clients it is just
        // a bad request, as INVALID_ARGUMENT is on gRPC.
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            StatusCode::BAD_REQUEST
        }
        other => other.status(),
    };
    let message = match &rejection {
        JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large();
        }
        other => other.body_text(),
    };
    ApiError::new(status, message)
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body over the limit (server.max_message_bytes)",
    )
}

// ---- POST /v1/detect -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetectBody {
    pub images: Vec<JsonImage>,
    #[serde(default)]
    pub contamination: Option<f64>,
    #[serde(default)]
    pub false_rejection_rate: Option<f64>,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub return_inputs: bool,
}

/// One image: PNG or JPEG bytes, or raw pixels, base64-encoded (standard alphabet).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JsonImage {
    #[serde(default)]
    pub id: String,
    #[serde(default, alias = "png_base64")]
    pub encoded_base64: Option<String>,
    #[serde(default)]
    pub raw: Option<JsonPixels>,
}

/// Raw u8 pixels, row by row, channels interleaved.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JsonPixels {
    pub width: u32,
    pub height: u32,
    pub channels: u32,
    pub pixels_base64: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct DetectReply {
    /// The gate that judged the images.
    pub gate: String,
    pub model: String,
    pub verdicts: Vec<JsonVerdict>,
}

/// A verdict (the core's view) and, with `return_inputs`, what the model saw.
#[derive(Debug, Serialize)]
pub(crate) struct JsonVerdict {
    #[serde(flatten)]
    pub verdict: VerdictView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_input: Option<JsonPixels>,
}

async fn detect(
    State(state): State<HttpState>,
    body: Result<ApiJson<DetectBody>, ApiError>,
) -> Response {
    detect_on_gate(&state, "", body).await
}

async fn gate_detect(
    State(state): State<HttpState>,
    Path(gate): Path<String>,
    body: Result<ApiJson<DetectBody>, ApiError>,
) -> Response {
    detect_on_gate(&state, &gate, body).await
}

/// `gate`: empty for the default one.
async fn detect_on_gate(
    state: &HttpState,
    gate: &str,
    body: Result<ApiJson<DetectBody>, ApiError>,
) -> Response {
    let answer = match body {
        Ok(ApiJson(body)) => detect_json(&state.pipeline, gate, body).await,
        Err(error) => Err(error),
    };
    let status = answer
        .as_ref()
        .map_or_else(|e| e.status, |_| StatusCode::OK);
    let label = state.pipeline.gate_label(gate);
    metrics::record_request(label, "http_detect", grpc::code_name(grpc_code(status)));
    match answer {
        Ok(reply) => Json(reply).into_response(),
        Err(error) => error.into_response(),
    }
}

pub(crate) async fn detect_json(
    pipeline: &Pipeline,
    gate: &str,
    body: DetectBody,
) -> Result<DetectReply, ApiError> {
    let (mut input, return_inputs) = detect_input(body)?;
    input.gate = gate.to_owned();
    // The demo's few images are prepared a second time here, so the core need not
    // carry what only the demo shows.
    let images = return_inputs.then(|| input.images.clone());
    let detection = pipeline.detect(input).await?;
    let model = detection.detector.model.name.clone();
    let gate = detection.gate.clone();
    let spec = detection.detector.embedder.input;
    let mut inputs =
        images.map(|images| model_inputs(images, &spec, &pipeline.limits()).into_iter());
    let verdicts = view::verdicts(detection)
        .into_iter()
        .map(|verdict| JsonVerdict {
            verdict,
            model_input: inputs
                .as_mut()
                .and_then(Iterator::next)
                .flatten()
                .map(|values| model_input(&values, spec)),
        })
        .collect();
    Ok(DetectReply {
        gate,
        model,
        verdicts,
    })
}

/// The pipeline's input, and whether the body asked for the model inputs back.
fn detect_input(body: DetectBody) -> Result<(DetectInput, bool), ApiError> {
    let threshold = match (body.contamination, body.false_rejection_rate) {
        (None, None) => ThresholdSpec::Default,
        (Some(c), None) => ThresholdSpec::Contamination(c),
        (None, Some(r)) => ThresholdSpec::FalseRejectionRate(r),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "contamination",
                "give contamination or false_rejection_rate, not both",
            ));
        }
    };
    let images = body
        .images
        .into_iter()
        .enumerate()
        .map(|(i, image)| {
            let data = match (image.encoded_base64, image.raw) {
                (None, None) => None,
                (Some(encoded), None) => Some(ImageData::Encoded(base64(
                    &encoded,
                    &format!("images[{i}].encoded_base64"),
                )?)),
                (None, Some(raw)) => Some(ImageData::Raw {
                    width: raw.width,
                    height: raw.height,
                    channels: raw.channels,
                    pixels: base64(
                        &raw.pixels_base64,
                        &format!("images[{i}].raw.pixels_base64"),
                    )?,
                }),
                (Some(_), Some(_)) => {
                    return Err(ApiError::invalid(
                        &format!("images[{i}]"),
                        "give encoded_base64 (or png_base64) or raw, not both",
                    ));
                }
            };
            Ok(ClientImage { id: image.id, data })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let input = DetectInput {
        images,
        threshold,
        source: body.source,
        gate: String::new(),
    };
    Ok((input, body.return_inputs))
}

fn base64(text: &str, field: &str) -> Result<Vec<u8>, ApiError> {
    BASE64
        .decode(text)
        .map_err(|e| ApiError::invalid(field, format_args!("invalid base64 ({e})")))
}

/// A model input (in the model's layout) as u8 pixels, row by row, channels
/// interleaved: a gate's normalised floats are mapped back to pixel units first.
fn model_input(values: &[f32], spec: InputSpec) -> JsonPixels {
    let plane = (spec.width * spec.height) as usize;
    let channels = spec.channels as usize;
    let mut pixels = vec![0u8; plane * channels];
    for (i, &value) in values.iter().enumerate() {
        let at = match spec.layout {
            Layout::Nhwc => i,
            Layout::Nchw => (i % plane) * channels + i / plane,
        };
        let unit = match &spec.transform {
            Transform::Legacy => value,
            Transform::Float(t) => {
                let channel = match spec.layout {
                    Layout::Nhwc => i % channels,
                    Layout::Nchw => i / plane,
                };
                t.to_pixel_units(value, channel) / 255.0
            }
        };
        if let Some(p) = pixels.get_mut(at) {
            *p = (unit.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    JsonPixels {
        width: spec.width,
        height: spec.height,
        channels: spec.channels,
        pixels_base64: BASE64.encode(&pixels),
    }
}

// ---- GET /v1/model, /v1/gates, /v1/training/{id} and the per-gate ones ---------

/// What gRPC `GetModelInfo` answers, as JSON with the same field names.
async fn model_info(State(state): State<HttpState>) -> Result<Json<ModelView>, ApiError> {
    gate_model(&state, "")
}

async fn gate_model_info(
    State(state): State<HttpState>,
    Path(gate): Path<String>,
) -> Result<Json<ModelView>, ApiError> {
    gate_model(&state, &gate)
}

fn gate_model(state: &HttpState, name: &str) -> Result<Json<ModelView>, ApiError> {
    Ok(Json(state.pipeline.gate(name)?.model_view()?))
}

/// What gRPC `ListGates` answers.
#[derive(Debug, Serialize)]
pub(crate) struct GatesReply {
    pub default_gate: String,
    pub gates: Vec<ModelView>,
}

async fn list_gates(State(state): State<HttpState>) -> Result<Json<GatesReply>, ApiError> {
    Ok(Json(GatesReply {
        default_gate: state.pipeline.default_gate().name().to_owned(),
        gates: grpc::model_views(&state.pipeline)?,
    }))
}

/// One training image (a neighbour's `training_id`) of the default gate as a PNG; its
/// label is in the `x-oodgate-label` header.
async fn training_image(
    State(state): State<HttpState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    gate_training(&state, "", &id).await
}

async fn gate_training_image(
    State(state): State<HttpState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((gate, id)) = path.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    gate_training(&state, &gate, &id).await
}

async fn gate_training(state: &HttpState, gate: &str, id: &str) -> Result<Response, ApiError> {
    let gate = state.pipeline.gate(gate)?;
    let id: usize = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("training image {id:?}: ids are whole numbers"),
        )
    })?;
    let detector = gate.loaded()?;
    let image = gate.training().get(&detector, id).await.map_err(|error| {
        let status = match error {
            TrainingError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            TrainingError::NoSuchId { .. } => StatusCode::NOT_FOUND,
            TrainingError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    })?;
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(image.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
            (
                header::HeaderName::from_static("x-oodgate-label"),
                HeaderValue::from(u16::from(image.label)),
            ),
        ],
        image.bytes,
    )
        .into_response();
    // Where the image came from (a folder image's path), when it is a valid header.
    if let Some(value) = image.source.and_then(|s| HeaderValue::from_str(&s).ok()) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-oodgate-source"), value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_status() {
        let cases = [
            (
                ServeError::InvalidArgument {
                    field: Field::Contamination,
                    message: "must be in (0, 0.5], got 0.7".into(),
                },
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
            ),
            (
                ServeError::DeadlineExceeded(std::time::Duration::from_secs(30)),
                StatusCode::GATEWAY_TIMEOUT,
                tonic::Code::DeadlineExceeded,
            ),
            (
                ServeError::TooManyStreams { open: 2, max: 2 },
                StatusCode::TOO_MANY_REQUESTS,
                tonic::Code::ResourceExhausted,
            ),
            (
                ServeError::Overloaded {
                    requested: 2,
                    available: 1,
                    capacity: 1,
                },
                StatusCode::TOO_MANY_REQUESTS,
                tonic::Code::ResourceExhausted,
            ),
            (
                ServeError::NotReady,
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::Unavailable,
            ),
            (
                ServeError::Internal(crate::core::worker::WorkerError::Panicked.into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                tonic::Code::Internal,
            ),
            (
                ServeError::UnknownGate {
                    gate: "fashion".into(),
                    known: vec!["digits".into(), "plain".into()],
                },
                StatusCode::NOT_FOUND,
                tonic::Code::NotFound,
            ),
        ];
        // One case per ServeError variant.
        assert_eq!(cases.len(), 7);
        for (error, status, code) in cases {
            assert_eq!(http_status(&error), status);
            // The two sides agree on what each refusal is.
            assert_eq!(grpc::status(&error).code(), code);
            assert_eq!(grpc_code(status), code);
        }
        let invalid = ServeError::InvalidArgument {
            field: Field::Contamination,
            message: "must be in (0, 0.5], got 0.7".into(),
        };
        assert_eq!(
            ApiError::from(invalid.clone()).message,
            "contamination: must be in (0, 0.5], got 0.7"
        );
        assert_eq!(
            grpc::status(&invalid).message(),
            "threshold.contamination: must be in (0, 0.5], got 0.7"
        );
    }

    #[test]
    fn bodies_become_inputs_or_name_the_bad_field() {
        let parse = |json: &str| detect_input(serde_json::from_str(json).unwrap());
        let (input, return_inputs) = parse(
            r#"{"images":[{"id":"a","png_base64":"iVBORw=="},
                {"id":"b","raw":{"width":1,"height":1,"channels":1,"pixels_base64":"/w=="}},
                {"id":"c"}],
               "contamination":0.05,"source":"demo","return_inputs":true}"#,
        )
        .unwrap();
        assert_eq!(input.threshold, ThresholdSpec::Contamination(0.05));
        assert!(return_inputs);
        assert_eq!(input.source, "demo");
        assert!(matches!(&input.images[0].data, Some(ImageData::Encoded(b)) if b == b"\x89PNG"));
        assert!(
            matches!(&input.images[1].data, Some(ImageData::Raw { pixels, .. }) if pixels == &[255])
        );
        assert!(input.images[2].data.is_none());

        let bad = parse(r#"{"images":[{"id":"a","encoded_base64":"@@"}]}"#).unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(
            bad.message
                .starts_with("images[0].encoded_base64: invalid base64"),
            "{}",
            bad.message
        );
        let both =
            parse(r#"{"images":[],"contamination":0.1,"false_rejection_rate":0.1}"#).unwrap_err();
        assert!(both.message.contains("not both"), "{}", both.message);
        assert!(serde_json::from_str::<DetectBody>(r#"{"images":[],"contamnation":1}"#).is_err());
    }

    #[test]
    fn model_inputs_become_interleaved_u8() {
        let spec = InputSpec {
            layout: Layout::Nchw,
            height: 1,
            width: 2,
            channels: 3,
            transform: crate::core::preprocess::Transform::Legacy,
        };
        // Planes R, G, B of two pixels.
        let pixels = model_input(&[1.0, 0.0, 0.0, 1.0, 0.5, 0.5], spec);
        assert_eq!(
            BASE64.decode(pixels.pixels_base64).unwrap(),
            [255, 0, 128, 0, 255, 128]
        );
    }
}
