//! Loading the ONNX Runtime shared library (ort's `load-dynamic`).
//!
//! ort panics on a bad `ORT_DYLIB_PATH`, so the path is resolved and checked here
//! first and handed to `ort::init_from`, which returns errors instead.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

/// Where the library comes from, for the messages.
const HOW_TO_GET_IT: &str = "`make setup` installs it from the onnxruntime==1.31.1 wheel into \
     .venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "no ONNX Runtime library configured: set model.ort_dylib_path or ORT_DYLIB_PATH ({HOW_TO_GET_IT})"
    )]
    NotConfigured,
    #[error("ONNX Runtime library {0} does not exist ({HOW_TO_GET_IT})")]
    Missing(PathBuf),
    #[error("ONNX Runtime library {path} could not be loaded: {message}")]
    Load { path: PathBuf, message: String },
    #[error("ONNX Runtime environment: {0}")]
    Environment(String),
}

/// The library path: the configured one, else `ORT_DYLIB_PATH`.
pub fn resolve_library(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let path = match configured {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::env::var_os("ORT_DYLIB_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .ok_or(RuntimeError::NotConfigured)?,
    };
    if !path.is_file() {
        return Err(RuntimeError::Missing(path));
    }
    Ok(path)
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// The process's ONNX Runtime environment, created on first use.
///
/// ONNX Runtime allows one environment per process, so later calls return the
/// first one whatever path they pass.
pub fn environment(configured: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = resolve_library(configured)?;
    let builder = ort::init_from(&path).map_err(|e| RuntimeError::Load {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let env = builder
        .with_name("oodgate")
        .build()
        .map_err(|e| RuntimeError::Environment(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}
