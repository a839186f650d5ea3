//! `oodgate bench`: the performance harness behind `make bench` (writes BENCHMARKS.md).
//!
//! Every headline figure is a ratio of two things measured in this one run, on the
//! same images, close together in time: the machine may be busy with other work, so
//! absolute rates move from run to run while ratios mostly do not. The load average is
//! recorded at every stage.
//!
//! Stages: (1) limits in one process: ONNX Runtime alone over batch sizes, LOF alone,
//! embed + LOF back to back; (2) LOF against scikit-learn (Python, same embeddings);
//! (3) the seed's stack, Keras + scikit-learn (Python, same images); (4, 5) the
//! service binary over loopback gRPC: start-up, streaming, unary latency, peak RSS;
//! index build time; (6) how LOF cost grows with the index ([`scaling`]).
//! `--quick` runs every stage on small inputs, so CI can check that the harness works
//! (its timings are not judged).

mod scaling;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ndarray::{Array1, Array2, Array4};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use oodgate_datasets::{DataDir, Dataset, Split};
use oodgate_lof::SearchMode;
use oodgate_replay::{Replay, ReplayOptions, ReplaySet};
use oodgate_server::app::config::Config;
use oodgate_server::core::detector::Detector;
use oodgate_server::core::preprocess::prepare_dataset;
use serde_json::{Value, json};

/// What `oodgate bench` measures and where it writes.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// The Markdown report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Scratch folder (exported embeddings, Python results, server log, results.json).
    #[arg(long, default_value = "target/bench")]
    pub work: PathBuf,
    /// Python with TensorFlow/Keras and scikit-learn.
    #[arg(long, default_value = ".venv/bin/python")]
    pub python: PathBuf,
    #[arg(long, default_value = "bench/seed_stack.py")]
    pub seed_script: PathBuf,
    /// MNIST test images per batch size in the ONNX Runtime sweep.
    #[arg(long, default_value_t = 5000)]
    pub ort_images: usize,
    /// Single-image calls, unary gRPC and in-process.
    #[arg(long, default_value_t = 300)]
    pub single: usize,
    /// Single-image calls of the Keras + scikit-learn stack.
    #[arg(long, default_value_t = 100)]
    pub seed_single: usize,
    /// Training set sizes of the scaling section (synthetic beyond the real 60,000).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 60_000, 240_000, 1_000_000])]
    pub scaling_sizes: Vec<usize>,
    /// Test-set queries in the scaling section (an even sample of the 30,000).
    #[arg(long, default_value_t = 3000)]
    pub scaling_queries: usize,
    /// Every stage on small inputs (for CI: checks that the harness runs, in minutes).
    #[arg(long)]
    pub quick: bool,
    #[arg(long)]
    pub skip_seed: bool,
    #[arg(long)]
    pub skip_index_build: bool,
    /// The command shown in the report.
    #[arg(long, default_value = "make bench")]
    pub command: String,
}

impl BenchOptions {
    /// `--quick` shrinks every sample; the report says so.
    fn effective(&self) -> Self {
        let mut o = self.clone();
        if o.quick {
            o.ort_images = o.ort_images.min(600);
            o.single = o.single.min(30);
            o.seed_single = o.seed_single.min(5);
            o.scaling_sizes = vec![2_000, 5_000];
            o.scaling_queries = o.scaling_queries.min(600);
        }
        o
    }
}

const BATCH_SIZES: [usize; 6] = [1, 8, 32, 64, 128, 256];
const EFS: [usize; 4] = [32, 64, 128, 256];
const STREAMS: usize = 8;
const STREAM_BATCH: usize = 16;
const WINDOW: usize = 4;
const CONTAMINATION: f64 = 0.001;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

struct Log {
    loads: Vec<(String, String)>,
}

impl Log {
    fn stage(&mut self, name: &str) {
        let load = loadavg();
        eprintln!("bench: {name} (load average {load})");
        self.loads.push((name.to_owned(), load));
    }
}

fn quantile(sorted_ms: &[f64], q: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted_ms.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo as f64)
}

/// Sums and counts of the server's per-request time histograms (its /metrics).
struct StageSeconds(BTreeMap<String, (f64, f64)>);

impl StageSeconds {
    /// Mean milliseconds per request of each histogram, over the requests since `before`.
    fn mean_ms_since(&self, before: &StageSeconds) -> Value {
        let mut out = serde_json::Map::new();
        for (name, (sum, count)) in &self.0 {
            let (sum0, count0) = before.0.get(name).copied().unwrap_or_default();
            if count > &count0 {
                out.insert(name.clone(), json!(1e3 * (sum - sum0) / (count - count0)));
            }
        }
        Value::Object(out)
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

fn latency_stats(samples: &[Duration]) -> Value {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    json!({
        "n": ms.len(),
        "p50": quantile(&ms, 0.50),
        "p90": quantile(&ms, 0.90),
        "p99": quantile(&ms, 0.99),
        "max": ms.last().copied().unwrap_or(f64::NAN),
        "mean": ms.iter().sum::<f64>() / ms.len().max(1) as f64,
    })
}

fn write_npy<A: WriteNpyExt>(path: &Path, array: &A) -> anyhow::Result<()> {
    let file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    array
        .write_npy(file)
        .with_context(|| format!("writing {}", path.display()))
}

fn raw_images(set: &Dataset) -> anyhow::Result<Array4<u8>> {
    Ok(Array4::from_shape_vec(
        (
            set.len(),
            set.height as usize,
            set.width as usize,
            set.channels as usize,
        ),
        set.pixels.clone(),
    )?)
}

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

/// Embed then LOF in chunks of `batch`, back to back, in this process.
/// Embed then LOF (`mode`), one after the other with no overlap, over all `pixels` in
/// chunks of each of `batches`: (best images/s, its batch, every batch's rate).
fn pipeline_limit(
    detector: &Detector,
    pixels: &[f32],
    per: usize,
    batches: &[usize],
    mode: SearchMode,
) -> anyhow::Result<(f64, usize, Value)> {
    let dim = detector.embedder.embedding_dim;
    let mut best = (0.0, 0);
    let mut rates = serde_json::Map::new();
    for &batch in batches {
        let started = Instant::now();
        let mut n = 0;
        for chunk in pixels.chunks(batch * per) {
            let count = chunk.len() / per;
            let embedded = detector.embed(chunk, count)?;
            let view = ndarray::ArrayView2::from_shape((count, dim), &embedded.embeddings)?;
            n += detector.index.query(view, mode)?.len();
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        rates.insert(batch.to_string(), json!(rate));
        if rate > best.0 {
            best = (rate, batch);
        }
    }
    Ok((best.0, best.1, Value::Object(rates)))
}

struct Server {
    child: Child,
    endpoint: String,
    /// The HTTP address (host:port), for /metrics.
    http: String,
    startup: Duration,
}

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

/// Writes the report again from a saved results.json (after a change to the layout).
pub fn rewrite(results: &Path, out: &Path) -> anyhow::Result<()> {
    let results: Value = serde_json::from_slice(&std::fs::read(results)?)?;
    std::fs::write(out, markdown(&results))?;
    Ok(())
}

pub fn run(
    config: &Config,
    config_file: Option<&Path>,
    options: &BenchOptions,
) -> anyhow::Result<()> {
    let run_started = Instant::now();
    let options = &options.effective();
    std::fs::create_dir_all(&options.work)?;
    let work = options.work.canonicalize()?;
    let mut log = Log { loads: Vec::new() };
    let mut r = serde_json::Map::new();
    let date = shell("date -u '+%Y-%m-%d %H:%M UTC'");
    log.stage("load model and index");
    let detector = oodgate_server::app::load::detector(config)?;
    let dim = detector.embedder.embedding_dim;
    // The search mode the report compares with the configured one.
    let (alternative, alternative_name) = match detector.search {
        SearchMode::Exact => (
            SearchMode::Hnsw {
                ef: detector.index.hnsw_params().ef_search,
            },
            "hnsw",
        ),
        SearchMode::Hnsw { .. } => (SearchMode::Exact, "exact"),
    };
    let per = detector.embedder.input.len();
    r.insert(
        "model".into(),
        json!({"name": detector.model.name, "sha256": detector.model.sha256,
               "intra_threads": config.model.intra_threads, "search": format!("{:?}", detector.search),
               "index_size": detector.index.len(), "k": detector.index.k()}),
    );

    // ---- Data: the three test sets, preprocessed as the service does -------------------
    log.stage("load and preprocess the test sets");
    let data = DataDir::from_env()?;
    let sets = [
        data.mnist(Split::Test)?,
        data.fashion_mnist(Split::Test)?,
        data.cifar10_test()?,
    ];
    let started = Instant::now();
    let mut pixels = Vec::new();
    for set in &sets {
        pixels.extend(prepare_dataset(set, &detector.embedder.input)?);
    }
    let total = pixels.len() / per;
    let set_offsets: Vec<usize> = sets
        .iter()
        .scan(0, |acc, s| {
            let start = *acc;
            *acc += s.len();
            Some(start)
        })
        .collect();
    r.insert(
        "preprocess".into(),
        json!({"images": total, "seconds": started.elapsed().as_secs_f64()}),
    );

    // ---- Embeddings of all 30,000 (also exported for Python) ---------------------------
    log.stage("embed the test sets");
    let mut embeddings = Vec::with_capacity(total * dim);
    for chunk in pixels.chunks(256 * per) {
        embeddings.extend(detector.embed(chunk, chunk.len() / per)?.embeddings);
    }
    let queries = Array2::from_shape_vec((total, dim), embeddings)?;
    write_npy(&work.join("queries.npy"), &queries)?;
    write_npy(
        &work.join("train.npy"),
        &detector.index.embeddings().to_owned(),
    )?;
    for (set, name) in sets.iter().zip(["mnist", "fashion-mnist", "cifar10"]) {
        write_npy(&work.join(format!("{name}.npy")), &raw_images(set)?)?;
    }

    // ---- 1a. ONNX Runtime alone -------------------------------------------------------
    log.stage("ONNX Runtime sweep");
    let ort_n = options.ort_images.min(sets[0].len());
    let ort_pixels = &pixels[..ort_n * per];
    let mut ort = Vec::new();
    for &b in &BATCH_SIZES {
        let n = if b == 1 {
            ort_n.min(1000)
        } else {
            ort_n / b * b
        };
        detector.embed(&ort_pixels[..b * per], b)?; // warm-up
        let mut best: f64 = 0.0;
        let mut rounds = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            for chunk in ort_pixels[..n * per].chunks(b * per) {
                detector.embed(chunk, b)?;
            }
            let rate = n as f64 / started.elapsed().as_secs_f64();
            rounds.push(rate);
            best = best.max(rate);
        }
        eprintln!("  batch {b}: {best:.0} images/s");
        ort.push(json!({"batch": b, "images": n, "images_per_second": best, "rounds": rounds}));
    }
    let best_batch = ort
        .iter()
        .max_by(|a, b| {
            a["images_per_second"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["images_per_second"].as_f64().unwrap())
        })
        .map(|v| v["batch"].as_u64().unwrap() as usize)
        .unwrap_or(256);
    r.insert(
        "ort".into(),
        json!({"images": ort_n, "sweep": ort, "best_batch": best_batch}),
    );

    // ---- 1b. LOF alone, on the same images' embeddings --------------------------------
    log.stage("LOF alone");
    let ort_queries = queries.slice_axis(ndarray::Axis(0), ndarray::Slice::from(..ort_n));
    let mut lof_alone = Vec::new();
    for mode in [detector.search, alternative] {
        let mut chunk_sizes = vec![1, STREAM_BATCH, best_batch, config.batching.max_batch_size];
        chunk_sizes.sort_unstable();
        chunk_sizes.dedup();
        for chunk_size in chunk_sizes {
            let n = if chunk_size == 1 {
                ort_n.min(500)
            } else {
                ort_n
            };
            let started = Instant::now();
            for chunk in ort_queries
                .slice_axis(ndarray::Axis(0), ndarray::Slice::from(..n))
                .axis_chunks_iter(ndarray::Axis(0), chunk_size)
            {
                detector.index.query(chunk, mode)?;
            }
            let rate = n as f64 / started.elapsed().as_secs_f64();
            eprintln!("  {mode:?}, batch {chunk_size}: {rate:.0} queries/s");
            lof_alone.push(json!({"mode": format!("{mode:?}"), "queries": n, "batch": chunk_size, "queries_per_second": rate}));
        }
    }
    r.insert("lof_alone".into(), json!(lof_alone));

    // ---- 1c. Pipeline limit (before the service run; again after it) -------------------
    log.stage("pipeline limit (embed + LOF), first measurement");
    // The ONNX Runtime sweep's best batch, and the service's largest (LOF prefers
    // large batches): the limit is the better of the two.
    let mut limit_batches = vec![best_batch, config.batching.max_batch_size];
    limit_batches.dedup();
    let (limit_before, limit_batch_before, limit_rates_before) =
        pipeline_limit(&detector, &pixels, per, &limit_batches, detector.search)?;
    eprintln!("  {limit_before:.0} images/s (batch {limit_batch_before})");

    // ---- 4a. In-process single image ---------------------------------------------------
    log.stage("in-process single image");
    let picks: Vec<usize> = (0..options.single)
        .map(|i| i * (total - 1) / (options.single - 1).max(1))
        .collect();
    let single_one = |i: usize| -> anyhow::Result<()> {
        let embedded = detector.embed(&pixels[i * per..(i + 1) * per], 1)?;
        for scored in detector.score(&embedded)? {
            scored.judge(detector.default_thresholds);
        }
        Ok(())
    };
    for &i in picks.iter().take(10) {
        single_one(i)?;
    }
    let mut in_process = Vec::new();
    for &i in &picks {
        let started = Instant::now();
        single_one(i)?;
        in_process.push(started.elapsed());
    }
    let in_process_stats = latency_stats(&in_process);

    // ---- 2. LOF modes on all 30,000 queries --------------------------------------------
    log.stage("oodgate LOF on 30,000 queries");
    let mut modes: Vec<(String, SearchMode)> = vec![("exact".into(), SearchMode::Exact)];
    modes.extend(
        EFS.iter()
            .map(|&ef| (format!("HNSW ef {ef}"), SearchMode::Hnsw { ef })),
    );
    let mut lof_runs = Vec::new(); // (name, seconds, scores, ids)
    for (name, mode) in &modes {
        let started = Instant::now();
        let results = detector.index.query(queries.view(), *mode)?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("  {name}: {seconds:.2} s");
        let scores: Vec<f64> = results.iter().map(|q| q.score).collect();
        let ids: Vec<Vec<u32>> = results
            .iter()
            .map(|q| q.neighbours.iter().map(|n| n.id).collect())
            .collect();
        lof_runs.push((name.clone(), *mode, seconds, scores, ids));
    }

    // ---- 2 + 3. Python: scikit-learn and the seed stack ---------------------------------
    let seed_dir = work.join("seed");
    let seed: Option<Value> = if options.skip_seed {
        None
    } else {
        log.stage("Python: scikit-learn LOF and Keras (seed stack)");
        let status = Command::new(&options.python)
            .arg(&options.seed_script)
            .arg("--dir")
            .arg(&work)
            .arg("--out")
            .arg(&seed_dir)
            .args(["--single", &options.seed_single.to_string()])
            .args(["--contamination", &CONTAMINATION.to_string()])
            .status()
            .with_context(|| format!("running {}", options.python.display()))?;
        if !status.success() {
            bail!("{} failed: {status}", options.seed_script.display());
        }
        Some(serde_json::from_slice(&std::fs::read(
            seed_dir.join("seed.json"),
        )?)?)
    };
    let our_offset = detector.index.offset(CONTAMINATION)?;
    let exact_ids = lof_runs[0].4.clone();
    let exact_scores = lof_runs[0].3.clone();
    let sk_scores: Option<Array1<f64>> = if seed.is_some() {
        Some(Array1::<f64>::read_npy(std::fs::File::open(
            seed_dir.join("scores.npy"),
        )?)?)
    } else {
        None
    };
    let mut lof_table = Vec::new();
    for (name, mode, seconds, scores, ids) in &lof_runs {
        let recall = ids
            .iter()
            .zip(&exact_ids)
            .map(|(a, e)| a.iter().filter(|id| e.contains(id)).count() as f64 / e.len() as f64)
            .sum::<f64>()
            / ids.len() as f64;
        let mut row = json!({"mode": name, "search": format!("{mode:?}"), "seconds": seconds,
                             "queries_per_second": total as f64 / seconds, "recall_at_k": recall});
        let exact_agree = scores
            .iter()
            .zip(&exact_scores)
            .filter(|(a, b)| (**a < our_offset) == (**b < our_offset))
            .count() as f64
            / total as f64;
        row["agreement_with_exact"] = json!(exact_agree);
        if let (Some(sk), Some(seed)) = (&sk_scores, &seed) {
            let sk_offset = seed["lof_offset"].as_f64().unwrap();
            let agree = scores
                .iter()
                .zip(sk.iter())
                .filter(|(a, b)| (**a < our_offset) == (**b < sk_offset))
                .count() as f64
                / total as f64;
            let worst = scores
                .iter()
                .zip(sk.iter())
                .map(|(a, b)| ((a - b) / b).abs())
                .fold(0.0, f64::max);
            row["agreement_with_sklearn"] = json!(agree);
            row["max_relative_score_difference"] = json!(worst);
            row["speedup_vs_sklearn"] =
                json!(seed["lof_score_seconds"].as_f64().unwrap() / seconds);
        }
        lof_table.push(row);
    }
    r.insert(
        "lof_vs_sklearn".into(),
        json!({"queries": total, "offset": our_offset, "modes": lof_table}),
    );
    if let Some(seed) = &seed {
        r.insert("seed".into(), seed.clone());
    }

    // ---- 1d, 3, 4, 5. The service over loopback gRPC ------------------------------------
    log.stage("start the service (saved index)");
    let server = start_server(config_file, &work.join("serve.log"), &[])?;
    let pid = server.child.id();
    eprintln!(
        "  SERVING after {:.2} s at {}",
        server.startup.as_secs_f64(),
        server.endpoint
    );
    let rt = tokio::runtime::Runtime::new()?;
    let replay_sets = |limit: Option<usize>| -> anyhow::Result<Arc<Vec<ReplaySet>>> {
        let mut v = Vec::new();
        for name in ["mnist", "fashion-mnist", "cifar10"] {
            let mut s = ReplaySet::load(name, &data)?;
            if let Some(n) = limit {
                s.truncate(n);
            }
            v.push(s);
        }
        Ok(Arc::new(v))
    };
    let stream_options = ReplayOptions {
        streams: STREAMS,
        batch_size: STREAM_BATCH,
        window: WINDOW,
        source: Some("bench".into()),
        ..ReplayOptions::default()
    };
    // A warm-up of 300 images of each set, then all 30,000 images.
    let stream_all = |endpoint: &str, all: Arc<Vec<ReplaySet>>| -> anyhow::Result<Replay> {
        rt.block_on(oodgate_replay::replay(
            endpoint,
            replay_sets(Some(300))?,
            stream_options.clone(),
        ))?;
        let replay = rt.block_on(oodgate_replay::replay(
            endpoint,
            all,
            stream_options.clone(),
        ))?;
        eprintln!(
            "  {:.0} images/s",
            total as f64 / replay.elapsed.as_secs_f64()
        );
        Ok(replay)
    };
    let in_process_scores = |mode: SearchMode| {
        lof_runs
            .iter()
            .find(|run| run.1 == mode)
            .map(|run| run.3.clone())
    };
    let service = (|| -> anyhow::Result<Value> {
        let endpoint = server.endpoint.clone();
        log.stage("stream the 30,000 test images");
        let all = replay_sets(None)?;
        let replay = stream_all(&endpoint, all.clone())?;
        let rate = total as f64 / replay.elapsed.as_secs_f64();
        let same = in_process_scores(detector.search).map(|s| identical_scores(&replay, &s));
        let rss_after_stream = vm_hwm_kb(pid);

        log.stage("unary Detect, one image per call");
        let (unary, local, unary_inside) = rt.block_on(async {
            let mut client = oodgate_replay::replay::connect(&endpoint).await?;
            let locate = |i: usize| {
                let s = set_offsets.iter().rposition(|&o| o <= i).unwrap();
                (s, i - set_offsets[s])
            };
            // Warm-up (both paths), then each image in process and by unary call, one
            // right after the other, so both see the same moment of the machine's load.
            for &i in picks.iter().take(10) {
                let (s, j) = locate(i);
                single_one(i)?;
                client
                    .detect(oodgate_replay::replay::request(
                        &all[s],
                        j..j + 1,
                        "bench",
                        None,
                    ))
                    .await?;
            }
            let stages_before = server_stage_seconds(&server.http)?;
            let mut latencies = Vec::new();
            let mut local = Vec::new();
            for (n, &i) in picks.iter().enumerate() {
                let (s, j) = locate(i);
                let request = oodgate_replay::replay::request(&all[s], j..j + 1, "bench", None);
                // Alternate which goes first (the second finds warmer caches).
                if n % 2 == 0 {
                    let started = Instant::now();
                    single_one(i)?;
                    local.push(started.elapsed());
                }
                let started = Instant::now();
                let response = client.detect(request).await?.into_inner();
                latencies.push(started.elapsed());
                anyhow::ensure!(response.verdicts.len() == 1, "one verdict expected");
                if n % 2 == 1 {
                    let started = Instant::now();
                    single_one(i)?;
                    local.push(started.elapsed());
                }
            }
            let inside = server_stage_seconds(&server.http)?.mean_ms_since(&stages_before);
            Ok::<_, anyhow::Error>((latencies, local, inside))
        })?;
        // The floor of a round trip: GetModelInfo (no model work), same client setup.
        let info = rt.block_on(async {
            let mut client = oodgate_replay::replay::connect(&endpoint).await?;
            let mut latencies = Vec::new();
            for n in 0..picks.len() + 10 {
                let started = Instant::now();
                client
                    .get_model_info(oodgate_proto::v1::GetModelInfoRequest {})
                    .await?;
                if n >= 10 {
                    latencies.push(started.elapsed());
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        })?;
        Ok(json!({
            "startup_seconds": server.startup.as_secs_f64(),
            "stream": {"streams": STREAMS, "batch": STREAM_BATCH, "window": WINDOW, "images": total,
                       "seconds": replay.elapsed.as_secs_f64(), "images_per_second": rate,
                       "request_latency_ms": latency_stats(&replay.latencies),
                       "scores_identical_to_in_process": same},
            "unary_ms": latency_stats(&unary),
            "unary_inside_server_mean_ms": unary_inside,
            "in_process_interleaved_ms": latency_stats(&local),
            "get_model_info_ms": latency_stats(&info),
            "vm_hwm_kb_after_stream": rss_after_stream,
            "vm_hwm_kb": vm_hwm_kb(pid),
        }))
    })();
    stop_server(server)?;
    let service = service?;
    r.insert("service".into(), service.clone());

    log.stage("pipeline limit (embed + LOF), second measurement");
    let (limit_after, limit_batch_after, limit_rates_after) =
        pipeline_limit(&detector, &pixels, per, &limit_batches, detector.search)?;
    eprintln!("  {limit_after:.0} images/s (batch {limit_batch_after})");
    r.insert(
        "pipeline_limit".into(),
        json!({"batches": limit_batches, "images": total, "before_service_images_per_second": limit_before,
               "after_service_images_per_second": limit_after,
               "before_batch": limit_batch_before, "after_batch": limit_batch_after,
               "before_by_batch": limit_rates_before, "after_by_batch": limit_rates_after,
               "images_per_second": (limit_before + limit_after) / 2.0}),
    );
    r.insert("in_process_single_ms".into(), in_process_stats);

    // The same stream against a server with the other search mode.
    log.stage("pipeline limit with the other search mode");
    let (alt_limit, _, _) = pipeline_limit(&detector, &pixels, per, &limit_batches, alternative)?;
    eprintln!("  {alt_limit:.0} images/s");
    log.stage("service with the other search mode: start and stream");
    let server = start_server(
        config_file,
        &work.join("serve-alternative.log"),
        &[("OODGATE_INDEX__SEARCH", alternative_name)],
    )?;
    let alt_service = (|| -> anyhow::Result<Value> {
        let replay = stream_all(&server.endpoint, replay_sets(None)?)?;
        let rate = total as f64 / replay.elapsed.as_secs_f64();
        let same = in_process_scores(alternative).map(|s| identical_scores(&replay, &s));
        Ok(
            json!({"search": format!("{alternative:?}"), "setting": alternative_name,
                  "startup_seconds": server.startup.as_secs_f64(), "images": total,
                  "pipeline_limit_images_per_second": alt_limit,
                  "seconds": replay.elapsed.as_secs_f64(), "images_per_second": rate,
                  "request_latency_ms": latency_stats(&replay.latencies),
                  "scores_identical_to_in_process": same}),
        )
    })();
    stop_server(server)?;
    r.insert("service_alternative".into(), alt_service?);

    // ---- 5b. Index build --------------------------------------------------------------
    if !options.skip_index_build {
        log.stage("index build");
        let exe = std::env::current_exe()?;
        let out = work.join("index-build.lof");
        let mut command = Command::new(&exe);
        if let Some(file) = config_file {
            command.arg("--config").arg(file);
        }
        let started = Instant::now();
        let output = command
            .args(["index", "build", "--out"])
            .arg(&out)
            .stderr(Stdio::null())
            .output()?;
        let seconds = started.elapsed().as_secs_f64();
        if !output.status.success() {
            bail!("index build failed: {}", output.status);
        }
        let _ = std::fs::remove_file(&out);
        r.insert(
            "index_build".into(),
            json!({"seconds": seconds, "output": String::from_utf8_lossy(&output.stdout).trim()}),
        );
    }

    // ---- 6. How cost grows with the index ----------------------------------------------
    log.stage("scaling: LOF query, build and size against index size");
    let step = (total / options.scaling_queries.max(1)).max(1);
    let sample: Vec<usize> = (0..total).step_by(step).collect();
    let scaling_queries = queries.select(ndarray::Axis(0), &sample);
    r.insert(
        "scaling".into(),
        scaling::run(
            detector.index.embeddings(),
            detector.index.labels(),
            scaling_queries.view(),
            &options.scaling_sizes,
            detector.index.k(),
            CONTAMINATION,
            &work,
        )?,
    );
    log.stage("done");

    r.insert(
        "machine".into(),
        json!({
            "date": date,
            "cpu": shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            "cores": shell("nproc"),
            "memory": shell("grep MemTotal /proc/meminfo | awk '{print $2/1048576 \" GiB\"}'"),
            "kernel": shell("uname -sr"),
            "onnxruntime": std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).unwrap_or_else(|| config.model.ort_dylib_path.clone())
                .file_name().map(|f| f.to_string_lossy().to_string()),
            "rustc": shell("rustc --version"),
            "git": shell("git describe --always --dirty"),
            "loads": log.loads.iter().map(|(s, l)| json!({"stage": s, "load": l})).collect::<Vec<_>>(),
        }),
    );
    r.insert(
        "total_seconds".into(),
        json!(run_started.elapsed().as_secs_f64()),
    );
    r.insert("command".into(), json!(options.command));
    r.insert("quick".into(), json!(options.quick));
    let results = Value::Object(r);
    std::fs::write(
        work.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(&options.out, markdown(&results))?;
    eprintln!(
        "bench: wrote {} and {}",
        options.out.display(),
        work.join("results.json").display()
    );
    Ok(())
}

/// How many served scores equal the in-process ones (to 1e-9 relative), in order.
fn identical_scores(replay: &Replay, in_process: &[f64]) -> usize {
    replay
        .answers
        .iter()
        .flat_map(|a| a.iter().map(|x| x.score()))
        .zip(in_process)
        .filter(|(s, h)| s.is_some_and(|s| (s - *h).abs() <= 1e-9 * h.abs()))
        .count()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

pub fn markdown(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    let limit = f(&r["pipeline_limit"]["images_per_second"]);
    let stream = f(&r["service"]["stream"]["images_per_second"]);
    let unary = &r["service"]["unary_ms"];
    let local = &r["service"]["in_process_interleaved_ms"];
    let local_before = &r["in_process_single_ms"];
    let lof = r["lof_vs_sklearn"]["modes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let configured = r["model"]["search"].as_str().unwrap_or("");
    let configured_row = lof
        .iter()
        .find(|row| row["search"].as_str() == Some(configured));
    let exact_row = lof.iter().find(|row| row["mode"] == "exact");
    let seed = &r["seed"];
    let ex = &r["service_alternative"];
    let ex_setting = ex["setting"].as_str().unwrap_or("?");
    let ex_search = ex["search"].as_str().unwrap_or("?");

    s += "# Benchmarks\n\n";
    s += &format!(
        "Measured {} on {} ({} cores, {}), by `{}` ({:.0} s in all). Commit {}.\n\n",
        m["date"].as_str().unwrap_or("?"),
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"].as_str().unwrap_or("?"),
        m["memory"].as_str().unwrap_or("?"),
        r["command"].as_str().unwrap_or("make bench"),
        f(&r["total_seconds"]),
        m["git"].as_str().unwrap_or("?"),
    );
    if r["quick"].as_bool() == Some(true) {
        s += "**Quick run (`--quick`): small samples everywhere, to check that the harness works; not a measurement to quote.**\n\n";
    }
    s += "Every headline figure is a **ratio** of two things measured side by side in this one run, on the same images, \
          because the machine may be busy with other work (absolute rates below move with the load; ratios much less). \
          Load average (1, 5, 15 min) at each stage:\n\n";
    for l in m["loads"].as_array().into_iter().flatten() {
        s += &format!(
            "- {}: {}\n",
            l["stage"].as_str().unwrap_or(""),
            l["load"].as_str().unwrap_or("")
        );
    }
    s += "\n## Summary\n\n| ratio | goal | measured | met? |\n| --- | --- | --- | --- |\n";
    let ratio = stream / limit;
    s += &format!(
        "| service streaming (gRPC, loopback) / in-process pipeline limit | >= 0.9 | {ratio:.2} ({stream:.0} / {limit:.0} images/s) | {} |\n",
        met(ratio >= 0.9)
    );
    if let Some(row) = configured_row {
        let x = f(&row["speedup_vs_sklearn"]);
        s += &format!(
            "| LOF speed: scikit-learn `score_samples` time / oodgate ({}) time, 30,000 queries | >= 5x | {x:.1}x | {} |\n",
            row["mode"].as_str().unwrap_or(""),
            met(x >= 5.0)
        );
        let a = f(&row["agreement_with_sklearn"]) * 100.0;
        s += &format!(
            "| LOF verdict agreement with scikit-learn at contamination 0.001 ({}) | >= 99.9 % | {a:.2} % | {} |\n",
            row["mode"].as_str().unwrap_or(""),
            met(a >= 99.9)
        );
    }
    if let Some(row) = exact_row {
        let x = f(&row["speedup_vs_sklearn"]);
        let a = f(&row["agreement_with_sklearn"]) * 100.0;
        s += &format!(
            "| same, exact mode: speed / agreement | >= 5x / >= 99.9 % | {x:.1}x / {a:.2} % | {} |\n",
            met(x >= 5.0 && a >= 99.9)
        );
    }
    if !seed.is_null() {
        let batch = f(&seed["batch_images_per_second"]);
        let x = stream / batch;
        s += &format!(
            "| oodgate streaming / Keras + scikit-learn batch job, images/s (30,000 images) | >= 2x | {x:.1}x ({stream:.0} / {batch:.0}) | {} |\n",
            met(x >= 2.0)
        );
        let single = f(&seed["single_predict_ms"]["p50"]);
        let x = single / f(&unary["p50"]);
        s += &format!(
            "| Keras `predict` + scikit-learn one image per call, p50 / oodgate unary `Detect` p50 | >= 20x | {x:.1}x ({single:.1} / {:.2} ms) | {} |\n",
            f(&unary["p50"]),
            met(x >= 20.0)
        );
    }
    for (q, what) in [
        ("p50", "in-process embed + LOF p50"),
        ("p99", "in-process p99"),
    ] {
        let x = f(&unary[q]) / f(&local[q]);
        s += &format!(
            "| unary `Detect` {q} / {what}, one image | <= 1.5x | {x:.2}x ({:.2} / {:.2} ms) | {} |\n",
            f(&unary[q]),
            f(&local[q]),
            met(x <= 1.5)
        );
    }
    if let Some((n, row)) = scaling_goal(&r["scaling"]) {
        s += &format!(
            "| at {n} embeddings: exact LOF search time / HNSW LOF search time, at verdict agreement >= 99 % ({}) | >= 50x | {:.1}x at {:.2} % | {} |\n",
            row["search"].as_str().unwrap_or("?"),
            f(&row["speedup_vs_exact"]),
            100.0 * f(&row["agreement_with_exact"]),
            met(f(&row["speedup_vs_exact"]) >= 50.0 && f(&row["agreement_with_exact"]) >= 0.99)
        );
    }
    if !ex.is_null() {
        let es = f(&ex["images_per_second"]);
        let el = f(&ex["pipeline_limit_images_per_second"]);
        s += &format!(
            "| *not the default:* service with `index.search = \"{ex_setting}\"` / in-process pipeline limit with {ex_search} | >= 0.9 | {:.2} ({es:.0} / {el:.0} images/s) | {} |\n",
            es / el,
            met(es / el >= 0.9)
        );
        if !seed.is_null() {
            let x = es / f(&seed["batch_images_per_second"]);
            s += &format!(
                "| *not the default:* oodgate streaming with {ex_search} / Keras + scikit-learn batch job | >= 2x | {x:.1}x ({es:.0} / {:.0}) | {} |\n",
                f(&seed["batch_images_per_second"]),
                met(x >= 2.0)
            );
        }
    }

    // ---- Details ----
    s += &format!(
        "\n## 1. Limits in one process, and the service\n\nModel `{}` (SHA-256 {}…), ONNX Runtime {} with {} intra-op threads \
         (`model.intra_threads`), LOF k = {}, {} training points, configured search {}.\n\n",
        r["model"]["name"].as_str().unwrap_or("?"),
        &r["model"]["sha256"].as_str().unwrap_or("?")
            [..12.min(r["model"]["sha256"].as_str().unwrap_or("").len())],
        m["onnxruntime"].as_str().unwrap_or("?"),
        r["model"]["intra_threads"],
        r["model"]["k"],
        r["model"]["index_size"],
        configured,
    );
    s += &format!(
        "ONNX Runtime alone (`Embedder::run`, preprocessed MNIST test images, first {} of them; batch 1: 1,000; best of 2 rounds):\n\n| batch | images/s |\n| --- | --- |\n",
        r["ort"]["images"]
    );
    for row in r["ort"]["sweep"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {:.0} |\n",
            row["batch"],
            f(&row["images_per_second"])
        );
    }
    s += "\nLOF alone on the same images' embeddings (`LofIndex::query` on chunks of 1, 16 (a streaming request), the best ONNX batch and the service's largest batch; batch 1: 500 queries):\n\n| search | batch | queries | queries/s |\n| --- | --- | --- | --- |\n";
    for row in r["lof_alone"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {} | {} | {:.0} |\n",
            row["mode"].as_str().unwrap_or(""),
            row["batch"],
            row["queries"],
            f(&row["queries_per_second"])
        );
    }
    let pl = &r["pipeline_limit"];
    s += &format!(
        "\nPipeline limit: embed then LOF ({}), one stage after the other (no overlap), over the 30,000 test images \
         (MNIST, Fashion-MNIST, CIFAR-10; already preprocessed), in batches of {} (the ONNX Runtime sweep's best and the service's \
         largest batch), the better of them: {:.0} images/s before the service run, {:.0} after; mean {:.0}.\n\n",
        configured,
        pl["batches"],
        f(&pl["before_service_images_per_second"]),
        f(&pl["after_service_images_per_second"]),
        limit
    );
    let st = &r["service"]["stream"];
    s += &format!(
        "Service: `oodgate serve` (this binary, default batching settings) on free loopback ports; the replay library streams the same \
         30,000 images as raw pixels ({} streams x batch {}, window {}; after a warm-up of 900 images): {:.0} images/s ({:.1} s). \
         The client runs on the same 2 cores. Scores identical to the in-process {} scores: {} of {}.\n\n",
        st["streams"],
        st["batch"],
        st["window"],
        stream,
        f(&st["seconds"]),
        configured,
        st["scores_identical_to_in_process"],
        st["images"]
    );

    if !ex.is_null() {
        s += &format!(
            "The same with {ex_search} (`OODGATE_INDEX__SEARCH={ex_setting}`, a second server, started in {:.2} s): pipeline limit {:.0} images/s \
             (measured just before), service {:.0} images/s ({:.1} s); scores identical to in-process {ex_search}: {} of {}.\n\n",
            f(&ex["startup_seconds"]),
            f(&ex["pipeline_limit_images_per_second"]),
            f(&ex["images_per_second"]),
            f(&ex["seconds"]),
            ex["scores_identical_to_in_process"],
            ex["images"]
        );
    }
    s += "The service overlaps stages that the in-process limit runs one after the other (ONNX Runtime on one batch while LOF \
          scores the previous requests on the rayon pool), which is how it can exceed that limit.\n\n";
    s += "## 2. LOF against scikit-learn\n\n";
    if !seed.is_null() {
        s += &format!(
            "scikit-learn {} `LocalOutlierFactor(n_neighbors=20, novelty=True, contamination=0.001)` (algorithm chosen: `{}`), fitted on the \
             index's {} training embeddings in {:.1} s; `score_samples` of the 30,000 query embeddings (MNIST, Fashion-MNIST, \
             CIFAR-10 test) took {:.2} s. oodgate's `LofIndex::query` on the same 30,000 embeddings, one call (parallel on rayon). \
             Verdict = score below the threshold at contamination 0.001, each side with its own threshold (oodgate {:.7}, \
             scikit-learn `offset_` {:.7}). Recall@20 against oodgate's exact search.\n\n",
            seed["versions"]["sklearn"].as_str().unwrap_or("?"),
            seed["lof_method"].as_str().unwrap_or("?"),
            r["model"]["index_size"],
            f(&seed["lof_fit_seconds"]),
            f(&seed["lof_score_seconds"]),
            f(&r["lof_vs_sklearn"]["offset"]),
            f(&seed["lof_offset"]),
        );
    }
    s += "| search | seconds | queries/s | speed vs scikit-learn | verdict agreement | max relative score difference | recall@20 |\n| --- | --- | --- | --- | --- | --- | --- |\n";
    for row in &lof {
        s += &format!(
            "| {} | {:.2} | {:.0} | {:.1}x | {:.3} % | {:.1e} | {:.4} |\n",
            row["mode"].as_str().unwrap_or(""),
            f(&row["seconds"]),
            f(&row["queries_per_second"]),
            f(&row["speedup_vs_sklearn"]),
            100.0 * f(&row["agreement_with_sklearn"]),
            f(&row["max_relative_score_difference"]),
            f(&row["recall_at_k"]),
        );
    }

    s += "\n## 3. What a user would pick instead: Keras + scikit-learn\n\n";
    if seed.is_null() {
        s += "Not measured in this run (--skip-seed).\n";
    } else {
        s += &format!(
            "`bench/seed_stack.py`: TensorFlow {} / Keras {}, the default model's architecture (recipe l2-aug, built by `train/oodtrain`, \
             fresh weights: speed does not depend on them), scikit-learn LOF as in section 2. TensorFlow uses both cores.\n\n\
             - Batch job on the 30,000 images: preprocessing (u8 to [0, 1]; CIFAR-10 to gray 28x28 with `tf.image`) {:.2} s, \
             `model.predict(batch_size=256)` {:.2} s (after a one-batch warm-up), `score_samples` {:.2} s (section 2, on oodgate's \
             embeddings of the same images): {:.2} s in all, **{:.0} images/s**; the LOF fit ({:.1} s) is not counted. \
             oodgate streaming: **{:.0} images/s**.\n\
             - One image per call, {} images spread over the three sets (preprocess, `model.predict`, `score_samples`): \
             p50 **{:.1} ms**, p99 {:.1} ms; calling the model directly (`model(x)`) instead of `predict`: p50 {:.1} ms, p99 {:.1} ms. \
             oodgate unary `Detect`: p50 **{:.2} ms**, p99 {:.2} ms.\n",
            seed["versions"]["tensorflow"].as_str().unwrap_or("?"),
            seed["versions"]["keras"].as_str().unwrap_or("?"),
            f(&seed["batch_preprocess_seconds"]),
            f(&seed["batch_predict_seconds"]),
            f(&seed["lof_score_seconds"]),
            f(&seed["batch_seconds"]),
            f(&seed["batch_images_per_second"]),
            f(&seed["lof_fit_seconds"]),
            stream,
            seed["single_predict_ms"]["n"],
            f(&seed["single_predict_ms"]["p50"]),
            f(&seed["single_predict_ms"]["p99"]),
            f(&seed["single_call_ms"]["p50"]),
            f(&seed["single_call_ms"]["p99"]),
            f(&unary["p50"]),
            f(&unary["p99"]),
        );
    }

    s += "\n## 4. Latency\n\n| what | n | p50 ms | p90 ms | p99 ms | max ms |\n| --- | --- | --- | --- | --- | --- |\n";
    let lat_row = |name: &str, v: &Value| {
        format!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            v["n"],
            f(&v["p50"]),
            f(&v["p90"]),
            f(&v["p99"]),
            f(&v["max"])
        )
    };
    s += &lat_row(
        "in-process, one image: `Detector::embed` + `score` + `judge`, each next to the unary call for the same image, alternately before and after (the ratio's denominator)",
        local,
    );
    s += &lat_row(
        "in-process, one image, measured alone before the server started",
        local_before,
    );
    s += &lat_row(
        "unary `Detect`, one image per call, one client, sequential",
        unary,
    );
    s += &lat_row(
        "`GetModelInfo` round trip (no model work: the gRPC + scheduling floor), same client",
        &r["service"]["get_model_info_ms"],
    );
    s += &lat_row(
        "streaming load (section 1): per request of 16 images, send to verdicts",
        &st["request_latency_ms"],
    );
    if !ex.is_null() {
        s += &lat_row(
            &format!("streaming load, server with {ex_search}: per request of 16 images"),
            &ex["request_latency_ms"],
        );
    }
    s += &format!(
        "\nUnder the streaming load {} streams x window {} x {} images = {} images are in flight at once, so a request's round \
         trip is about that many images divided by the throughput (Little's law), not a per-image cost. On a machine whose \
         load average exceeds its core count, every hand-off between threads (gRPC task, decode on rayon, the batcher, ONNX \
         Runtime, LOF on rayon, back) can wait for a time slice; the `GetModelInfo` row shows the part of the unary time that \
         has nothing to do with the model.\n",
        st["streams"],
        st["window"],
        st["batch"],
        st["streams"].as_u64().unwrap_or(0)
            * st["window"].as_u64().unwrap_or(0)
            * st["batch"].as_u64().unwrap_or(0),
    );
    let inside = &r["service"]["unary_inside_server_mean_ms"];
    if !inside["handler"].is_null() {
        let (handler, total) = (f(&inside["handler"]), f(&unary["mean"]));
        s += &format!(
            "\nWhere a unary call's time goes (means over the same {} calls; the server's own histograms, read from its \
             `/metrics` before and after): inside the server's handler {handler:.3} ms, of which preprocessing {:.3}, queue {:.3}, \
             ONNX Runtime {:.3} and LOF {:.3} ms, so {:.3} ms of hand-offs and bookkeeping; the other {:.3} ms of the {total:.3} ms \
             mean are the gRPC round trip and the client (the `GetModelInfo` mean is {:.3} ms).\n",
            unary["n"],
            f(&inside["preprocess"]),
            f(&inside["queue"]),
            f(&inside["embed"]),
            f(&inside["lof"]),
            handler
                - f(&inside["preprocess"])
                - f(&inside["queue"])
                - f(&inside["embed"])
                - f(&inside["lof"]),
            total - handler,
            f(&r["service"]["get_model_info_ms"]["mean"]),
        );
    }

    s += "\n## 5. Start-up, index build, memory\n\n";
    s += &format!(
        "- Process start to gRPC health `SERVING`, saved index: **{:.2} s** (health polled every 10 ms).\n",
        f(&r["service"]["startup_seconds"])
    );
    if r["index_build"].is_null() {
        s += "- Index build: not measured in this run (--skip-index-build).\n";
    } else {
        s += &format!(
            "- `oodgate index build --out TMP` (embed the 60,000 training images, exact kNN, LOF, HNSW graph, recall check, save): \
             **{:.1} s** wall clock. It printed: `{}`\n",
            f(&r["index_build"]["seconds"]),
            r["index_build"]["output"].as_str().unwrap_or("")
        );
    }
    s += &format!(
        "- Peak RSS of the service (`VmHWM`): {:.0} MiB after the streaming run, {:.0} MiB at the end (after the unary calls).\n",
        f(&r["service"]["vm_hwm_kb_after_stream"]) / 1024.0,
        f(&r["service"]["vm_hwm_kb"]) / 1024.0,
    );
    s += &scaling_markdown(&r["scaling"]);
    s += "\n## Method and caveats\n\n\
          - All figures come from one `oodgate bench` run; `target/bench/results.json` holds the raw numbers. \
          Ratios pair measurements taken minutes apart at most; the load average above shows how much other work shared the 2 cores.\n\
          - The pipeline limit is measured twice (before and after the service run) and averaged, so a change of load in between \
          shows as a gap between the two.\n\
          - The in-process limits run on preprocessed pixels; the service also decodes and preprocesses every image, and its \
          client (the replay library, in this process) shares the cores.\n\
          - The seed stack's batch figure adds three separately timed parts; its Keras weights are fresh (see section 3).\n\
          - On a shared machine one run is one sample: tail latencies (p99) and ratios near their goal can move between runs; \
          rerun `make bench` before drawing a conclusion from them.\n";
    s
}

/// The largest size's fastest HNSW row that still agrees with exact search on >= 99 % of
/// verdicts (or, if none does, its most accurate one).
fn scaling_goal(scaling: &Value) -> Option<(u64, Value)> {
    let largest = scaling["sizes"].as_array()?.last()?;
    let build = if largest["exact_build"].is_null() {
        &largest["graph_build"]
    } else {
        &largest["exact_build"]
    };
    let hnsw: Vec<&Value> = build["modes"]
        .as_array()?
        .iter()
        .filter(|m| !m["ef"].is_null())
        .collect();
    let pick = hnsw
        .iter()
        .filter(|m| f(&m["agreement_with_exact"]) >= 0.99)
        .max_by(|a, b| f(&a["speedup_vs_exact"]).total_cmp(&f(&b["speedup_vs_exact"])))
        .or_else(|| {
            hnsw.iter().max_by(|a, b| {
                f(&a["agreement_with_exact"]).total_cmp(&f(&b["agreement_with_exact"]))
            })
        })?;
    Some((largest["points"].as_u64()?, (*pick).clone()))
}

/// The scaling section's two kinds of build: (label, results.json key).
const BUILDS: [(&str, &str); 2] = [("exact", "exact_build"), ("graph", "graph_build")];

fn scaling_markdown(scaling: &Value) -> String {
    let mut s = String::from("\n## 6. How cost grows with the index\n\n");
    let Some(sizes) = scaling["sizes"].as_array() else {
        return s + "Not measured in this run.\n";
    };
    s += &format!(
        "LOF over training sets of growing size (k = {}), queried with {} embeddings sampled evenly from the three test sets; \
         verdicts at contamination {}, each index with its own threshold. Up to 60,000 points the training set is the model's \
         real training embeddings; beyond, synthetic points are added: real embeddings moved by Gaussian noise ({} of the \
         radius over sqrt(dim) per dimension) and put back on the sphere. Up to {} points every index is built twice: with \
         exact training neighbours (scikit-learn's fit) and with training neighbours searched on the HNSW graph (ef {}); larger \
         ones only from the graph, since the exact all-pairs pass grows with n squared. Size is the index artifact on disk \
         (embeddings, graph, LOF state), about what the service holds in memory. Each search's time is the best of {} runs over the \
         queries. Recall and agreement are with exact search on the same index: recall is the share of each query's k exact \
         neighbours that the search returned.\n\n\
         | points (synthetic) | build | build s | size MiB | search | queries/s | speed vs exact | recall@k | agreement with exact |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        scaling["k"],
        sizes.first().map_or(Value::Null, |r| r["queries"].clone()),
        scaling["contamination"],
        scaling["jitter"],
        scaling["exact_build_max"],
        scaling["build_ef"],
        scaling["runs"],
    );
    for size in sizes {
        for (label, key) in BUILDS {
            let build = &size[key];
            if build.is_null() {
                continue;
            }
            for mode in build["modes"].as_array().into_iter().flatten() {
                let (speed, recall, agree) = if mode["ef"].is_null() {
                    ("1x".to_string(), String::new(), String::new())
                } else {
                    (
                        format!("{:.1}x", f(&mode["speedup_vs_exact"])),
                        format!("{:.3}", f(&mode["recall_at_k"])),
                        format!("{:.2} %", 100.0 * f(&mode["agreement_with_exact"])),
                    )
                };
                s += &format!(
                    "| {} ({}) | {label} neighbours | {:.1} | {:.1} | {} | {:.0} | {speed} | {recall} | {agree} |\n",
                    size["points"],
                    size["synthetic"],
                    f(&build["build_seconds"]),
                    f(&build["artifact_bytes"]) / 1_048_576.0,
                    mode["search"].as_str().unwrap_or("?"),
                    f(&mode["queries_per_second"]),
                );
            }
        }
    }
    s += &format!(
        "\nHow many queries a small error in their neighbours can flip: the share whose exact score lies within {:.0} % of \
         the threshold. Where it is large, agreement stays low even at high recall: a query that misses a few of its \
         neighbours gets neighbours with other densities instead, and its score moves either way.\n\n",
        100.0 * f(&scaling["near"])
    );
    for size in sizes {
        for (label, key) in BUILDS {
            if let Some(exact) = size[key]["modes"].as_array().and_then(|m| m.first()) {
                s += &format!(
                    "- {} points, {label} neighbours: {:.1} %\n",
                    size["points"],
                    100.0 * f(&exact["near_threshold"])
                );
            }
        }
    }
    s += "\nTaking the training neighbours from the graph instead of the exact pass changes these verdicts (both indexes searched exactly):\n\n";
    for size in sizes {
        if let Some(a) = size["graph_build_agreement_with_exact_build"].as_f64() {
            s += &format!(
                "- {} points: {:.2} % agreement\n",
                size["points"],
                100.0 * a
            );
        }
    }
    s
}
