//! Hot reload: load a gate's model and its index beside the serving one, then swap them in.
//!
//! Requests already running finish on the model they started with (a stream keeps
//! its model until it ends); if loading fails, the gate's current model keeps serving.
//! The other gates are not touched.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::api::grpc::Reload;
use crate::app::config::Config;
use crate::app::load;
use crate::core::detector::Detector;
use crate::core::pipeline::{Pipeline, SourceLabels};
use crate::core::view::ModelView;
use crate::metrics;

pub(crate) struct Reloaded {
    pub gate: String,
    pub detector: Arc<Detector>,
    pub seconds: f64,
}

pub(crate) struct Reloader {
    pipeline: Arc<Pipeline>,
    /// Read again on every reload (model and index settings; the rest needs a restart).
    config_file: Option<PathBuf>,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(pipeline: Arc<Pipeline>, config_file: Option<PathBuf>) -> Self {
        Self {
            pipeline,
            config_file,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads `model_dir` (default: the gate's configured folder) for the gate called
    /// `gate` (empty: the default one) and swaps it in. An unknown gate fails with
    /// [`crate::core::pipeline::ServeError::UnknownGate`].
    pub(crate) async fn reload(
        &self,
        gate: &str,
        model_dir: Option<PathBuf>,
    ) -> anyhow::Result<Reloaded> {
        let gate = self.pipeline.gate(gate)?.clone();
        let name = gate.name();
        let _one_at_a_time = self.busy.lock().await;
        let started = Instant::now();
        let result = self.load(name, model_dir).await;
        metrics::record_reload(name, result.is_ok());
        let (detector, config) = match result {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(
                    gate = name,
                    error = format!("{e:#}"),
                    "reload failed; the current model keeps serving"
                );
                return Err(e);
            }
        };
        let detector = Arc::new(detector);
        if let Some(old) = gate.detector() {
            metrics::set_unloaded(&model_labels(name, &old));
        }
        set_loaded(name, &detector, &config);
        gate.set_detector(detector.clone());
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            gate = name,
            model = %detector.model.name,
            sha256 = %detector.model.sha256,
            seconds,
            "reloaded"
        );
        Ok(Reloaded {
            gate: name.to_owned(),
            detector,
            seconds,
        })
    }

    /// Reloads every gate, each on its own: one that fails keeps its model (the failure
    /// is logged and counted) and the others still reload.
    pub(crate) async fn reload_all(&self) {
        for gate in self.pipeline.gates() {
            let _ = self.reload(gate.name(), None).await;
        }
    }

    async fn load(
        &self,
        gate: &str,
        model_dir: Option<PathBuf>,
    ) -> anyhow::Result<(Detector, Config)> {
        let config = Config::load(self.config_file.as_deref())?;
        let mut spec = config.gate(gate).with_context(|| {
            format!("gate {gate} is no longer in the configuration (gates change with a restart)")
        })?;
        if let Some(dir) = model_dir {
            spec.dir = dir;
        }
        let loading = config.clone();
        let dir = spec.dir.clone();
        let detector = tokio::task::spawn_blocking(move || load::detector(&loading, &spec))
            .await
            .context("loading panicked")?
            .with_context(|| format!("loading {}", dir.display()))?;
        Ok((detector, config))
    }
}

#[tonic::async_trait]
impl Reload for Reloader {
    async fn reload(
        &self,
        gate: &str,
        model_dir: Option<PathBuf>,
    ) -> anyhow::Result<(ModelView, f64)> {
        let reloaded = Reloader::reload(self, gate, model_dir).await?;
        Ok((
            ModelView::of(&reloaded.gate, &reloaded.detector),
            reloaded.seconds,
        ))
    }
}

/// The metrics of a gate's model that starts serving.
pub(crate) fn set_loaded(gate: &str, detector: &Detector, config: &Config) {
    metrics::set_loaded(
        &model_labels(gate, detector),
        &detector.model.classes,
        &SourceLabels::known(&config.server.sources),
    );
}

fn model_labels(gate: &str, detector: &Detector) -> metrics::ModelLabels {
    metrics::ModelLabels {
        gate: gate.to_owned(),
        model: detector.model.name.clone(),
        sha256: detector.model.sha256.clone(),
        index_size: detector.index.len(),
        k: detector.index.k(),
        contamination: detector.default_contamination,
        search: crate::core::view::search_mode_name(detector.search),
    }
}
