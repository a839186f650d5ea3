//! Helpers for the end-to-end tests: where the workspace, the built binaries and the
//! project's Python are; servers to test (the `oodgate` binary, or the service inside the
//! test process); requests, datasets and metrics. The tests themselves are in
//! `tests/tests/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub mod bad_images;
mod in_process;

pub use in_process::{InProcessServer, config_toml};

/// `oodgate export-embeddings` (with `env` set) into `out`, then scikit-learn's
/// `LocalOutlierFactor(novelty=True)`, k = 20, on the exported training and query
/// embeddings at `contaminations` (`tests/python/sklearn_lof.py`), written to
/// `out/sklearn`. Returns what the script printed.
pub fn export_and_run_sklearn(out: &Path, env: &[(&str, &str)], contaminations: &[&str]) -> String {
    let root = workspace();
    run(Command::new(binary("oodgate"))
        .current_dir(&root)
        .envs(env.iter().copied())
        .arg("export-embeddings")
        .arg("--out")
        .arg(out));
    run(Command::new(python())
        .arg(root.join("tests/python/sklearn_lof.py"))
        .args(["--k", "20", "--contamination"])
        .args(contaminations)
        .arg("--train")
        .arg(out.join("train.npy"))
        .arg("--queries")
        .arg(out.join("queries.npy"))
        .arg("--out")
        .arg(out.join("sklearn")))
}

/// An `.npy` array, failing loudly with the path.
pub fn read_npy<T: ndarray_npy::ReadNpyExt>(path: &Path) -> T {
    T::read_npy(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

/// The workspace root (models/, .venv/, .cache/ are relative to it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A binary of the workspace, built by `make test` (`cargo build --release`) next to
/// this test executable. Fails loudly when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join(name);
    assert!(
        path.is_file(),
        "{} not built: run `cargo build --release --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// The project's Python (`.venv`, made by `scripts/setup.sh test`).
pub fn python() -> PathBuf {
    let path = workspace().join(".venv/bin/python");
    assert!(
        path.is_file(),
        "{} missing: run `scripts/setup.sh test` (make test does)",
        path.display()
    );
    path
}

/// Runs a command to completion; panics with its output when it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Where a running server answers and logs, whichever way it runs ([`Server`],
/// [`InProcessServer`]); both dereference to it.
pub struct Endpoints {
    /// `http://127.0.0.1:<port>` of the gRPC side.
    pub endpoint: String,
    /// `127.0.0.1:<port>` of the HTTP side.
    pub http: String,
    /// The server's log, for failure messages.
    pub log: PathBuf,
}

/// A running `oodgate serve` on a free loopback port, killed when dropped.
pub struct Server {
    child: std::process::Child,
    endpoints: Endpoints,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Server {
    type Target = Endpoints;

    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

/// The tests serve the digits gate alone unless they say otherwise (the default config
/// also serves the Fashion-MNIST gate; `tests/tests/gates.rs` checks that).
pub const ONLY_DIGITS: (&str, &str) = ("OODGATE_GATES__FASHION__ENABLED", "false");

impl Server {
    /// Starts the server with the committed default model, the index cached under
    /// `.cache/index` (built once per test binary), and `OODGATE_...` overrides;
    /// returns once its log says it is ready (model and index loaded).
    pub fn start(settings: &[(&str, &str)]) -> Self {
        ensure_index();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("oodgate.log");
        let mut command = Command::new(binary("oodgate"));
        command
            .current_dir(workspace())
            .arg("serve")
            .env("OODGATE_SERVER__GRPC_ADDR", "127.0.0.1:0")
            .env("OODGATE_SERVER__HTTP_ADDR", "127.0.0.1:0")
            .env("OODGATE_LOG__FORMAT", "human")
            .env(ONLY_DIGITS.0, ONLY_DIGITS.1)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (key, value) in settings {
            command.env(key, value);
        }
        let child = command.spawn().expect("start oodgate serve");
        let mut server = Self {
            child,
            endpoints: Endpoints {
                endpoint: String::new(),
                http: String::new(),
                log,
            },
            _dir: dir,
        };
        server.endpoints.endpoint = format!(
            "http://{}",
            server.wait_for_log(|l| l.contains("gRPC listening"), "addr=")
        );
        server.endpoints.http = server.wait_for_log(|l| l.contains("HTTP listening"), "addr=");
        server.wait_for_log(|l| l.ends_with("ready"), "");
        server
    }

    /// Waits (up to 3 minutes) for a log line matching `line`; returns the text after
    /// `field` on it, up to the next space.
    fn wait_for_log(&mut self, line: impl Fn(&str) -> bool, field: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let text = self.log_text();
            if let Some(found) = text.lines().find(|l| line(l)) {
                let value = found.split(field).nth(1).unwrap_or("");
                return value.split_whitespace().next().unwrap_or("").to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("oodgate serve exited ({status}) before it was ready:\n{text}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "oodgate serve not ready after 3 minutes:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        run(Command::new("kill").args(["-TERM", &pid]));
        self.child.wait().expect("wait for oodgate")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the default model's index once per test binary, so concurrently starting
/// servers find it instead of each building it.
pub fn ensure_index() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        if !index_path().is_file() {
            run(Command::new(binary("oodgate"))
                .current_dir(workspace())
                .args(["index", "build"]));
        }
    });
}

/// Where the default model's index is cached.
fn index_path() -> PathBuf {
    let config = oodgate_server::config::Config::default();
    let model = oodgate_server::ModelFiles::load(&workspace().join(&config.model.dir))
        .expect("the default model");
    workspace().join(oodgate_server::load::index_path(&config, &model))
}

/// The cached index of the default model (built once if missing).
pub fn default_index() -> PathBuf {
    ensure_index();
    index_path()
}

// ---- Process-level helpers for the reliability tests (startup_errors,
// ---- overload_cancel_shutdown, soak).

impl Server {
    /// The server's process id (for /proc/<pid>/status and signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM without waiting (the server keeps its handle; see [`Server::wait_exit`]).
    pub fn send_sigterm(&self) {
        run(Command::new("kill").args(["-TERM", &self.pid().to_string()]));
    }

    /// Waits at most `timeout` for the process to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's resident set size in kB (VmRSS of /proc/<pid>/status).
    pub fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

/// An `oodgate serve` run that is expected to fail at start: its exit status and stderr.
/// Killed (and reported as such) if it has not exited within `timeout`.
pub fn serve_expecting_failure(
    args: &[&str],
    settings: &[(&str, &str)],
    timeout: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("stderr");
    let mut command = Command::new(binary("oodgate"));
    command
        .current_dir(workspace())
        .args(args)
        .arg("serve")
        .env("OODGATE_SERVER__GRPC_ADDR", "127.0.0.1:0")
        .env("OODGATE_SERVER__HTTP_ADDR", "127.0.0.1:0")
        .env("OODGATE_LOG__FORMAT", "human")
        .env(ONLY_DIGITS.0, ONLY_DIGITS.1)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"));
    for (key, value) in settings {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start oodgate serve");
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

// ---- What a test does with a running server, either kind.

impl Endpoints {
    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` on the HTTP side; the body (panics on a transport error or non-2xx).
    pub fn http_get(&self, path: &str) -> String {
        let mut response = ureq::get(&format!("http://{}{path}", self.http))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        response.body_mut().read_to_string().expect("body")
    }

    /// The replay client's gRPC client, connected to the server.
    pub async fn client(&self) -> oodgate_replay::replay::Client {
        oodgate_replay::replay::connect(&self.endpoint)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e:#}", self.endpoint))
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.http_get("/metrics")
    }

    /// Streams `sets` through the server with the replay client (failing loudly) and
    /// summarises what it answered.
    pub fn replay(
        &self,
        sets: &std::sync::Arc<Vec<oodgate_replay::ReplaySet>>,
        options: oodgate_replay::ReplayOptions,
    ) -> oodgate_replay::Summary {
        let replay = runtime()
            .block_on(oodgate_replay::replay(
                &self.endpoint,
                sets.clone(),
                options,
            ))
            .unwrap_or_else(|e| panic!("replay: {e:#}\n{}", self.log_text()));
        oodgate_replay::Summary::new(&replay, sets, None)
    }

    /// Polls `/metrics` (every 50 ms, at most `timeout`) until `series` satisfies `ok`;
    /// its last value (None if absent) and whether `ok` held.
    pub fn wait_for_metric(
        &self,
        series: &str,
        ok: impl Fn(f64) -> bool,
        timeout: Duration,
    ) -> (Option<f64>, bool) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let value = metric_value(&self.metrics(), series);
            if value.is_some_and(&ok) {
                return (value, true);
            }
            if std::time::Instant::now() >= deadline {
                return (value, false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The value of a series that must be in the Prometheus text (see [`metric_value`]);
/// panics with the text when it is absent.
pub fn metric(metrics: &str, series: &str) -> f64 {
    metric_value(metrics, series).unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

/// The value of one series (`name{labels}` exactly as exported, or a bare name) in
/// Prometheus text; None when absent.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        // The name must end here: `foo` must not match `foo_total`.
        if !rest.starts_with(' ') {
            return None;
        }
        rest.trim().parse().ok()
    })
}

/// The last `lines` lines of `text` (a server log's end, for failure messages).
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<_> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- Clients, requests and data.

/// A Tokio runtime for the async clients (gRPC, replay) of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

/// An HTTP client that hands back 4xx and 5xx answers instead of failing on them,
/// with `tls` for HTTPS.
pub fn http_agent(tls: Option<ureq::tls::TlsConfig>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder().http_status_as_error(false);
    if let Some(tls) = tls {
        config = config.tls_config(tls);
    }
    config.build().new_agent()
}

/// A program on PATH, or a failure saying how to get it.
pub fn program(name: &str, hint: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found on PATH: {hint}"))
}

/// Writes `contents` to `dir/name`; the path as a string (for settings and arguments).
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// An image of raw pixels, as a client sends it.
pub fn raw_image(
    id: &str,
    width: u32,
    height: u32,
    channels: u32,
    pixels: Vec<u8>,
) -> oodgate_proto::v1::Image {
    oodgate_proto::v1::Image {
        id: id.into(),
        data: Some(oodgate_proto::v1::image::Data::Raw(
            oodgate_proto::v1::RawPixels {
                width,
                height,
                channels,
                pixels,
            },
        )),
    }
}

/// A `Detect` request (no source), with a threshold or the server's default.
pub fn detect_request(
    images: Vec<oodgate_proto::v1::Image>,
    threshold: Option<oodgate_proto::v1::threshold::Kind>,
) -> oodgate_proto::v1::DetectRequest {
    oodgate_proto::v1::DetectRequest {
        images,
        threshold: threshold.map(|kind| oodgate_proto::v1::Threshold { kind: Some(kind) }),
        source: String::new(),
        gate: String::new(),
    }
}

/// A request of `count` MNIST digits from `offset` on (wrapping), ids `<prefix>-<n>`.
pub fn digits_request(
    mnist: &oodgate_datasets::Dataset,
    prefix: &str,
    offset: usize,
    count: usize,
) -> oodgate_proto::v1::DetectRequest {
    let images = (0..count)
        .map(|n| {
            let i = (offset + n) % mnist.len();
            raw_image(&format!("{prefix}-{n}"), 28, 28, 1, mnist.image(i).to_vec())
        })
        .collect();
    detect_request(images, None)
}

/// A request of one MNIST test digit (the first), id `d`.
pub fn digit_request() -> oodgate_proto::v1::DetectRequest {
    let pixels = mnist_test().image(0).to_vec();
    detect_request(vec![raw_image("d", 28, 28, 1, pixels)], None)
}

/// The data folder (`OODGATE_DATA_DIR` or the cache).
pub fn data() -> oodgate_datasets::DataDir {
    oodgate_datasets::DataDir::from_env().expect("datasets (set OODGATE_DATA_DIR or run make data)")
}

/// The MNIST test set from the data folder.
pub fn mnist_test() -> oodgate_datasets::Dataset {
    data()
        .mnist(oodgate_datasets::Split::Test)
        .expect("MNIST test set")
}

/// The sample at quantile `p` of `samples` (sorted here; the nearest rank, rounded),
/// zero when there are none.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}
