//! Configuration: defaults, then an optional TOML file, then `OODGATE_...` variables.
//!
//! `OODGATE_MODEL__DIR=models/mnist-plain` sets `model.dir`; the double underscore
//! separates sections because names contain single underscores
//! (`OODGATE_GATES__FASHION__ENABLED=false` turns the gate `fashion` off).
//!
//! Gates: `model.dir` is the default gate's folder (named `model.gate`); `[gates.<name>]`
//! adds more. [`Config::gates`] lists the ones served.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::api::security::{AuthConfig, TlsConfig};
use crate::core::embed::SessionOptions;
use crate::core::model::ModelVariant;
use crate::core::preprocess::Limits;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    /// Gates besides the default one, by name.
    // `default`: the config crate drops empty tables from the defaults layer.
    #[serde(default)]
    pub gates: BTreeMap<String, GateEntry>,
    pub index: IndexConfig,
    pub server: ServerConfig,
    pub batching: BatchingConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The default gate's folder: model.onnx, classes.json and card.json.
    pub dir: PathBuf,
    /// The default gate's name: requests that name no gate go to it.
    pub gate: String,
    /// Which ONNX file of the folder to serve: "fp32" (or "") `model.onnx`, "int8"
    /// `model.int8.onnx` (`make int8` writes it).
    #[serde(default)]
    pub variant: ModelVariant,
    /// libonnxruntime.so; empty means the `ORT_DYLIB_PATH` variable.
    pub ort_dylib_path: PathBuf,
    /// ONNX Runtime intra-op threads.
    pub intra_threads: usize,
    /// Graph optimisation level, 0 (none) to 3 (all).
    pub optimization_level: u8,
    /// Let idle ONNX Runtime threads spin for the next run. Off: between runs they
    /// would take the cores that LOF scoring, decoding and gRPC need.
    pub intra_spinning: bool,
    /// Batches of at most this many images run on a second ONNX Runtime session with
    /// one intra-op thread (a lone image: no hand-offs between threads); 0: off.
    pub small_batch_max: usize,
}

/// One more gate: a model folder served beside the default one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateEntry {
    /// The gate's folder (model.onnx, classes.json, optional card.json and gate.toml).
    pub dir: PathBuf,
    /// Its index artifact, as `index.path` is the default gate's; empty: the cache.
    #[serde(default)]
    pub index: PathBuf,
    /// As `model.variant` is the default gate's.
    #[serde(default)]
    pub variant: ModelVariant,
    /// Off: kept in the file but not served.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

/// A gate to serve: its name, its folder and its index artifact (empty: the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateSpec {
    pub name: String,
    pub dir: PathBuf,
    pub index_path: PathBuf,
    pub variant: ModelVariant,
}

impl GateSpec {
    /// The setting that chose the gate's variant, for errors.
    pub fn variant_field(&self, config: &Config) -> String {
        if self.name == config.model.gate {
            "model.variant".into()
        } else {
            format!("gates.{}.variant", self.name)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Neighbours from the HNSW graph.
    Hnsw,
    /// Brute-force neighbours: scikit-learn's exact answer.
    Exact,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// The index artifact; empty means `<cache_dir>/<model name>-<model hash prefix>-k<k>.lof`,
    /// built from the MNIST training images on first start.
    pub path: PathBuf,
    /// Where built indexes are cached when `path` is empty.
    pub cache_dir: PathBuf,
    /// LOF neighbours.
    pub k: usize,
    /// Default threshold: the fraction of training images LOF calls outliers (and, with
    /// `distance_check`, the fraction whose k-distance the distance part exceeds).
    pub contamination: f64,
    /// Also reject an image whose k-th nearest training image is farther than the
    /// training images' own k-distances at the contamination (README, "The detector").
    pub distance_check: bool,
    pub search: SearchMode,
    /// HNSW search breadth (higher: better recall, slower).
    pub ef: usize,
    /// HNSW graph degree and build breadth.
    pub hnsw_m: usize,
    pub hnsw_ef_construction: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// host:port; port 0 picks a free port (the log says which).
    pub grpc_addr: String,
    /// The HTTP side: /metrics, /healthz, /readyz.
    pub http_addr: String,
    /// A Unix-domain socket serving gRPC too, for callers on the same host (a sidecar):
    /// no TCP stack on the way. Empty: none. Plaintext whatever `tls` says.
    pub grpc_uds: PathBuf,
    /// The same for the HTTP side. Empty: none.
    pub http_uds: PathBuf,
    /// Largest number of images in one request.
    pub max_images_per_request: usize,
    /// Largest width or height of an image, raw or decoded.
    pub max_image_side: u32,
    /// Largest width x height of an image, raw or decoded (decompression bombs stop here:
    /// the size is read from the header before decoding).
    pub max_image_pixels: u64,
    /// Largest gRPC message, in bytes (requests over it get RESOURCE_EXHAUSTED).
    pub max_message_bytes: usize,
    /// Requests of one stream processed at once; their verdicts still leave in order.
    pub stream_pipeline_depth: usize,
    /// On SIGTERM/SIGINT, how long in-flight work may take before the process exits anyway.
    pub shutdown_grace_seconds: u64,
    /// Allowed values of the request's `source` label for metrics; others count as
    /// "other". Empty: the first `max_sources` distinct labels seen are kept.
    // `default`: the config crate drops empty lists from the defaults layer.
    #[serde(default)]
    pub sources: Vec<String>,
    pub max_sources: usize,
    /// DetectStream calls open at once, server-wide (also HTTP/2's per-connection limit);
    /// past it, RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Longest time one request (one batch) may take; 0: no limit. Clients' own
    /// deadlines (grpc-timeout) apply too.
    pub request_timeout_seconds: f64,
}

/// Dynamic batching: images from all requests are merged into model runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// Most images per ONNX Runtime call.
    pub max_batch_size: usize,
    /// How long the first waiting image may wait for others to fill the batch.
    pub max_wait_micros: u64,
    /// Images admitted (queued or being embedded) at once, split evenly between the
    /// gates; past a gate's share, RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `oodgate=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

/// Where the core has a default of its own, the configuration's is that one.
impl Default for Config {
    fn default() -> Self {
        let session = SessionOptions::default();
        let hnsw = oodgate_lof::HnswParams::default();
        let limits = Limits::default();
        Self {
            model: ModelConfig {
                dir: PathBuf::from("models/mnist-cosface-oe-near-fonts"),
                gate: "digits".into(),
                variant: ModelVariant::Fp32,
                ort_dylib_path: PathBuf::new(),
                intra_threads: session.intra_threads,
                optimization_level: session.optimization_level,
                intra_spinning: session.intra_spinning,
                small_batch_max: session.small_batch_max,
            },
            // Served beside the digits by default; `[gates.fashion] enabled = false`
            // (or OODGATE_GATES__FASHION__ENABLED=false) serves the digits alone.
            gates: BTreeMap::from([(
                "fashion".to_owned(),
                GateEntry {
                    dir: PathBuf::from("models/fashion-cosface"),
                    index: PathBuf::new(),
                    variant: ModelVariant::Fp32,
                    enabled: true,
                },
            )]),
            index: IndexConfig {
                path: PathBuf::new(),
                cache_dir: PathBuf::from(".cache/index"),
                k: 20,
                contamination: 0.01,
                distance_check: true,
                search: SearchMode::Exact,
                ef: hnsw.ef_search,
                hnsw_m: hnsw.max_nb_connection,
                hnsw_ef_construction: hnsw.ef_construction,
            },
            server: ServerConfig {
                grpc_addr: "127.0.0.1:50051".into(),
                http_addr: "127.0.0.1:8080".into(),
                grpc_uds: PathBuf::new(),
                http_uds: PathBuf::new(),
                max_images_per_request: 1024,
                max_image_side: limits.max_side,
                max_image_pixels: limits.max_pixels,
                max_message_bytes: 16 * 1024 * 1024,
                stream_pipeline_depth: 4,
                shutdown_grace_seconds: 30,
                sources: Vec::new(),
                max_sources: 32,
                max_streams: 1024,
                request_timeout_seconds: 30.0,
            },
            batching: BatchingConfig {
                max_batch_size: 256,
                max_wait_micros: 2000,
                queue_capacity: 8192,
            },
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig {
                format: LogFormat::Human,
                level: "info".into(),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// The configuration as it may be logged: secrets replaced.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        if !shown.auth.token.is_empty() {
            shown.auth.token = "<redacted>".into();
        }
        shown
    }

    /// The gates to serve: the default one first, then the enabled `[gates.*]` by name.
    pub fn gates(&self) -> Vec<GateSpec> {
        let default = self.default_gate();
        let more = self
            .gates
            .iter()
            .filter(|(_, entry)| entry.enabled)
            .map(|(name, entry)| GateSpec {
                name: name.clone(),
                dir: entry.dir.clone(),
                index_path: entry.index.clone(),
                variant: entry.variant,
            });
        std::iter::once(default).chain(more).collect()
    }

    /// The default gate: `model.gate` in `model.dir`, its index `index.path`.
    pub fn default_gate(&self) -> GateSpec {
        GateSpec {
            name: self.model.gate.clone(),
            dir: self.model.dir.clone(),
            index_path: self.index.path.clone(),
            variant: self.model.variant,
        }
    }

    /// The gate named `name` as this configuration serves it, if it does.
    pub fn gate(&self, name: &str) -> Option<GateSpec> {
        self.gates().into_iter().find(|gate| gate.name == name)
    }

    /// Defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, std::env::vars())
    }

    /// [`Config::load`] with `vars` for the environment.
    fn load_with(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let defaults = config::Config::try_from(&Config::default())?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        // Only `OODGATE_<SECTION>__<KEY>` variables are settings; others with the same
        // prefix (OODGATE_DATA_DIR, OODGATE_CONFIG, ...) belong to other parts.
        let settings: config::Map<String, String> = vars
            .into_iter()
            .filter(|(k, _)| {
                k.strip_prefix("OODGATE_")
                    .is_some_and(|rest| rest.contains("__"))
            })
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("OODGATE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("server.sources")
                .source(Some(settings)),
        );
        let config: Config = builder.build()?.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.index.k == 0 {
            return bad("index.k must be at least 1".into());
        }
        if !(self.index.contamination > 0.0 && self.index.contamination <= 0.5) {
            return bad(format!(
                "index.contamination must be in (0, 0.5], got {}",
                self.index.contamination
            ));
        }
        if self.index.ef < self.index.k {
            return bad(format!(
                "index.ef ({}) must be at least index.k ({})",
                self.index.ef, self.index.k
            ));
        }
        if !(2..=256).contains(&self.index.hnsw_m) {
            return bad(format!(
                "index.hnsw_m must be in 2..=256, got {}",
                self.index.hnsw_m
            ));
        }
        if self.model.intra_threads == 0 {
            return bad("model.intra_threads must be at least 1".into());
        }
        if self.model.optimization_level > 3 {
            return bad(format!(
                "model.optimization_level must be 0 to 3, got {}",
                self.model.optimization_level
            ));
        }
        let at_least_one = [
            (
                "server.max_images_per_request",
                self.server.max_images_per_request,
            ),
            ("server.max_message_bytes", self.server.max_message_bytes),
            (
                "server.stream_pipeline_depth",
                self.server.stream_pipeline_depth,
            ),
            ("batching.max_batch_size", self.batching.max_batch_size),
            ("batching.queue_capacity", self.batching.queue_capacity),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        self.validate_gates()?;
        // Each gate's share of the queue must hold one largest request.
        let gates = self.gates().len();
        if self.batching.queue_capacity < gates * self.server.max_images_per_request {
            return bad(if gates == 1 {
                format!(
                    "batching.queue_capacity ({}) must be at least server.max_images_per_request ({})",
                    self.batching.queue_capacity, self.server.max_images_per_request
                )
            } else {
                format!(
                    "batching.queue_capacity ({}) must be at least {gates} gates x server.max_images_per_request ({}): each gate gets an even share",
                    self.batching.queue_capacity, self.server.max_images_per_request
                )
            });
        }
        if !(self.server.request_timeout_seconds.is_finite()
            && self.server.request_timeout_seconds >= 0.0)
        {
            return bad(format!(
                "server.request_timeout_seconds must be 0 or more, got {}",
                self.server.request_timeout_seconds
            ));
        }
        let tls = &self.tls;
        if tls.enabled() == tls.key.as_os_str().is_empty() {
            return bad("tls.cert and tls.key must be set together".into());
        }
        if !tls.enabled() && !tls.client_ca.as_os_str().is_empty() {
            return bad("tls.client_ca needs tls.cert and tls.key".into());
        }
        if !self.auth.token.is_empty() && !self.auth.token_file.as_os_str().is_empty() {
            return bad("set auth.token or auth.token_file, not both".into());
        }
        for (name, addr) in [
            ("server.grpc_addr", &self.server.grpc_addr),
            ("server.http_addr", &self.server.http_addr),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return bad(format!("{name} must be ip:port, got {addr:?}"));
            }
        }
        let (grpc_uds, http_uds) = (&self.server.grpc_uds, &self.server.http_uds);
        if !grpc_uds.as_os_str().is_empty() && grpc_uds == http_uds {
            return bad(format!(
                "server.grpc_uds and server.http_uds must differ, both are {}",
                grpc_uds.display()
            ));
        }
        Ok(())
    }

    fn validate_gates(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !valid_gate_name(&self.model.gate) {
            return bad(format!(
                "model.gate must be 1 to 64 of a-z, 0-9, '-' and '_', got {:?}",
                self.model.gate
            ));
        }
        for (name, entry) in &self.gates {
            if !valid_gate_name(name) {
                return bad(format!(
                    "gates.{name}: gate names are 1 to 64 of a-z, 0-9, '-' and '_'"
                ));
            }
            if *name == self.model.gate {
                return bad(format!(
                    "gates.{name}: the name is model.gate's, the default gate's (set its folder with model.dir)"
                ));
            }
            if entry.dir.as_os_str().is_empty() {
                return bad(format!("gates.{name}.dir must name the gate's folder"));
            }
        }
        Ok(())
    }
}

/// Gate names appear in URLs and metric labels: short, lowercase, no escaping needed.
pub fn valid_gate_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn file_overrides_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oodgate.toml");
        std::fs::write(&path, "[index]\nk = 10\nef = 32\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!((c.index.k, c.index.ef), (10, 32));
        assert_eq!(c.index.contamination, 0.01);

        std::fs::write(&path, "[index]\nkk = 10\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("kk"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let mut c = Config::default();
        c.index.contamination = 0.7;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("index.contamination")
        );
        let mut c = Config::default();
        c.server.grpc_addr = "nowhere".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("server.grpc_addr")
        );
    }

    /// The default config with the digits gate alone, plus `name`.
    fn with_gate(name: &str, dir: &str) -> Config {
        let mut c = Config::default();
        c.gates.clear();
        c.gates.insert(
            name.into(),
            GateEntry {
                dir: dir.into(),
                index: PathBuf::new(),
                variant: ModelVariant::Fp32,
                enabled: true,
            },
        );
        c
    }

    #[test]
    fn gates_list_the_default_first_and_only_enabled_ones() {
        let mut c = with_gate("plain", "models/mnist-plain");
        c.gates.insert(
            "off".into(),
            GateEntry {
                dir: "models/mnist-l2".into(),
                index: "off.lof".into(),
                variant: ModelVariant::Fp32,
                enabled: false,
            },
        );
        c.gates.insert(
            "a-first".into(),
            GateEntry {
                dir: "models/mnist-seed".into(),
                index: "seed.lof".into(),
                variant: ModelVariant::Fp32,
                enabled: true,
            },
        );
        c.validate().unwrap();
        let names: Vec<_> = c.gates().into_iter().map(|g| g.name).collect();
        assert_eq!(names, ["digits", "a-first", "plain"]);
        assert_eq!(
            c.gate("a-first"),
            Some(GateSpec {
                name: "a-first".into(),
                dir: "models/mnist-seed".into(),
                index_path: "seed.lof".into(),
                variant: ModelVariant::Fp32,
            })
        );
        assert_eq!(c.gate("digits").unwrap().dir, c.model.dir);
        assert_eq!(c.gate("off"), None);
    }

    #[test]
    fn bad_gates_name_the_field() {
        let message = |c: Config| c.validate().unwrap_err().to_string();
        assert!(message(with_gate("plain", "")).contains("gates.plain.dir"));
        assert!(message(with_gate("digits", "models/mnist-plain")).contains("gates.digits"));
        assert!(message(with_gate("Plain", "models/mnist-plain")).contains("gates.Plain"));
        assert!(message(with_gate(&"x".repeat(65), "m")).contains("gate names"));
        let mut c = Config::default();
        c.model.gate = "has space".into();
        assert!(message(c).contains("model.gate"));
        // Each gate's share of the queue holds one largest request.
        let mut c = with_gate("plain", "models/mnist-plain");
        c.batching.queue_capacity = 1024;
        assert!(message(c).contains("2 gates x server.max_images_per_request"));
    }

    #[test]
    fn unix_sockets_are_off_by_default_and_set_from_the_environment() {
        let c = Config::load_with(None, []).unwrap();
        assert!(c.server.grpc_uds.as_os_str().is_empty());
        assert!(c.server.http_uds.as_os_str().is_empty());
        let env = [
            ("OODGATE_SERVER__GRPC_UDS", "/run/oodgate/grpc.sock"),
            ("OODGATE_SERVER__HTTP_UDS", "/run/oodgate/http.sock"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = Config::load_with(None, env).unwrap();
        assert_eq!(c.server.grpc_uds, PathBuf::from("/run/oodgate/grpc.sock"));
        assert_eq!(c.server.http_uds, PathBuf::from("/run/oodgate/http.sock"));

        let mut c = Config::default();
        c.server.grpc_uds = "/run/oodgate.sock".into();
        c.server.http_uds = "/run/oodgate.sock".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("server.grpc_uds and server.http_uds"), "{err}");
    }

    #[test]
    fn gates_come_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oodgate.toml");
        std::fs::write(
            &path,
            "[model]\ngate = \"numbers\"\n[gates.plain]\ndir = \"models/mnist-plain\"\n[gates.fashion]\ndir = \"models/fashion\"\nindex = \"f.lof\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        let names: Vec<_> = c.gates().into_iter().map(|g| g.name).collect();
        assert_eq!(names, ["numbers", "fashion", "plain"]);
        assert_eq!(
            c.gate("fashion").unwrap().index_path,
            PathBuf::from("f.lof")
        );

        let env = [
            ("OODGATE_GATES__FASHION__ENABLED", "false"),
            ("OODGATE_GATES__PLAIN__DIR", "models/mnist-l2"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = Config::load_with(Some(&path), env).unwrap();
        let names: Vec<_> = c.gates().into_iter().map(|g| g.name).collect();
        assert_eq!(names, ["numbers", "plain"]);
        assert_eq!(
            c.gate("plain").unwrap().dir,
            PathBuf::from("models/mnist-l2")
        );

        std::fs::write(&path, "[gates.plain]\ndir = \"m\"\nindx = \"x\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("indx"), "{err}");
    }

    #[test]
    fn the_default_config_serves_digits_and_fashion() {
        let c = Config::default();
        assert_eq!(
            c.gates(),
            [
                GateSpec {
                    name: "digits".into(),
                    dir: c.model.dir.clone(),
                    index_path: PathBuf::new(),
                    variant: ModelVariant::Fp32,
                },
                GateSpec {
                    name: "fashion".into(),
                    dir: "models/fashion-cosface".into(),
                    index_path: PathBuf::new(),
                    variant: ModelVariant::Fp32,
                }
            ]
        );
        let mut c = Config::default();
        c.server.grpc_addr = "nowhere".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("server.grpc_addr")
        );
    }

    #[test]
    fn variants_come_from_the_file_and_the_environment() {
        assert_eq!(Config::default().default_gate().variant, ModelVariant::Fp32);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oodgate.toml");
        std::fs::write(
            &path,
            "[model]\nvariant = \"int8\"\n[gates.fashion]\ndir = \"models/fashion-cosface\"\nvariant = \"\"\n",
        )
        .unwrap();
        let c = Config::load_with(Some(&path), []).unwrap();
        assert_eq!(c.default_gate().variant, ModelVariant::Int8);
        assert_eq!(c.gate("fashion").unwrap().variant, ModelVariant::Fp32);
        assert_eq!(
            c.gate("fashion").unwrap().variant_field(&c),
            "gates.fashion.variant"
        );
        assert_eq!(c.default_gate().variant_field(&c), "model.variant");

        let env = [
            ("OODGATE_GATES__FASHION__VARIANT", "int8"),
            ("OODGATE_MODEL__VARIANT", "fp32"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = Config::load_with(Some(&path), env).unwrap();
        assert_eq!(c.default_gate().variant, ModelVariant::Fp32);
        assert_eq!(c.gate("fashion").unwrap().variant, ModelVariant::Int8);

        let env = [("OODGATE_MODEL__VARIANT", "int4")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let err = Config::load_with(None, env).unwrap_err().to_string();
        assert!(
            err.contains("model.variant") && err.contains("int4"),
            "{err}"
        );
    }
}
