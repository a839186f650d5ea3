//! Hot reload: load a model and its index beside the serving one, then swap them in.
//!
//! Requests already running finish on the model they started with (a stream keeps
//! its model until it ends); if loading fails, the current model keeps serving.

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

    /// Loads `model_dir` (default: the configured model.dir) and swaps it in.
    pub(crate) async fn reload(&self, model_dir: Option<PathBuf>) -> anyhow::Result<Reloaded> {
        let _one_at_a_time = self.busy.lock().await;
        let started = Instant::now();
        let result = self.load(model_dir).await;
        metrics::record_reload(result.is_ok());
        let (detector, config) = match result {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "reload failed; the current model keeps serving"
                );
                return Err(e);
            }
        };
        let detector = Arc::new(detector);
        if let Some(old) = self.pipeline.detector() {
            metrics::set_unloaded(&model_labels(&old));
        }
        set_loaded(&detector, &config);
        self.pipeline.set_detector(detector.clone());
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            model = %detector.model.name,
            sha256 = %detector.model.sha256,
            seconds,
            "reloaded"
        );
        Ok(Reloaded { detector, seconds })
    }

    async fn load(&self, model_dir: Option<PathBuf>) -> anyhow::Result<(Detector, Config)> {
        let mut config = Config::load(self.config_file.as_deref())?;
        if let Some(dir) = model_dir {
            config.model.dir = dir;
        }
        let loading = config.clone();
        let detector = tokio::task::spawn_blocking(move || load::detector(&loading))
            .await
            .context("loading panicked")?
            .with_context(|| format!("loading {}", config.model.dir.display()))?;
        Ok((detector, config))
    }
}

#[tonic::async_trait]
impl Reload for Reloader {
    async fn reload(&self, model_dir: Option<PathBuf>) -> anyhow::Result<(ModelView, f64)> {
        let reloaded = Reloader::reload(self, model_dir).await?;
        Ok((ModelView::of(&reloaded.detector), reloaded.seconds))
    }
}

/// The metrics of a model that starts serving.
pub(crate) fn set_loaded(detector: &Detector, config: &Config) {
    metrics::set_loaded(
        &model_labels(detector),
        &detector.model.classes,
        &SourceLabels::known(&config.server.sources),
    );
}

fn model_labels(detector: &Detector) -> metrics::ModelLabels {
    metrics::ModelLabels {
        model: detector.model.name.clone(),
        sha256: detector.model.sha256.clone(),
        index_size: detector.index.len(),
        k: detector.index.k(),
        contamination: detector.default_contamination,
        search: crate::core::view::search_mode_name(detector.search),
    }
}
