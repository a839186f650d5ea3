//! A model folder: `model.onnx`, `classes.json`, and `card.json` as the trainer writes
//! it, or a gate folder a user brings (`gate.toml`, the card optional).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::core::embed::ModelIo;
use crate::core::gate::{ColourName, GateConfig, GateError, LayoutName, ResizeName};
use crate::core::preprocess::{Colour, FloatTransform, Layout, Resize, Transform};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Gate(#[from] GateError),
}

/// Which of a folder's ONNX files to serve: the model as trained, or its int8 version
/// (`train/quantize.py` writes it beside the first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelVariant {
    /// `model.onnx`. An empty string in the config means this one too.
    #[default]
    #[serde(alias = "")]
    Fp32,
    /// `model.int8.onnx`.
    Int8,
}

impl ModelVariant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Int8 => "int8",
        }
    }

    /// The ONNX file in the model folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Fp32 => "model.onnx",
            Self::Int8 => "model.int8.onnx",
        }
    }

    /// A built index's file name inside a gate folder: each variant embeds differently,
    /// so each has its own.
    pub fn gate_index_file(self) -> &'static str {
        match self {
            Self::Fp32 => "index.lof",
            Self::Int8 => "index.int8.lof",
        }
    }
}

/// The files of one model, read and checked, before ONNX Runtime sees them.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// Folder name unless the card names it.
    pub name: String,
    pub onnx_path: PathBuf,
    /// Which ONNX file of the folder `onnx_path` is.
    pub variant: ModelVariant,
    /// SHA-256 of the ONNX file: ties an index artifact to the model it was built for.
    pub sha256: String,
    pub classes: Vec<String>,
    /// The model card as written by the trainer (free-form JSON; `null` for a gate
    /// folder without one).
    pub card: serde_json::Value,
    /// The folder's `gate.toml`, if it has one.
    pub gate: Option<GateConfig>,
    pub dir: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl ModelFiles {
    /// The folder's `model.onnx`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        Self::load_variant(dir, ModelVariant::Fp32)
    }

    /// The folder's ONNX file of `variant`; the hash is that file's, so an index built
    /// from one variant's embeddings is never served with another.
    pub fn load_variant(dir: &Path, variant: ModelVariant) -> Result<Self, ModelError> {
        let onnx_path = dir.join(variant.file_name());
        let sha256 = hex::encode(Sha256::digest(read(&onnx_path)?));

        let classes_path = dir.join("classes.json");
        let classes: Vec<String> =
            serde_json::from_slice(&read(&classes_path)?).map_err(|e| ModelError::Invalid {
                path: classes_path.clone(),
                message: format!("expected a JSON list of class names: {e}"),
            })?;
        if classes.is_empty() {
            return Err(ModelError::Invalid {
                path: classes_path,
                message: "no class names".into(),
            });
        }

        let gate = GateConfig::load(dir)?;
        let card_path = dir.join("card.json");
        // The trainer's folders always have a card; a user's gate folder may not.
        let card = if gate.is_some() && !card_path.exists() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&read(&card_path)?).map_err(|e| ModelError::Invalid {
                path: card_path,
                message: format!("not JSON: {e}"),
            })?
        };
        let name = gate
            .as_ref()
            .and_then(|g| g.file.name.clone())
            .or_else(|| card.get("name").and_then(|n| n.as_str()).map(str::to_owned))
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        Ok(Self {
            name,
            onnx_path,
            variant,
            sha256,
            classes,
            card,
            gate,
            dir: dir.to_path_buf(),
        })
    }

    /// How client images become this model's input of `channels` channels: the float
    /// path the gate config describes, else the legacy path of the trainer's folders.
    pub fn transform(&self, channels: u32) -> Result<Transform, ModelError> {
        let Some(gate) = &self.gate else {
            return Ok(Transform::Legacy);
        };
        let input = &gate.file.input;
        let colour = match (input.colour, channels) {
            (Some(ColourName::Gray), _) | (None, 1) => Colour::Gray,
            (Some(ColourName::Rgb), _) | (None, 3) => Colour::Rgb,
            (Some(ColourName::Bgr), _) => Colour::Bgr,
            (None, n) => {
                return Err(gate
                    .field_error(
                        "input.colour",
                        format!("the model takes {n} channels: gray (1), rgb or bgr (3) only"),
                    )
                    .into());
            }
        };
        let per_channel = |field: &'static str, values: &Option<Vec<f32>>, default: f32| {
            let mut out = [default; 4];
            if let Some(values) = values {
                if values.len() != channels as usize {
                    return Err(gate.field_error(
                        field,
                        format!(
                            "has {} values, the model's input has {channels} channels",
                            values.len()
                        ),
                    ));
                }
                out[..values.len()].copy_from_slice(values);
            }
            Ok(out)
        };
        let transform = FloatTransform {
            colour,
            resize: match input.resize {
                ResizeName::Stretch => Resize::Stretch,
                ResizeName::CenterCrop => Resize::CenterCrop {
                    crop_fraction: input.crop_fraction.unwrap_or(1.0),
                },
                ResizeName::Letterbox => Resize::Letterbox {
                    pad: input.pad.unwrap_or(0.0),
                },
            },
            scale: input.scale,
            mean: per_channel("input.mean", &input.mean, 0.0)?,
            std: per_channel("input.std", &input.std, 1.0)?,
        };
        transform
            .check(channels)
            .map_err(|message| gate.field_error("input.colour", message))?;
        Ok(Transform::Float(transform))
    }

    /// The ONNX input and outputs to use: the gate config's, else the model contract's.
    pub fn io(&self) -> ModelIo {
        let Some(gate) = &self.gate else {
            return ModelIo::default();
        };
        let input = &gate.file.input;
        ModelIo {
            input: input.name.clone(),
            embedding: gate.file.outputs.embedding.clone(),
            classes: gate.class_output.clone(),
            layout: input.layout.map(|l| match l {
                LayoutName::NHWC => Layout::Nhwc,
                LayoutName::NCHW => Layout::Nchw,
            }),
            height: input.height,
            width: input.width,
            channels: input.colour.map(|c| ColourName::channels(c) as u32),
            config: Some(gate.path.clone()),
        }
    }

    /// A number from the card, e.g. `test_accuracy` or `accuracy_target`.
    pub fn card_number(&self, key: &str) -> Option<f64> {
        self.card.get(key).and_then(|v| v.as_f64())
    }
}

/// Model folders under `root` (those with a model.onnx), sorted.
pub fn model_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}
