//! A model folder as the trainer writes it: `model.onnx`, `classes.json`, `card.json`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The files of one model, read and checked, before ONNX Runtime sees them.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// Folder name unless the card names it.
    pub name: String,
    pub onnx_path: PathBuf,
    /// SHA-256 of the ONNX file: ties an index artifact to the model it was built for.
    pub sha256: String,
    pub classes: Vec<String>,
    /// The model card as written by the trainer (free-form JSON).
    pub card: serde_json::Value,
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl ModelFiles {
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let onnx_path = dir.join("model.onnx");
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

        let card_path = dir.join("card.json");
        let card: serde_json::Value =
            serde_json::from_slice(&read(&card_path)?).map_err(|e| ModelError::Invalid {
                path: card_path,
                message: format!("not JSON: {e}"),
            })?;
        let name = card
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        Ok(Self {
            name,
            onnx_path,
            sha256,
            classes,
            card,
        })
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
