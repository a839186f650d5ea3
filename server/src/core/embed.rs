//! The ONNX model: one session, batch inference, input layout read from the model.

use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorRef, ValueType};

use crate::core::gate::ClassOutput;
use crate::core::preprocess::{InputSpec, Layout, Transform};

pub(crate) const EMBEDDING_OUTPUT: &str = "embedding";
pub(crate) const PROBABILITIES_OUTPUT: &str = "probabilities";

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("ONNX model {path}: {message}")]
    Load { path: String, message: String },
    #[error("ONNX model {path} does not follow the model contract: {message}")]
    Contract { path: String, message: String },
    #[error("{config}: {field}: {message} ({model})")]
    Config {
        config: String,
        field: &'static str,
        model: String,
        message: String,
    },
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
    /// Batches of at most this many images run on a second session with one intra-op
    /// thread; 0: no second session. At a lone image, waking the pool's threads for
    /// each operator costs more than they save.
    pub small_batch_max: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            intra_threads: 2,
            optimization_level: 3,
            intra_spinning: false,
            small_batch_max: SMALL_BATCH_MAX,
        }
    }
}

/// The default [`SessionOptions::small_batch_max`].
const SMALL_BATCH_MAX: usize = 4;

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
    /// The one-thread session for batches of at most `small_batch_max` images.
    small: Option<Mutex<Session>>,
    small_batch_max: usize,
    input_name: String,
    embedding_output: String,
    class_output: ClassOutput,
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

/// Which ONNX input and outputs to use, and what a gate's config says about the input.
/// The default is the model contract of the trainer's folders.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelIo {
    /// The input's name; needed only when the model has several.
    pub input: Option<String>,
    pub embedding: String,
    pub classes: ClassOutput,
    /// Declared by the config; checked against the ONNX file, and used where the file
    /// leaves a dimension dynamic.
    pub layout: Option<Layout>,
    pub height: Option<u32>,
    pub width: Option<u32>,
    pub channels: Option<u32>,
    /// The config file that declared them, named in errors.
    pub config: Option<std::path::PathBuf>,
}

impl Default for ModelIo {
    fn default() -> Self {
        Self {
            input: None,
            embedding: EMBEDDING_OUTPUT.into(),
            classes: ClassOutput::Probabilities(PROBABILITIES_OUTPUT.into()),
            layout: None,
            height: None,
            width: None,
            channels: None,
            config: None,
        }
    }
}

/// A mismatch between the ONNX file and the contract or the config: the config field
/// it concerns (when a config declared it) and the message.
struct Mismatch(&'static str, String);

/// Reads NHWC or NCHW and H, W, C from a rank-4 float input with a dynamic batch,
/// filling dynamic dimensions from the config and checking declared ones.
fn input_spec(shape: &[i64], io: &ModelIo) -> Result<InputSpec, Mismatch> {
    if shape.len() != 4 {
        return Err(Mismatch(
            "input",
            format!("input must be rank 4 (batch, then H, W, C in some order), got {shape:?}"),
        ));
    }
    let is_channels = |d: i64| matches!(d, 1 | 3 | 4);
    let layout = match io.layout {
        Some(layout) => layout,
        None if is_channels(shape[3]) => Layout::Nhwc,
        None if is_channels(shape[1]) => Layout::Nchw,
        None if io.channels.is_some() && shape[3] < 0 && shape[1] > 0 => Layout::Nhwc,
        None if io.channels.is_some() && shape[1] < 0 => Layout::Nchw,
        None => {
            return Err(Mismatch(
                "input.layout",
                format!(
                    "cannot tell the channel axis of input shape {shape:?} (1, 3 or 4 channels)"
                ),
            ));
        }
    };
    let (h, w, c) = match layout {
        Layout::Nhwc => (shape[1], shape[2], shape[3]),
        Layout::Nchw => (shape[2], shape[3], shape[1]),
    };
    let dim = |field: &'static str, what: &str, found: i64, declared: Option<u32>| match (
        u32::try_from(found).ok().filter(|d| *d > 0),
        declared,
    ) {
        (Some(found), Some(declared)) if found != declared => Err(Mismatch(
            field,
            format!("{declared}, but the model's input {what} is {found} (shape {shape:?})"),
        )),
        (Some(found), _) => Ok(found),
        (None, Some(declared)) => Ok(declared),
        (None, None) => Err(Mismatch(
            field,
            format!(
                "the model's input {what} is dynamic (shape {shape:?}): set it in the gate config"
            ),
        )),
    };
    let spec = InputSpec {
        layout,
        height: dim("input.height", "height", h, io.height)?,
        width: dim("input.width", "width", w, io.width)?,
        channels: dim("input.colour", "channel count", c, io.channels)?,
        transform: Transform::Legacy,
    };
    if !matches!(spec.channels, 1 | 3 | 4) {
        return Err(Mismatch(
            "input.layout",
            format!(
                "{} channels on the {} channel axis of {shape:?}: expected 1, 3 or 4",
                spec.channels,
                layout.as_str()
            ),
        ));
    }
    Ok(spec)
}

/// Lists names for error messages.
fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

impl Embedder {
    /// Opens a model that follows the trainer's contract (one input, outputs
    /// `embedding` and `probabilities`).
    pub fn load(
        env: &ort::environment::Environment,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Self, EmbedError> {
        Self::load_with(env, path, options, &ModelIo::default())
    }

    /// Opens a model, using the input and outputs `io` names.
    pub fn load_with(
        env: &ort::environment::Environment,
        path: &Path,
        options: SessionOptions,
        io: &ModelIo,
    ) -> Result<Self, EmbedError> {
        let shown = path.display().to_string();
        let contract = |Mismatch(field, message): Mismatch| match &io.config {
            Some(config) => EmbedError::Config {
                config: config.display().to_string(),
                field,
                model: shown.clone(),
                message,
            },
            None => EmbedError::Contract {
                path: shown.clone(),
                message,
            },
        };
        if !path.is_file() {
            return Err(EmbedError::Load {
                path: shown,
                message: "no such file".into(),
            });
        }
        let load_error = |e: ort::Error| EmbedError::Load {
            path: shown.clone(),
            message: e.to_string(),
        };
        let session = build_session(env, path, options).map_err(load_error)?;
        let small = (options.small_batch_max > 0 && options.intra_threads > 1)
            .then(|| {
                let one_thread = SessionOptions {
                    intra_threads: 1,
                    ..options
                };
                build_session(env, path, one_thread).map(Mutex::new)
            })
            .transpose()
            .map_err(load_error)?;

        let input = match &io.input {
            Some(name) => session
                .inputs()
                .iter()
                .find(|i| i.name() == name)
                .ok_or_else(|| {
                    contract(Mismatch(
                        "input.name",
                        format!(
                            "no input named `{name}` (inputs: {})",
                            names(session.inputs().iter().map(|i| i.name()))
                        ),
                    ))
                })?,
            None => match session.inputs() {
                [input] => input,
                inputs => {
                    return Err(contract(Mismatch(
                        "input.name",
                        format!(
                            "expected one input, found {} ({}): name the one to use",
                            inputs.len(),
                            names(inputs.iter().map(|i| i.name()))
                        ),
                    )));
                }
            },
        };
        let input_name = input.name().to_owned();
        let input = match input.dtype() {
            ValueType::Tensor {
                ty: ort::value::TensorElementType::Float32,
                shape,
                ..
            } => input_spec(shape, io).map_err(&contract)?,
            other => {
                return Err(contract(Mismatch(
                    "input.name",
                    format!("input must be a float32 tensor, found {other:?}"),
                )));
            }
        };
        let output_width = |field: &'static str, name: &str| -> Result<usize, EmbedError> {
            let outlet = session
                .outputs()
                .iter()
                .find(|o| o.name() == name)
                .ok_or_else(|| {
                    contract(Mismatch(
                        field,
                        format!(
                            "no output named `{name}` (outputs: {})",
                            names(session.outputs().iter().map(|o| o.name()))
                        ),
                    ))
                })?;
            match outlet.dtype() {
                ValueType::Tensor {
                    ty: ort::value::TensorElementType::Float32,
                    shape,
                    ..
                } if shape.len() == 2 && shape[1] > 0 => Ok(shape[1] as usize),
                other => Err(contract(Mismatch(
                    field,
                    format!(
                        "output `{name}` must be a 2-D float32 [N, D] with a fixed D, found {other:?}"
                    ),
                ))),
            }
        };
        let embedding_dim = output_width("outputs.embedding", &io.embedding)?;
        let class_field = match io.classes {
            ClassOutput::Probabilities(_) => "outputs.probabilities",
            ClassOutput::Logits(_) => "outputs.logits",
        };
        let classes = output_width(class_field, io.classes.name())?;
        Ok(Self {
            session: Mutex::new(session),
            small,
            small_batch_max: options.small_batch_max,
            input_name,
            embedding_output: io.embedding.clone(),
            class_output: io.classes.clone(),
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
            let (_, embeddings) =
                outputs[self.embedding_output.as_str()].try_extract_tensor::<f32>()?;
            let (_, scores) = outputs[self.class_output.name()].try_extract_tensor::<f32>()?;
            let mut probabilities = scores.to_vec();
            if let ClassOutput::Logits(_) = self.class_output {
                for row in probabilities.chunks_mut(self.classes) {
                    softmax(row);
                }
            }
            Ok(Embedded {
                embeddings: embeddings.to_vec(),
                probabilities,
            })
        };
        let session = match &self.small {
            Some(small) if n <= self.small_batch_max => small,
            _ => &self.session,
        };
        // A poisoned lock only means another batch panicked; the session itself is fine.
        let mut session = session.lock().unwrap_or_else(|p| p.into_inner());
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

/// Softmax in place, shifted by the maximum so large logits do not overflow.
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
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

    fn spec(shape: &[i64]) -> Result<InputSpec, String> {
        input_spec(shape, &ModelIo::default()).map_err(|Mismatch(f, m)| format!("{f}: {m}"))
    }

    #[test]
    fn softmax_of_logits() {
        let mut row = [1000.0f32, 1000.0, 0.0];
        softmax(&mut row);
        assert!((row[0] - 0.5).abs() < 1e-6 && (row[1] - 0.5).abs() < 1e-6 && row[2] < 1e-6);
    }

    #[test]
    fn the_config_fills_dynamic_sizes_and_must_agree_with_fixed_ones() {
        let io = |height, width| ModelIo {
            layout: Some(Layout::Nchw),
            height,
            width,
            channels: Some(3),
            ..ModelIo::default()
        };
        let s = input_spec(&[-1, 3, -1, -1], &io(Some(224), Some(200)))
            .ok()
            .unwrap();
        assert_eq!(
            (s.layout, s.height, s.width, s.channels),
            (Layout::Nchw, 224, 200, 3)
        );
        let Err(Mismatch(field, _)) = input_spec(&[-1, 3, -1, -1], &io(None, Some(200))) else {
            panic!("a dynamic height without a declared one must fail");
        };
        assert_eq!(field, "input.height");
        let Err(Mismatch(field, message)) = input_spec(&[-1, 3, 32, 32], &io(Some(28), None))
        else {
            panic!("a declared height unlike the model's must fail");
        };
        assert_eq!(field, "input.height");
        assert!(
            message.contains("28") && message.contains("32"),
            "{message}"
        );
    }

    #[test]
    fn layouts_are_read_from_the_shape() {
        let nhwc = spec(&[-1, 28, 28, 1]).unwrap();
        assert_eq!(
            (nhwc.layout, nhwc.height, nhwc.width, nhwc.channels),
            (Layout::Nhwc, 28, 28, 1)
        );
        let nchw = spec(&[-1, 3, 32, 40]).unwrap();
        assert_eq!(
            (nchw.layout, nchw.height, nchw.width, nchw.channels),
            (Layout::Nchw, 32, 40, 3)
        );
        assert!(spec(&[-1, 784]).is_err());
        assert!(spec(&[-1, 28, 28, 7]).is_err());
        assert!(spec(&[-1, -1, -1, 1]).is_err());
    }
}
