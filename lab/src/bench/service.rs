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
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) options: ReplayOptions,
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
    pub(super) fn sets(ctx: &Context, limit: Option<usize>) -> anyhow::Result<Arc<Vec<ReplaySet>>> {
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
    pub(super) fn stream_all(
        &self,
        ctx: &Context,
        endpoint: &str,
        all: Arc<Vec<ReplaySet>>,
    ) -> anyhow::Result<Replay> {
        let images: usize = all.iter().map(ReplaySet::len).sum();
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
            images as f64 / replay.elapsed.as_secs_f64()
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
    let server = start_server(
        ctx.config_file,
        &ctx.work.join("serve.log"),
        &ctx.gates_env(&[]),
    )?;
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
    let mut env = ctx.gates_env(&[]);
    env.push(("OODGATE_INDEX__SEARCH".into(), setting.into()));
    let server = start_server(
        ctx.config_file,
        &ctx.work.join("serve-alternative.log"),
        &env,
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
pub(super) struct StageSeconds(BTreeMap<String, (f64, f64)>);

impl StageSeconds {
    /// Mean milliseconds per request of each histogram, over the requests since `before`.
    pub(super) fn mean_ms_since(&self, before: &StageSeconds) -> ServerStageMeans {
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
pub(super) fn server_stage_seconds(http: &str) -> anyhow::Result<StageSeconds> {
    let mut found: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for sample in scrape(http)? {
        let Some((metric, is_sum)) = histogram_part(&sample.name) else {
            continue;
        };
        let name = if metric == oodgate_server::metrics::STAGE_SECONDS {
            match sample.labels.get("stage") {
                Some(stage) => stage.clone(),
                None => continue,
            }
        } else if metric == oodgate_server::metrics::IMAGE_SECONDS {
            "handler".to_owned()
        } else {
            continue;
        };
        // One-gate servers: a single series per name (summed all the same).
        let entry = found.entry(name).or_default();
        if is_sum {
            entry.0 += sample.value;
        } else {
            entry.1 += sample.value;
        }
    }
    anyhow::ensure!(
        found.contains_key("handler"),
        "no request histograms in the server's /metrics"
    );
    Ok(StageSeconds(found))
}

/// A histogram's `_sum` (true) or `_count` (false) series, by the histogram's name.
fn histogram_part(series: &str) -> Option<(&str, bool)> {
    match (series.strip_suffix("_sum"), series.strip_suffix("_count")) {
        (Some(metric), _) => Some((metric, true)),
        (_, Some(metric)) => Some((metric, false)),
        _ => None,
    }
}

/// One line of the Prometheus text format.
#[derive(Debug, PartialEq)]
pub(super) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// GET /metrics, parsed.
pub(super) fn scrape(http: &str) -> anyhow::Result<Vec<Sample>> {
    let text = ureq::get(&format!("http://{http}/metrics"))
        .call()
        .with_context(|| format!("GET /metrics from the server at {http}"))?
        .body_mut()
        .read_to_string()?;
    Ok(text.lines().filter_map(parse_sample).collect())
}

/// `name{label="value",...} value` (labels optional); None for comments and lines
/// this reader does not follow (it only needs the server's own series).
fn parse_sample(line: &str) -> Option<Sample> {
    if line.starts_with('#') {
        return None;
    }
    let (key, value) = line.trim_end().rsplit_once(' ')?;
    let value = value.parse::<f64>().ok()?;
    let (name, labels) = match key.split_once('{') {
        None => (key, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \" z"`: values are quoted, with `\\`, `\"` and `\n` escapes.
fn parse_labels(mut rest: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (label, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(label.trim_start_matches(',').to_owned(), value);
        rest = &after[end + 1..];
    }
    Some(labels)
}

/// What the server counted for one gate: images answered, model runs, images in them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct GateCounts {
    pub(super) served: f64,
    pub(super) batches: f64,
    pub(super) batch_images: f64,
}

impl GateCounts {
    pub(super) fn of(samples: &[Sample], gate: &str) -> Self {
        let mut counts = Self::default();
        for sample in samples {
            if sample.labels.get("gate").map(String::as_str) != Some(gate) {
                continue;
            }
            let name = sample.name.as_str();
            if name == oodgate_server::metrics::IMAGES {
                counts.served += sample.value;
            } else if let Some((oodgate_server::metrics::BATCH_IMAGES, is_sum)) =
                histogram_part(name)
            {
                if is_sum {
                    counts.batch_images += sample.value;
                } else {
                    counts.batches += sample.value;
                }
            }
        }
        counts
    }

    pub(super) fn since(self, before: Self) -> Self {
        Self {
            served: self.served - before.served,
            batches: self.batches - before.batches,
            batch_images: self.batch_images - before.batch_images,
        }
    }
}

pub(super) struct Server {
    pub(super) child: Child,
    pub(super) endpoint: String,
    /// The HTTP address (host:port), for /metrics.
    pub(super) http: String,
    pub(super) startup: Duration,
}

/// Starts this binary's `serve` on free loopback ports and waits until its health check
/// says SERVING; its log goes to `log_path`.
pub(super) fn start_server(
    config_file: Option<&Path>,
    log_path: &Path,
    env: &[(String, String)],
) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(&exe);
    command.envs(env.iter().map(|(k, v)| (k, v)));
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
        // A first start builds the index of a gate that has none cached (minutes on a
        // busy machine).
        let deadline = Instant::now() + Duration::from_secs(900);
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
                bail!(
                    "server not SERVING after 900 s (see {})",
                    log_path.display()
                );
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
pub(super) fn stop_server(mut server: Server) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the server's exporter writes them.
    const EXPOSITION: &str = r#"# HELP oodgate_batch_images Images per ONNX Runtime run (dynamic batching).
# TYPE oodgate_batch_images histogram
oodgate_batch_images_bucket{gate="digits",le="16"} 3
oodgate_batch_images_sum{gate="digits"} 120
oodgate_batch_images_count{gate="digits"} 4
oodgate_batch_images_sum{gate="fashion"} 80
oodgate_batch_images_count{gate="fashion"} 2
oodgate_images_total{gate="digits",outcome="classified",source="bench"} 110
oodgate_images_total{gate="digits",outcome="rejected",source="bench"} 10
oodgate_images_total{gate="fashion",outcome="classified",source="a \"quoted\", b"} 80
oodgate_stage_duration_seconds_sum{gate="digits",stage="embed"} 0.5
oodgate_stage_duration_seconds_count{gate="digits",stage="embed"} 10
oodgate_ready 1
"#;

    fn samples() -> Vec<Sample> {
        EXPOSITION.lines().filter_map(parse_sample).collect()
    }

    #[test]
    fn samples_keep_every_label() {
        let samples = samples();
        assert_eq!(samples.len(), 11, "{samples:#?}");
        let stage = samples
            .iter()
            .find(|s| s.name == "oodgate_stage_duration_seconds_sum")
            .unwrap();
        assert_eq!(stage.labels["gate"], "digits");
        assert_eq!(stage.labels["stage"], "embed");
        assert_eq!(stage.value, 0.5);
        let quoted = samples
            .iter()
            .find(|s| {
                s.name == "oodgate_images_total"
                    && s.labels.get("gate").map(String::as_str) == Some("fashion")
            })
            .unwrap();
        assert_eq!(quoted.labels["source"], r#"a "quoted", b"#);
        assert_eq!(quoted.labels["outcome"], "classified");
        let ready = samples.iter().find(|s| s.name == "oodgate_ready").unwrap();
        assert!(ready.labels.is_empty());
        assert_eq!(ready.value, 1.0);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        for line in [
            "oodgate_ready",
            "oodgate_ready one",
            r#"oodgate_images_total{gate="digits" 3"#,
            r#"oodgate_images_total{gate="digits} 3"#,
        ] {
            assert_eq!(parse_sample(line), None, "{line}");
        }
    }

    #[test]
    fn gate_counts_add_a_gates_series_and_subtract_an_earlier_scrape() {
        let samples = samples();
        let digits = GateCounts::of(&samples, "digits");
        assert_eq!(
            digits,
            GateCounts {
                served: 120.0,
                batches: 4.0,
                batch_images: 120.0
            }
        );
        let fashion = GateCounts::of(&samples, "fashion");
        assert_eq!((fashion.served, fashion.batches), (80.0, 2.0));
        assert_eq!(GateCounts::of(&samples, "none"), GateCounts::default());
        let since = digits.since(fashion);
        assert_eq!(
            (since.served, since.batches, since.batch_images),
            (40.0, 2.0, 40.0)
        );
    }
}
