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
//! service binary over loopback gRPC: start-up, streaming, unary latency, peak RSS
//! (with the default gate alone, as every service run but the next); two gates in one
//! server streamed at once, next to one gate ([`two_gates`]); index build time; (6) how
//! LOF cost grows with the index ([`scaling`]); the default gate's int8 model next to
//! its fp32 model ([`int8`]).
//! `--quick` runs every stage on small inputs, so CI can check that the harness works
//! (its timings are not judged).

mod in_process;
mod index_build;
mod int8;
mod markdown;
pub(crate) mod results;
mod scaling;
mod seed;
mod service;
#[cfg(test)]
mod tests;
mod two_gates;
mod unary;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use oodgate_lof::SearchMode;
use oodgate_server::Detector;
use oodgate_server::config::Config;

use in_process::TestImages;
pub(crate) use markdown::markdown;
use results::{BenchResults, Machine, StageLoad};

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
/// Images of each set in the two-gate stage with `--quick`.
const QUICK_GATE_IMAGES: usize = 2000;

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

/// The load average at the start of each stage, in order.
#[derive(Default)]
struct Log {
    loads: Vec<StageLoad>,
}

impl Log {
    fn stage(&mut self, name: &str) {
        let load = loadavg();
        eprintln!("bench: {name} (load average {load})");
        self.loads.push(StageLoad {
            stage: name.to_owned(),
            load,
        });
    }
}

/// What the stages that start processes share.
struct Context<'a> {
    config_file: Option<&'a Path>,
    /// The scratch folder, absolute.
    work: PathBuf,
    detector: Detector,
    images: TestImages,
    /// The default gate's name.
    default_gate: String,
    /// The configuration's other gates (`[gates.*]`), served or not.
    other_gates: Vec<String>,
}

impl Context<'_> {
    /// The environment that serves the default gate and, of the others, just `served`.
    fn gates_env(&self, served: &[&str]) -> Vec<(String, String)> {
        self.other_gates
            .iter()
            .map(|name| {
                let on = served.contains(&name.as_str());
                (
                    format!("OODGATE_GATES__{}__ENABLED", name.to_uppercase()),
                    on.to_string(),
                )
            })
            .collect()
    }
}

/// Writes the report again from a saved results.json (after a change to the layout).
pub fn rewrite(results: &Path, out: &Path) -> anyhow::Result<()> {
    let results: BenchResults = serde_json::from_slice(&std::fs::read(results)?)?;
    std::fs::write(out, markdown(&results))?;
    Ok(())
}

/// Runs every stage in turn, then writes `results.json` to the work folder and the
/// report to `--out`.
pub fn run(
    config: &Config,
    config_file: Option<&Path>,
    options: &BenchOptions,
) -> anyhow::Result<()> {
    let run_started = Instant::now();
    // Checked first: the stage comes late in a long run.
    anyhow::ensure!(
        config.gates.contains_key(two_gates::SECOND_GATE),
        "the bench's two-gate stage serves the gate {:?}, which the configuration does not have ([gates.{0}])",
        two_gates::SECOND_GATE
    );
    let options = &options.effective();
    std::fs::create_dir_all(&options.work)?;
    let work = options.work.canonicalize()?;
    let mut log = Log::default();
    let date = shell("date -u '+%Y-%m-%d %H:%M UTC'");

    log.stage("load model and index");
    let mut detector = oodgate_server::load::detector(config, &config.default_gate())?;
    // The report compares both search modes, whichever the configuration serves.
    if !detector.index.has_graph() {
        log.stage("HNSW graph for the comparison of search modes");
        detector.index.add_graph(false)?;
    }
    let model = in_process::model_info(config, &detector);
    let alternative = alternative_search(&detector);
    log.stage("load and preprocess the test sets");
    let (images, preprocess) = TestImages::load(&detector)?;
    log.stage("embed the test sets");
    let queries = in_process::embed_and_export(&detector, &images, &work)?;
    let ctx = Context {
        config_file,
        work,
        detector,
        images,
        default_gate: config.model.gate.clone(),
        other_gates: config.gates.keys().cloned().collect(),
    };
    let (detector, images) = (&ctx.detector, &ctx.images);

    // ---- 1. Limits in one process --------------------------------------------------------
    log.stage("ONNX Runtime sweep");
    let ort = in_process::ort_sweep(detector, images, options.ort_images)?;
    log.stage("LOF alone");
    let max_batch = config.batching.max_batch_size;
    let lof_alone = in_process::lof_alone(
        detector,
        &queries,
        ort.images,
        [detector.search, alternative.0],
        ort.best_batch,
        max_batch,
    )?;
    log.stage("pipeline limit (embed + LOF), first measurement");
    // The ONNX Runtime sweep's best batch, and the service's largest (LOF prefers
    // large batches): the limit is the better of the two. Measured again after the
    // service run.
    let mut limit_batches = vec![ort.best_batch, max_batch];
    limit_batches.dedup();
    let limit_before =
        in_process::pipeline_limit(detector, images, &limit_batches, detector.search)?;
    log.stage("in-process single image");
    let picks = images.picks(options.single);
    let in_process_single_ms = in_process::single_images(detector, images, &picks)?;

    // ---- 2, 3. LOF modes on all queries; scikit-learn and Keras --------------------------
    log.stage("oodgate LOF on 30,000 queries");
    let lof_runs = in_process::lof_runs(detector, &queries)?;
    let seed = if options.skip_seed {
        None
    } else {
        log.stage("Python: scikit-learn LOF and Keras (seed stack)");
        Some(seed::run(options, &ctx.work)?)
    };
    let lof_vs_sklearn = in_process::lof_comparison(
        &lof_runs,
        detector.index.offset(CONTAMINATION)?,
        seed.as_ref().map(|s| (&s.seed, &s.sklearn_scores)),
    );
    let in_process_scores = |mode: SearchMode| {
        lof_runs
            .iter()
            .find(|run| run.mode == mode)
            .map(|run| run.scores.as_slice())
    };

    // ---- 1, 4, 5. The service over loopback gRPC -----------------------------------------
    let replayer = service::Replayer::new()?;
    let service = service::configured(
        &ctx,
        &replayer,
        &picks,
        in_process_scores(detector.search),
        &mut log,
    )?;
    let unary_transports = unary::run(&ctx, config, &replayer, &picks, &mut log)?;
    log.stage("pipeline limit (embed + LOF), second measurement");
    let limit_after =
        in_process::pipeline_limit(detector, images, &limit_batches, detector.search)?;
    let pipeline_limit = limit_before.and_after(limit_after, &limit_batches, images.total);
    log.stage("pipeline limit with the other search mode");
    let alternative_limit =
        in_process::pipeline_limit(detector, images, &limit_batches, alternative.0)?;
    log.stage("service with the other search mode: start and stream");
    let service_alternative = service::alternative(
        &ctx,
        &replayer,
        alternative,
        alternative_limit.images_per_second,
        in_process_scores(alternative.0),
    )?;

    // ---- 5a. Two gates in one server, next to one gate ---------------------------------
    let two_gates = two_gates::run(
        &ctx,
        &replayer,
        options.quick.then_some(QUICK_GATE_IMAGES),
        &mut log,
    )?;

    // ---- 5c. The int8 model next to fp32 -------------------------------------------------
    let int8 = int8::run(
        config,
        &ctx,
        &replayer,
        options.ort_images,
        options.quick,
        &mut log,
    )?;

    // ---- 5b. Index build ---------------------------------------------------------------
    let (index_build, first_start) = if options.skip_index_build {
        (None, None)
    } else {
        log.stage("index build, without and with the HNSW graph");
        let build = index_build::run(config_file, &ctx.work)?;
        log.stage("first start with no index cached");
        let first = index_build::first_start(&ctx, &[two_gates::SECOND_GATE])?;
        (Some(build), Some(first))
    };

    // ---- 6. How cost grows with the index ----------------------------------------------
    log.stage("scaling: LOF query, build and size against index size");
    let step = (images.total / options.scaling_queries.max(1)).max(1);
    let sample: Vec<usize> = (0..images.total).step_by(step).collect();
    let scaling_queries = queries.select(ndarray::Axis(0), &sample);
    let scaling = scaling::run(
        detector.index.embeddings(),
        detector.index.labels(),
        scaling_queries.view(),
        &options.scaling_sizes,
        detector.index.k(),
        CONTAMINATION,
        &ctx.work,
    )?;
    log.stage("done");

    let results = BenchResults {
        command: options.command.clone(),
        quick: options.quick,
        total_seconds: run_started.elapsed().as_secs_f64(),
        machine: machine(config, date, log),
        model,
        preprocess,
        ort,
        lof_alone,
        pipeline_limit,
        in_process_single_ms,
        lof_vs_sklearn,
        seed: seed.map(|s| s.seed),
        service,
        service_alternative: Some(service_alternative),
        two_gates: Some(two_gates),
        index_build,
        first_start,
        scaling: Some(scaling),
        int8,
        unary_transports: Some(unary_transports),
    };
    let results_path = ctx.work.join("results.json");
    std::fs::write(&results_path, serde_json::to_string_pretty(&results)?)?;
    std::fs::write(&options.out, markdown(&results))?;
    eprintln!(
        "bench: wrote {} and {}",
        options.out.display(),
        results_path.display()
    );
    Ok(())
}

/// The search mode the report compares with the configured one, and the
/// `index.search` setting that selects it.
fn alternative_search(detector: &Detector) -> (SearchMode, &'static str) {
    match detector.search {
        SearchMode::Exact => (
            SearchMode::Hnsw {
                ef: detector.index.hnsw_params().ef_search,
            },
            "hnsw",
        ),
        SearchMode::Hnsw { .. } => (SearchMode::Exact, "exact"),
    }
}

fn machine(config: &Config, date: String, log: Log) -> Machine {
    let onnxruntime = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| config.model.ort_dylib_path.clone());
    Machine {
        date,
        cpu: shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        cores: shell("nproc"),
        memory: shell("grep MemTotal /proc/meminfo | awk '{print $2/1048576 \" GiB\"}'"),
        kernel: shell("uname -sr"),
        onnxruntime: onnxruntime
            .file_name()
            .map(|f| f.to_string_lossy().to_string()),
        rustc: shell("rustc --version"),
        git: shell("git describe --always --dirty"),
        loads: log.loads,
    }
}
