//! Streams image sets through a server over one or more concurrent `DetectStream`
//! calls and records every verdict and every request's round-trip time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use oodgate_proto::v1;
use oodgate_proto::v1::detector_client::DetectorClient;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::sets::ReplaySet;

/// Largest gRPC message either side sends (a batch of 32x32 RGB images is ~3 kB each).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    Contamination(f64),
    FalseRejectionRate(f64),
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Concurrent `DetectStream` calls.
    pub streams: usize,
    /// Images per request.
    pub batch_size: usize,
    /// Requests per stream awaiting their verdicts at once.
    pub window: usize,
    /// Images per second over all streams; None: as fast as the server answers.
    pub rate: Option<f64>,
    /// Source label for every request; None: each set's name.
    pub source: Option<String>,
    /// The gate every request names; empty: the server's default gate.
    pub gate: String,
    /// None: the server's default threshold.
    pub threshold: Option<Threshold>,
    pub progress: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            streams: 4,
            batch_size: 64,
            window: 4,
            rate: None,
            source: None,
            gate: String::new(),
            threshold: None,
            progress: false,
        }
    }
}

/// One image's answer, compactly.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `score` ranks images (see [`answer`]); `lof` is the LOF part alone, scikit-learn's
    /// `score_samples`, which the bench compares with in-process scores.
    Accepted {
        class: u32,
        score: f64,
        lof: f64,
    },
    Rejected {
        class: u32,
        score: f64,
        lof: f64,
    },
    Error(String),
}

impl Answer {
    pub fn score(&self) -> Option<f64> {
        match self {
            Answer::Accepted { score, .. } | Answer::Rejected { score, .. } => Some(*score),
            Answer::Error(_) => None,
        }
    }

    /// The LOF score alone (scikit-learn's `score_samples`).
    pub fn lof_score(&self) -> Option<f64> {
        match self {
            Answer::Accepted { lof, .. } | Answer::Rejected { lof, .. } => Some(*lof),
            Answer::Error(_) => None,
        }
    }

    /// What the classifier said (also for rejected images).
    pub fn class(&self) -> Option<u32> {
        match self {
            Answer::Accepted { class, .. } | Answer::Rejected { class, .. } => Some(*class),
            Answer::Error(_) => None,
        }
    }
}

/// Every answer, per set in image order, and the timings.
pub struct Replay {
    pub model: v1::ModelInfo,
    /// `answers[set][image]`.
    pub answers: Vec<Vec<Answer>>,
    /// Round trip of each request (send to verdicts), in completion order.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub options: ReplayOptions,
}

/// Where the server is and how to reach it: plaintext or TLS (optionally with a client
/// certificate), with or without a bearer token.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `http://host:port`, or `https://host:port` with TLS, or `unix:PATH` for the
    /// server's Unix socket (`server.grpc_uds`; plaintext).
    pub endpoint: String,
    pub tls: Option<ClientTls>,
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM CA certificate that signed the server's certificate.
    pub ca: Vec<u8>,
    /// PEM client certificate and key, for servers that require one (mTLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to check the server's certificate against (default: the endpoint's host).
    pub domain: Option<String>,
}

impl From<&str> for Target {
    fn from(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            ..Self::default()
        }
    }
}

impl From<&String> for Target {
    fn from(endpoint: &String) -> Self {
        Self::from(endpoint.as_str())
    }
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Client = DetectorClient<InterceptedService<Channel, Bearer>>;

/// The scheme of a Unix-socket endpoint, as gRPC names them (`unix:/run/oodgate.sock`,
/// or `unix:///run/oodgate.sock`).
pub const UNIX_SCHEME: &str = "unix:";

impl Target {
    /// The socket path of a `unix:` endpoint.
    pub fn unix_socket(&self) -> Option<PathBuf> {
        let rest = self.endpoint.strip_prefix(UNIX_SCHEME)?;
        // `unix:///abs` is the URI form of `unix:/abs`.
        Some(PathBuf::from(rest.strip_prefix("//").unwrap_or(rest)))
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let endpoint = &self.endpoint;
        if let Some(path) = self.unix_socket() {
            if self.tls.is_some() {
                bail!("TLS is not offered on a Unix socket ({endpoint})");
            }
            return unix_channel(path)
                .await
                .with_context(|| format!("cannot connect to {endpoint}"));
        }
        let mut builder = Channel::from_shared(endpoint.clone())
            .with_context(|| format!("bad server address {endpoint:?}"))?;
        if let Some(tls) = &self.tls {
            let mut config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            if let Some(domain) = &tls.domain {
                config = config.domain_name(domain.clone());
            }
            builder = builder.tls_config(config).context("client TLS")?;
        }
        builder
            .connect()
            .await
            .with_context(|| format!("cannot connect to {endpoint}"))
    }

    pub fn bearer(&self) -> anyhow::Result<Bearer> {
        let value = match &self.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .context("the token must be printable ASCII")?,
            ),
            None => None,
        };
        Ok(Bearer(value))
    }
}

/// A channel whose connections go to the Unix socket at `path`.
async fn unix_channel(path: PathBuf) -> Result<Channel, tonic::transport::Error> {
    // The URI only satisfies the builder: the connector below dials the socket.
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

/// Connects with message limits large enough for big batches.
pub async fn connect(target: impl Into<Target>) -> anyhow::Result<Client> {
    let target = target.into();
    let channel = target.channel().await?;
    Ok(DetectorClient::with_interceptor(channel, target.bearer()?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Waits until the server's gRPC health check says SERVING (the model and index are
/// loaded), polling for at most `timeout`.
pub async fn wait_until_serving(
    target: impl Into<Target>,
    timeout: Duration,
) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let target = target.into();
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match target.channel().await {
            Ok(channel) => {
                let mut health = HealthClient::with_interceptor(channel, target.bearer()?);
                match health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                {
                    Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
                    Ok(r) => last = format!("status {:?}", r.get_ref().status()),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{} not SERVING after {timeout:?} ({last})", target.endpoint)
}

/// The request for images `range` of one set.
pub fn request(
    set: &ReplaySet,
    range: std::ops::Range<usize>,
    source: &str,
    threshold: Option<Threshold>,
) -> v1::DetectRequest {
    let d = &set.dataset;
    let images = range
        .map(|i| v1::Image {
            id: image_id(&set.name, i),
            data: Some(v1::image::Data::Raw(v1::RawPixels {
                width: d.width,
                height: d.height,
                channels: u32::from(d.channels),
                pixels: d.image(i).to_vec(),
            })),
        })
        .collect();
    v1::DetectRequest {
        images,
        threshold: threshold.map(|t| v1::Threshold {
            kind: Some(match t {
                Threshold::Contamination(c) => v1::threshold::Kind::Contamination(c),
                Threshold::FalseRejectionRate(r) => v1::threshold::Kind::FalseRejectionRate(r),
            }),
        }),
        source: source.to_owned(),
        gate: String::new(),
    }
}

pub fn image_id(set: &str, index: usize) -> String {
    format!("{set}/{index}")
}

/// Reads one verdict into an [`Answer`].
pub fn answer(verdict: &v1::Verdict) -> anyhow::Result<Answer> {
    use v1::verdict::Outcome;
    let lof = verdict
        .lof
        .as_ref()
        .map(|lof| lof.score)
        .with_context(|| format!("verdict {} has no LOF evidence", verdict.id));
    // The number to rank by: the training tail when the verdict has a distance part,
    // else the LOF score alone.
    let ranked = |lof: f64| {
        if verdict.distance.is_some() {
            verdict.training_tail
        } else {
            lof
        }
    };
    Ok(match &verdict.outcome {
        Some(Outcome::Classify(c)) => {
            let lof = lof?;
            Answer::Accepted {
                class: c.class_index,
                score: ranked(lof),
                lof,
            }
        }
        Some(Outcome::Reject(r)) => {
            let lof = lof?;
            Answer::Rejected {
                class: r
                    .would_classify_as
                    .as_ref()
                    .map_or(u32::MAX, |c| c.class_index),
                score: ranked(lof),
                lof,
            }
        }
        Some(Outcome::Error(e)) => Answer::Error(e.message.clone()),
        None => bail!("verdict {} has no outcome", verdict.id),
    })
}

#[derive(Clone, Copy)]
struct Batch {
    set: usize,
    start: usize,
    end: usize,
}

/// Spaces sends so all streams together keep to `rate` images per second.
struct Pacer {
    start: Instant,
    rate: Option<f64>,
    sent: AtomicU64,
}

impl Pacer {
    async fn wait(&self, images: usize) {
        let before = self.sent.fetch_add(images as u64, Ordering::Relaxed);
        if let Some(rate) = self.rate {
            let at = self.start + Duration::from_secs_f64(before as f64 / rate);
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

struct StreamResult {
    answers: Vec<(Batch, Vec<Answer>)>,
    latencies: Vec<Duration>,
}

/// Sends every image of `sets` and collects the verdicts. Fails if the server ends a
/// stream with an error, or answers out of order or incompletely.
pub async fn replay(
    target: impl Into<Target>,
    sets: Arc<Vec<ReplaySet>>,
    options: ReplayOptions,
) -> anyhow::Result<Replay> {
    if options.streams == 0 || options.batch_size == 0 || options.window == 0 {
        bail!("streams, batch size and window must be at least 1");
    }
    let mut client = connect(target).await?;
    let model = client
        .get_model_info(v1::GetModelInfoRequest {
            gate: options.gate.clone(),
        })
        .await
        .context("GetModelInfo")?
        .into_inner();

    let batches: Arc<Vec<Batch>> = Arc::new(
        sets.iter()
            .enumerate()
            .flat_map(|(set, s)| {
                (0..s.len())
                    .step_by(options.batch_size)
                    .map(move |start| Batch {
                        set,
                        start,
                        end: (start + options.batch_size).min(s.len()),
                    })
            })
            .collect(),
    );
    let total: usize = sets.iter().map(ReplaySet::len).sum();
    let progress = if options.progress {
        oodgate_lof::progress_bar(total, "replaying")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = Arc::new(AtomicUsize::new(0));
    let pacer = Arc::new(Pacer {
        start: Instant::now(),
        rate: options.rate,
        sent: AtomicU64::new(0),
    });

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..options.streams {
        tasks.push(tokio::spawn(run_stream(
            client.clone(),
            sets.clone(),
            batches.clone(),
            next.clone(),
            pacer.clone(),
            options.clone(),
            progress.clone(),
        )));
    }
    let mut answers: Vec<Vec<Option<Answer>>> = sets.iter().map(|s| vec![None; s.len()]).collect();
    let mut latencies = Vec::new();
    for task in tasks {
        let result = task.await.context("a replay stream panicked")??;
        latencies.extend(result.latencies);
        for (batch, batch_answers) in result.answers {
            for (i, answer) in (batch.start..batch.end).zip(batch_answers) {
                answers[batch.set][i] = Some(answer);
            }
        }
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let answers = answers
        .into_iter()
        .zip(sets.iter())
        .map(|(set_answers, set)| {
            set_answers
                .into_iter()
                .enumerate()
                .map(|(i, a)| {
                    a.with_context(|| format!("no verdict for {}", image_id(&set.name, i)))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Replay {
        model,
        answers,
        latencies,
        elapsed,
        options,
    })
}

async fn run_stream(
    mut client: Client,
    sets: Arc<Vec<ReplaySet>>,
    batches: Arc<Vec<Batch>>,
    next: Arc<AtomicUsize>,
    pacer: Arc<Pacer>,
    options: ReplayOptions,
    progress: indicatif::ProgressBar,
) -> anyhow::Result<StreamResult> {
    let (requests, outbound) = mpsc::channel(options.window);
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(Batch, Instant)>();
    let window = Arc::new(Semaphore::new(options.window));

    // The sending half: takes batches from the shared list until it is empty.
    let sender = {
        let window = window.clone();
        let sets = sets.clone();
        tokio::spawn(async move {
            loop {
                let permit = window.clone().acquire_owned().await?;
                let Some(&batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let set = &sets[batch.set];
                pacer.wait(batch.end - batch.start).await;
                let source = options.source.as_deref().unwrap_or(&set.name);
                let mut request = request(set, batch.start..batch.end, source, options.threshold);
                request.gate.clone_from(&options.gate);
                sent_tx.send((batch, Instant::now()))?;
                if requests.send(request).await.is_err() {
                    break; // the call ended; the receiving half reports why
                }
                permit.forget();
            }
            anyhow::Ok(())
        })
    };

    let received = receive(
        &mut client,
        outbound,
        &mut sent_rx,
        &sets,
        &window,
        &progress,
    )
    .await;
    if received.is_err() {
        sender.abort();
    }
    let result = received?;
    sender.await.context("the sending half panicked")??;
    if sent_rx.try_recv().is_ok() {
        bail!("the server closed the stream with requests unanswered");
    }
    Ok(result)
}

/// The receiving half: checks each response against the request it answers.
async fn receive(
    client: &mut Client,
    outbound: mpsc::Receiver<v1::DetectRequest>,
    sent_rx: &mut mpsc::UnboundedReceiver<(Batch, Instant)>,
    sets: &[ReplaySet],
    window: &Semaphore,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<StreamResult> {
    let mut inbound = client
        .detect_stream(ReceiverStream::new(outbound))
        .await
        .context("DetectStream")?
        .into_inner();
    let mut result = StreamResult {
        answers: Vec::new(),
        latencies: Vec::new(),
    };
    let received = |result: &StreamResult| result.answers.len();
    while let Some(response) = inbound.message().await.with_context(|| {
        format!(
            "the server ended the stream after {} answered requests",
            received(&result)
        )
    })? {
        let (batch, sent_at) = sent_rx
            .recv()
            .await
            .context("a response for a request that was never sent")?;
        result.latencies.push(sent_at.elapsed());
        let set = &sets[batch.set];
        if response.verdicts.len() != batch.end - batch.start {
            bail!(
                "{} verdicts for a request of {} images",
                response.verdicts.len(),
                batch.end - batch.start
            );
        }
        let mut answers = Vec::with_capacity(response.verdicts.len());
        for (i, verdict) in (batch.start..batch.end).zip(&response.verdicts) {
            let expected = image_id(&set.name, i);
            if verdict.id != expected {
                bail!("verdict for {} where {expected} was due", verdict.id);
            }
            answers.push(answer(verdict)?);
        }
        progress.inc(answers.len() as u64);
        result.answers.push((batch, answers));
        window.add_permits(1);
    }
    Ok(result)
}
