//! The ONNX model: one session, batch inference, input layout read from the model.

use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorRef, ValueType};

use crate::core::preprocess::{InputSpec, Layout, Transform};

pub(crate) const EMBEDDING_OUTPUT: &str = "embedding";
pub(crate) const PROBABILITIES_OUTPUT: &str = "probabilities";

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("ONNX model {path}: {message}")]
    Load { path: String, message: String },
    #[error("ONNX model {path} does not follow the model contract: {message}")]
    Contract { path: String, message: String },
    #[error("inference failed: {0}")]
    Run(String),
}

/// Session settings from the config.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    pub intra_threads: usize,
    /// 0 (none) to 3 (all), as ONNX Runtime numbers them.
    pub optimization_level: u8,
    /// Whether idle intra-op threads spin waiting for the next run.
    pub intra_spinning: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            intra_threads: 2,
            optimization_level: 3,
            intra_spinning: false,
        }
    }
}

/// The model's outputs for a batch of n images, row-major.
#[derive(Debug, Clone, Default)]
pub struct Embedded {
    pub embeddings: Vec<f32>,
    pub probabilities: Vec<f32>,
}

pub struct Embedder {
    /// `Session::run` takes `&mut self`; one batch runs at a time and ONNX Runtime's
    /// own thread pool parallelises inside it.
    session: Mutex<Session>,
    input_name: String,
    pub input: InputSpec,
    pub embedding_dim: usize,
    pub classes: usize,
}

fn build_session(
    env: &ort::environment::Environment,
    path: &Path,
    options: SessionOptions,
) -> ort::Result<Session> {
    let level = match options.optimization_level {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::Level3,
    };
    // Builder errors carry the builder and are not Send; turn them into plain errors here.
    Session::builder(env)?
        .with_optimization_level(level)
        .map_err(ort::Error::<()>::from)?
        .with_intra_threads(options.intra_threads)
        .map_err(ort::Error::<()>::from)?
        .with_inter_threads(1)
        .map_err(ort::Error::<()>::from)?
        .with_intra_op_spinning(options.intra_spinning)
        .map_err(ort::Error::<()>::from)?
        .commit_from_file(path)
}

/// Reads NHWC or NCHW and H, W, C from a rank-4 float input with a dynamic batch.
fn input_spec(shape: &[i64]) -> Result<InputSpec, String> {
    if shape.len() != 4 {
        return Err(format!(
            "input must be rank 4 (batch, then H, W, C in some order), got {shape:?}"
        ));
    }
    let known = |d: i64| -> Result<u32, String> {
        u32::try_from(d)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| format!("input dimensions must be fixed, got {shape:?}"))
    };
    let is_channels = |d: i64| matches!(d, 1 | 3 | 4);
    let (layout, h, w, c) = if is_channels(shape[3]) {
        (Layout::Nhwc, shape[1], shape[2], shape[3])
    } else if is_channels(shape[1]) {
        (Layout::Nchw, shape[2], shape[3], shape[1])
    } else {
        return Err(format!(
            "cannot tell the channel axis of input shape {shape:?} (1, 3 or 4 channels)"
        ));
    };
    Ok(InputSpec {
        layout,
        height: known(h)?,
        width: known(w)?,
        channels: known(c)?,
        transform: Transform::Legacy,
    })
}

impl Embedder {
    pub fn load(
        env: &ort::environment::Environment,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Self, EmbedError> {
        let shown = path.display().to_string();
        let contract = |message: String| EmbedError::Contract {
            path: shown.clone(),
            message,
        };
        if !path.is_file() {
            return Err(EmbedError::Load {
                path: shown,
                message: "no such file".into(),
            });
        }
        let session = build_session(env, path, options).map_err(|e| EmbedError::Load {
            path: shown.clone(),
            message: e.to_string(),
        })?;

        let [input] = session.inputs() else {
            return Err(contract(format!(
                "expected one input, found {}",
                session.inputs().len()
            )));
        };
        let input_name = input.name().to_owned();
        let input = match input.dtype() {
            ValueType::Tensor {
                ty: ort::value::TensorElementType::Float32,
                shape,
                ..
            } => input_spec(shape).map_err(&contract)?,
            other => {
                return Err(contract(format!(
                    "input must be a float32 tensor, found {other:?}"
                )));
            }
        };
        let output_width = |name: &str| -> Result<usize, EmbedError> {
            let outlet = session
                .outputs()
                .iter()
                .find(|o| o.name() == name)
                .ok_or_else(|| contract(format!("no output named `{name}`")))?;
            match outlet.dtype() {
                ValueType::Tensor { shape, .. } if shape.len() == 2 && shape[1] > 0 => {
                    Ok(shape[1] as usize)
                }
                other => Err(contract(format!(
                    "output `{name}` must be [N, D], found {other:?}"
                ))),
            }
        };
        let embedding_dim = output_width(EMBEDDING_OUTPUT)?;
        let classes = output_width(PROBABILITIES_OUTPUT)?;
        Ok(Self {
            session: Mutex::new(session),
            input_name,
            input,
            embedding_dim,
            classes,
        })
    }

    /// Runs n images (`n * input.len()` floats, already in the model's layout).
    pub fn run(&self, pixels: &[f32], n: usize) -> Result<Embedded, EmbedError> {
        if n == 0 {
            return Ok(Embedded::default());
        }
        if pixels.len() != n * self.input.len() {
            return Err(EmbedError::Run(format!(
                "batch of {n} needs {} floats, got {}",
                n * self.input.len(),
                pixels.len()
            )));
        }
        let (a, b, c) = match self.input.layout {
            Layout::Nhwc => (self.input.height, self.input.width, self.input.channels),
            Layout::Nchw => (self.input.channels, self.input.height, self.input.width),
        };
        let shape = [n, a as usize, b as usize, c as usize];
        let run = |session: &mut Session| -> ort::Result<Embedded> {
            let tensor = TensorRef::from_array_view((shape, pixels))?;
            let outputs = session.run(ort::inputs![self.input_name.as_str() => tensor])?;
            let (_, embeddings) = outputs[EMBEDDING_OUTPUT].try_extract_tensor::<f32>()?;
            let (_, probabilities) = outputs[PROBABILITIES_OUTPUT].try_extract_tensor::<f32>()?;
            Ok(Embedded {
                embeddings: embeddings.to_vec(),
                probabilities: probabilities.to_vec(),
            })
        };
        // A poisoned lock only means another batch panicked; the session itself is fine.
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let out = run(&mut session).map_err(|e| EmbedError::Run(e.to_string()))?;
        if out.embeddings.len() != n * self.embedding_dim
            || out.probabilities.len() != n * self.classes
        {
            return Err(EmbedError::Run(
                "model returned a batch of the wrong size".into(),
            ));
        }
        Ok(out)
    }

    /// Embeds a whole set in batches, with an optional progress bar.
    pub fn run_all(
        &self,
        pixels: &[f32],
        batch: usize,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Embedded, EmbedError> {
        let per = self.input.len();
        let mut all = Embedded::default();
        for chunk in pixels.chunks(batch.max(1) * per) {
            let out = self.run(chunk, chunk.len() / per)?;
            all.embeddings.extend_from_slice(&out.embeddings);
            all.probabilities.extend_from_slice(&out.probabilities);
            if let Some(bar) = progress {
                bar.inc((chunk.len() / per) as u64);
            }
        }
        Ok(all)
    }
}

/// Preprocesses and embeds a whole dataset, through the same path as client images.
pub fn embed_dataset(
    embedder: &Embedder,
    dataset: &oodgate_datasets::Dataset,
    progress: bool,
) -> Result<Embedded, EmbedError> {
    let pixels = crate::core::preprocess::prepare_dataset(dataset, &embedder.input)
        .map_err(|e| EmbedError::Run(format!("{}: {e}", dataset.name)))?;
    let bar = progress
        .then(|| oodgate_lof::progress_bar(dataset.len(), format!("embed {}", dataset.name)));
    let out = embedder.run_all(&pixels, 256, bar.as_ref());
    if let Some(bar) = bar {
        bar.finish();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_read_from_the_shape() {
        let nhwc = input_spec(&[-1, 28, 28, 1]).unwrap();
        assert_eq!(
            (nhwc.layout, nhwc.height, nhwc.width, nhwc.channels),
            (Layout::Nhwc, 28, 28, 1)
        );
        let nchw = input_spec(&[-1, 3, 32, 40]).unwrap();
        assert_eq!(
            (nchw.layout, nchw.height, nchw.width, nchw.channels),
            (Layout::Nchw, 32, 40, 3)
        );
        assert!(input_spec(&[-1, 784]).is_err());
        assert!(input_spec(&[-1, 28, 28, 7]).is_err());
        assert!(input_spec(&[-1, -1, -1, 1]).is_err());
    }
}
