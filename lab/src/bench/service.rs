//! The service binary over loopback gRPC: start-up, all test images streamed by the
//! replay library, unary calls next to in-process ones, the round-trip floor, peak RSS;
//! and the same stream against a server with the other search mode.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use oodgate_lof::SearchMode;
use oodgate_replay::{Replay, ReplayOptions, ReplaySet};

use super::in_process::{SET_NAMES, single_image};
use super::results::{AlternativeService, LatencyStats, ServerStageMeans, Service, Stream};
use super::{Context, Log, STREAM_BATCH, STREAMS, WINDOW};

/// Streams test images to a server from a runtime of this process (so the client
/// shares the machine's cores with the server, as the report says).
pub(super) struct Replayer {
    rt: tokio::runtime::Runtime,
    options: ReplayOptions,
}

impl Replayer {
    pub(super) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            rt: tokio::runtime::Runtime::new()?,
            options: ReplayOptions {
                streams: STREAMS,
                batch_size: STREAM_BATCH,
                window: WINDOW,
                source: Some("bench".into()),
                ..ReplayOptions::default()
            },
        })
    }

    /// The three test sets, or their first `limit` images each.
    fn sets(ctx: &Context, limit: Option<usize>) -> anyhow::Result<Arc<Vec<ReplaySet>>> {
        let mut v = Vec::new();
        for name in SET_NAMES {
            let mut s = ReplaySet::load(name, &ctx.images.data)?;
            if let Some(n) = limit {
                s.truncate(n);
            }
            v.push(s);
        }
        Ok(Arc::new(v))
    }

    /// A warm-up of 300 images of each set, then all of `all`.
    fn stream_all(
        &self,
        ctx: &Context,
        endpoint: &str,
        all: Arc<Vec<ReplaySet>>,
    ) -> anyhow::Result<Replay> {
        self.rt.block_on(oodgate_replay::replay(
            endpoint,
            Self::sets(ctx, Some(300))?,
            self.options.clone(),
        ))?;
        let replay =
            self.rt
                .block_on(oodgate_replay::replay(endpoint, all, self.options.clone()))?;
        eprintln!(
            "  {:.0} images/s",
            ctx.images.total as f64 / replay.elapsed.as_secs_f64()
        );
        Ok(replay)
    }
}

/// The configured server: `in_process_scores` are the same search mode's scores of all
/// test images in process; `picks` the images of the unary calls.
pub(super) fn configured(
    ctx: &Context,
    replayer: &Replayer,
    picks: &[usize],
    in_process_scores: Option<&[f64]>,
    log: &mut Log,
) -> anyhow::Result<Service> {
    log.stage("start the service (saved index)");
    let server = start_server(ctx.config_file, &ctx.work.join("serve.log"), &[])?;
    eprintln!(
        "  SERVING after {:.2} s at {}",
        server.startup.as_secs_f64(),
        server.endpoint
    );
    let service = measure_configured(ctx, replayer, &server, picks, in_process_scores, log);
    // Stopped whatever the measurement gave, so no server outlives the bench.
    stop_server(server)?;
    service
}

fn measure_configured(
    ctx: &Context,
    replayer: &Replayer,
    server: &Server,
    picks: &[usize],
    in_process_scores: Option<&[f64]>,
    log: &mut Log,
) -> anyhow::Result<Service> {
    let total = ctx.images.total;
    let pid = server.child.id();
    let endpoint = server.endpoint.as_str();
    log.stage("stream the 30,000 test images");
    let all = Replayer::sets(ctx, None)?;
    let replay = replayer.stream_all(ctx, endpoint, all.clone())?;
    let stream = Stream {
        streams: STREAMS,
        batch: STREAM_BATCH,
        window: WINDOW,
        images: total,
        seconds: replay.elapsed.as_secs_f64(),
        images_per_second: total as f64 / replay.elapsed.as_secs_f64(),
        request_latency_ms: LatencyStats::of(&replay.latencies),
        scores_identical_to_in_process: in_process_scores.map(|s| identical_scores(&replay, s)),
    };
    let vm_hwm_kb_after_stream = vm_hwm_kb(pid);

    log.stage("unary Detect, one image per call");
    let (unary, local, inside) = replayer.rt.block_on(async {
        let mut client = oodgate_replay::replay::connect(endpoint).await?;
        let request = |i: usize| {
            let (s, j) = ctx.images.locate(i);
            oodgate_replay::replay::request(&all[s], j..j + 1, "bench", None)
        };
        // Warm-up (both paths), then each image in process and by unary call, one right
        // after the other, so both see the same moment of the machine's load.
        for &i in picks.iter().take(10) {
            single_image(&ctx.detector, &ctx.images, i)?;
            client.detect(request(i)).await?;
        }
        let stages_before = server_stage_seconds(&server.http)?;
        let mut latencies = Vec::new();
        let mut local = Vec::new();
        for (n, &i) in picks.iter().enumerate() {
            let request = request(i);
            // Alternate which goes first (the second finds warmer caches).
            if n % 2 == 0 {
                let started = Instant::now();
                single_image(&ctx.detector, &ctx.images, i)?;
                local.push(started.elapsed());
            }
            let started = Instant::now();
            let response = client.detect(request).await?.into_inner();
            latencies.push(started.elapsed());
            anyhow::ensure!(response.verdicts.len() == 1, "one verdict expected");
            if n % 2 == 1 {
                let started = Instant::now();
                single_image(&ctx.detector, &ctx.images, i)?;
                local.push(started.elapsed());
            }
        }
        let inside = server_stage_seconds(&server.http)?.mean_ms_since(&stages_before);
        Ok::<_, anyhow::Error>((latencies, local, inside))
    })?;
    // The floor of a round trip: GetModelInfo (no model work), same client setup.
    let info = replayer.rt.block_on(async {
        let mut client = oodgate_replay::replay::connect(endpoint).await?;
        let mut latencies = Vec::new();
        for n in 0..picks.len() + 10 {
            let started = Instant::now();
            client
                .get_model_info(oodgate_proto::v1::GetModelInfoRequest::default())
                .await?;
            if n >= 10 {
                latencies.push(started.elapsed());
            }
        }
        Ok::<_, anyhow::Error>(latencies)
    })?;
    Ok(Service {
        startup_seconds: server.startup.as_secs_f64(),
        stream,
        unary_ms: LatencyStats::of(&unary),
        unary_inside_server_mean_ms: inside,
        in_process_interleaved_ms: LatencyStats::of(&local),
        get_model_info_ms: LatencyStats::of(&info),
        vm_hwm_kb_after_stream,
        vm_hwm_kb: vm_hwm_kb(pid),
    })
}

/// A second server with `search` (selected by the `index.search` value `setting`),
/// streamed like the configured one; `limit` is the in-process pipeline limit in that
/// mode, measured just before.
pub(super) fn alternative(
    ctx: &Context,
    replayer: &Replayer,
    (search, setting): (SearchMode, &str),
    limit: f64,
    in_process_scores: Option<&[f64]>,
) -> anyhow::Result<AlternativeService> {
    let server = start_server(
        ctx.config_file,
        &ctx.work.join("serve-alternative.log"),
        &[("OODGATE_INDEX__SEARCH", setting)],
    )?;
    let measured = (|| {
        let total = ctx.images.total;
        let replay = replayer.stream_all(ctx, &server.endpoint, Replayer::sets(ctx, None)?)?;
        Ok(AlternativeService {
            search: format!("{search:?}"),
            setting: setting.to_owned(),
            startup_seconds: server.startup.as_secs_f64(),
            images: total,
            pipeline_limit_images_per_second: limit,
            seconds: replay.elapsed.as_secs_f64(),
            images_per_second: total as f64 / replay.elapsed.as_secs_f64(),
            request_latency_ms: LatencyStats::of(&replay.latencies),
            scores_identical_to_in_process: in_process_scores.map(|s| identical_scores(&replay, s)),
        })
    })();
    stop_server(server)?;
    measured
}

/// How many served scores equal the in-process ones (to 1e-9 relative), in order.
fn identical_scores(replay: &Replay, in_process: &[f64]) -> usize {
    replay
        .answers
        .iter()
        .flat_map(|a| a.iter().map(|x| x.lof_score()))
        .zip(in_process)
        .filter(|(s, h)| s.is_some_and(|s| (s - *h).abs() <= 1e-9 * h.abs()))
        .count()
}

/// Peak resident set of process `pid`, kB.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Sums and counts of the server's per-request time histograms (its /metrics).
struct StageSeconds(BTreeMap<String, (f64, f64)>);

impl StageSeconds {
    /// Mean milliseconds per request of each histogram, over the requests since `before`.
    fn mean_ms_since(&self, before: &StageSeconds) -> ServerStageMeans {
        let mean = |name: &str| {
            let (sum, count) = self.0.get(name).copied()?;
            let (sum0, count0) = before.0.get(name).copied().unwrap_or_default();
            (count > count0).then(|| 1e3 * (sum - sum0) / (count - count0))
        };
        ServerStageMeans {
            handler: mean("handler"),
            preprocess: mean("preprocess"),
            queue: mean("queue"),
            embed: mean("embed"),
            lof: mean("lof"),
        }
    }
}

/// Reads the server's stage histograms (`stage` label) and its whole-request one
/// (`handler`) from /metrics.
fn server_stage_seconds(http: &str) -> anyhow::Result<StageSeconds> {
    let text = ureq::get(&format!("http://{http}/metrics"))
        .call()
        .with_context(|| format!("GET /metrics from the server at {http}"))?
        .body_mut()
        .read_to_string()?;
    let mut found: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (series, labels) = key.split_once('{').unwrap_or((key, ""));
        let (metric, is_sum) = match (series.strip_suffix("_sum"), series.strip_suffix("_count")) {
            (Some(metric), _) => (metric, true),
            (_, Some(metric)) => (metric, false),
            _ => continue,
        };
        let name = if metric == oodgate_server::metrics::STAGE_SECONDS {
            labels
                .trim_start_matches("stage=\"")
                .trim_end_matches("\"}")
        } else if metric == oodgate_server::metrics::IMAGE_SECONDS {
            "handler"
        } else {
            continue;
        };
        let entry = found.entry(name.to_owned()).or_default();
        if is_sum {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    anyhow::ensure!(
        found.contains_key("handler"),
        "no request histograms in the server's /metrics"
    );
    Ok(StageSeconds(found))
}

struct Server {
    child: Child,
    endpoint: String,
    /// The HTTP address (host:port), for /metrics.
    http: String,
    startup: Duration,
}

/// Starts this binary's `serve` on free loopback ports and waits until its health check
/// says SERVING; its log goes to `log_path`.
fn start_server(
    config_file: Option<&Path>,
    log_path: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(&exe);
    command.envs(env.iter().copied());
    if let Some(file) = config_file {
        command.arg("--config").arg(file);
    }
    command
        .arg("serve")
        .env("OODGATE_SERVER__GRPC_ADDR", "127.0.0.1:0")
        .env("OODGATE_SERVER__HTTP_ADDR", "127.0.0.1:0")
        .env("OODGATE_LOG__FORMAT", "human")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().context("starting oodgate serve")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut log = std::fs::File::create(log_path)?;
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut grpc = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            let addr = |marker: &str| {
                let rest = line.split(marker).nth(1)?;
                Some(rest.split_whitespace().next().unwrap_or("").to_owned())
            };
            if let Some(a) = addr("gRPC listening addr=") {
                grpc = Some(a);
            }
            // The HTTP listener is logged after the gRPC one.
            if let Some(http) = addr("HTTP listening addr=")
                && let (Some(grpc), Some(tx)) = (grpc.take(), tx.take())
            {
                let _ = tx.send((grpc, http));
            }
        }
    });
    let (addr, http) = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the server did not log its gRPC and HTTP addresses (see serve.log)")?;
    let endpoint = format!("http://{addr}");
    // Poll the health check every 10 ms until SERVING.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())?
            .connect()
            .await?;
        let mut health = HealthClient::new(channel);
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(r) = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                && r.get_ref().status == ServingStatus::Serving as i32
            {
                return Ok::<_, anyhow::Error>(());
            }
            if Instant::now() > deadline {
                bail!("server not SERVING after 300 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })?;
    Ok(Server {
        child,
        endpoint,
        http,
        startup: started.elapsed(),
    })
}

/// SIGTERM, then up to 40 s to drain, then SIGKILL.
fn stop_server(mut server: Server) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if server.child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.child.kill()?;
    server.child.wait()?;
    Ok(())
}
