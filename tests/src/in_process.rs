//! The service inside the test process: `oodgate_server::serve::run` on port-0
//! listeners and a runtime of its own, stopped through its signal channel when dropped.
//!
//! Starts faster than the binary and needs no log scraping for its ports. What it cannot
//! stand in for: exit codes, Unix signals, the command line, the process's own memory,
//! and exact metric values (the Prometheus recorder is global to the process, so every
//! in-process server of one test binary counts into the same series).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oodgate_server::config::Config;
use oodgate_server::serve::{self, Listeners, Signal};

use crate::{Endpoints, ensure_index, workspace};

/// Settings that name files: relative ones are the workspace's, as for the binary run
/// from the workspace root. A gate's `dir` and `index` (`[gates.<name>]`) are too.
const PATH_SETTINGS: [(&str, &str); 8] = [
    ("model", "dir"),
    ("model", "ort_dylib_path"),
    ("index", "path"),
    ("index", "cache_dir"),
    ("tls", "cert"),
    ("tls", "key"),
    ("tls", "client_ca"),
    ("auth", "token_file"),
];

/// A running in-process service, shut down (gracefully) when dropped.
pub struct InProcessServer {
    endpoints: Endpoints,
    /// The service's signal channel: [`Signal::Shutdown`] on drop.
    signals: tokio::sync::mpsc::Sender<Signal>,
    /// The thread that owns the service's runtime; its result is `serve::run`'s.
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for InProcessServer {
    type Target = Endpoints;

    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

impl InProcessServer {
    /// Starts the service with the same `OODGATE_<SECTION>__<KEY>` settings
    /// [`crate::Server::start`] takes, written to a config file and read by
    /// [`Config::load`] as `oodgate --config` would; returns once the model and index
    /// are loaded.
    pub fn start(settings: &[(&str, &str)]) -> Self {
        ensure_index();
        install_metrics();
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("oodgate.toml");
        std::fs::write(&file, config_toml(settings)).expect("config file");
        let config = Config::load(Some(&file)).unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("oodgate.log");
        let dispatch = log_dispatch(&config, &log);

        let (signals, signals_rx) = tokio::sync::mpsc::channel(4);
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("oodgate-serve".into())
            .spawn(move || {
                let _logging = tracing::dispatcher::set_default(&dispatch);
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .on_thread_start(move || {
                        // For the life of each runtime thread: its logs go to this
                        // server's file, not to another server's of the same process.
                        std::mem::forget(tracing::dispatcher::set_default(&dispatch));
                    })
                    .build()?;
                let result = runtime.block_on(async {
                    let listeners = Listeners::bind(&config).await?;
                    let _ =
                        bound_tx.send((listeners.grpc.local_addr()?, listeners.http.local_addr()?));
                    serve::run(config, Some(file), listeners, signals_rx).await
                });
                // A task stuck past this would outlive the server anyway.
                runtime.shutdown_timeout(Duration::from_secs(10));
                result
            })
            .expect("the server's thread");
        let mut server = Self {
            endpoints: Endpoints {
                endpoint: String::new(),
                http: String::new(),
                log,
            },
            signals,
            thread: Some(thread),
            _dir: dir,
        };
        match bound_rx.recv() {
            Ok((grpc, http)) => {
                server.endpoints.endpoint = format!("http://{grpc}");
                server.endpoints.http = http.to_string();
            }
            Err(_) => server.failed("before it listened"),
        }
        server.wait_until_ready();
        server
    }

    /// Waits (up to 3 minutes, as for the binary) for the log's `ready` line.
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if self.log_text().lines().any(|l| l.ends_with("ready")) {
                return;
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                self.failed("before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "the in-process server is not ready after 3 minutes:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with how the service ended and its log.
    fn failed(&mut self, when: &str) -> ! {
        let ended = match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => format!("{e:#}"),
            Some(Ok(Ok(()))) => "returned".into(),
            Some(Err(_)) => "panicked".into(),
            None => "already ended".into(),
        };
        panic!(
            "the in-process server ended {when} ({ended}):\n{}",
            self.log_text()
        );
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        let _ = self.signals.try_send(Signal::Shutdown);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("the in-process server ended with an error: {e:#}"),
                Err(_) => eprintln!("the in-process server's thread panicked"),
            }
        }
    }
}

/// The recorder is installed once per process; doing it here, before any server
/// starts, keeps two servers starting at once from both trying.
fn install_metrics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        oodgate_server::metrics::install().expect("the metrics recorder");
    });
}

/// A subscriber writing the human log format to `log`, filtered as `oodgate serve`
/// filters (`RUST_LOG` or `log.level`, HNSW's chatter at warn).
fn log_dispatch(config: &Config, log: &Path) -> tracing::Dispatch {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},hnsw_rs=warn", config.log.level))
    });
    let file = std::fs::File::create(log).expect("log file");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Arc::new(file))
        .with_ansi(false)
        .finish()
        .into()
}

/// The config file for `settings` (`OODGATE_<SECTION>__<KEY>`, value), over what
/// [`crate::Server::start`] sets for the binary: port 0 on loopback, the human log
/// format. Values are written as TOML strings, which the config crate converts to
/// numbers and booleans as it does the environment's; file settings are made absolute
/// against the workspace.
pub fn config_toml(settings: &[(&str, &str)]) -> String {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let defaults = [
        ("OODGATE_SERVER__GRPC_ADDR", "127.0.0.1:0"),
        ("OODGATE_SERVER__HTTP_ADDR", "127.0.0.1:0"),
        ("OODGATE_LOG__FORMAT", "human"),
        crate::ONLY_DIGITS,
    ];
    for (name, value) in defaults.iter().chain(settings) {
        // OODGATE_GATES__PLAIN__DIR is `dir` in the table `[gates.plain]`.
        let (section, key) = name
            .strip_prefix("OODGATE_")
            .and_then(|rest| rest.rsplit_once("__"))
            .unwrap_or_else(|| {
                panic!("{name}: an in-process server takes only OODGATE_<SECTION>__<KEY> settings")
            });
        let section = section.to_lowercase().replace("__", ".");
        let key = key.to_lowercase();
        let is_path = PATH_SETTINGS.contains(&(section.as_str(), key.as_str()))
            || (section.starts_with("gates.") && (key == "dir" || key == "index"));
        let value = if is_path && !value.is_empty() {
            workspace().join(value).display().to_string()
        } else {
            (*value).to_owned()
        };
        sections.entry(section).or_default().insert(key, value);
    }
    // The defaults' relative folders, absolute: the test process does not run in the
    // workspace root as the binary does.
    let config = Config::default();
    let gate_dirs = config
        .gates
        .iter()
        .map(|(name, gate)| (format!("gates.{name}"), "dir", &gate.dir));
    for (section, key, path) in [
        ("model".to_owned(), "dir", &config.model.dir),
        ("index".to_owned(), "cache_dir", &config.index.cache_dir),
    ]
    .into_iter()
    .chain(gate_dirs)
    {
        sections
            .entry(section)
            .or_default()
            .entry(key.into())
            .or_insert_with(|| workspace().join(path).display().to_string());
    }
    let mut toml = String::new();
    for (section, keys) in sections {
        toml.push_str(&format!("[{section}]\n"));
        for (key, value) in keys {
            // A JSON string is a valid TOML basic string.
            let quoted = serde_json::to_string(&value).expect("a string");
            toml.push_str(&format!("{key} = {quoted}\n"));
        }
    }
    toml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_load_as_the_environment_would_give_them() {
        let toml = config_toml(&[
            ("OODGATE_SERVER__MAX_IMAGES_PER_REQUEST", "8"),
            ("OODGATE_INDEX__CONTAMINATION", "0.05"),
            ("OODGATE_INDEX__DISTANCE_CHECK", "false"),
            ("OODGATE_INDEX__SEARCH", "exact"),
            ("OODGATE_AUTH__TOKEN", "12345"),
            ("OODGATE_TLS__CERT", "certs/server.pem"),
            ("OODGATE_TLS__KEY", "certs/server.key"),
            ("OODGATE_GATES__PLAIN__DIR", "models/mnist-plain"),
            ("OODGATE_GATES__PLAIN__ENABLED", "false"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("oodgate.toml");
        std::fs::write(&file, &toml).unwrap();
        let config = Config::load(Some(&file)).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        assert_eq!(config.server.max_images_per_request, 8);
        assert_eq!(config.index.contamination, 0.05);
        assert!(!config.index.distance_check);
        assert_eq!(
            config.index.search,
            oodgate_server::config::SearchMode::Exact
        );
        assert_eq!(config.auth.token, "12345");
        assert_eq!(config.server.grpc_addr, "127.0.0.1:0");
        assert_eq!(config.tls.cert, workspace().join("certs/server.pem"));
        assert_eq!(
            config.model.dir,
            workspace().join(Config::default().model.dir)
        );
        assert!(config.index.cache_dir.is_absolute());
        let plain = &config.gates["plain"];
        assert_eq!(plain.dir, workspace().join("models/mnist-plain"));
        assert!(!plain.enabled);
    }
}
