//! A gate folder's `gate.toml`: how to feed the model, which outputs to read, the LOF
//! settings, and the reference and calibration sets. The one module that reads it.
//!
//! Every error names the file and the field. What the ONNX file already says (layout,
//! size, channels) need not be repeated here; when it is, it must agree (checked where
//! the model is opened, `embed.rs`). A folder without `gate.toml` is a model folder as
//! the trainer writes it, served exactly as before.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file name inside a gate folder.
pub const FILE: &str = "gate.toml";

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax, an unknown key or a wrong type: toml's message names the key and line.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Field {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

/// `gate.toml` as written. Every section is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateFile {
    /// The gate's name in model info and metrics; default: the card's name, else the
    /// folder's.
    pub name: Option<String>,
    #[serde(default)]
    pub input: InputSection,
    #[serde(default)]
    pub outputs: OutputsSection,
    #[serde(default)]
    pub lof: LofSection,
    pub reference: Option<SourceSection>,
    pub calibration: Option<SourceSection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    /// The ONNX input; needed only when the model has several.
    pub name: Option<String>,
    pub layout: Option<LayoutName>,
    pub height: Option<u32>,
    pub width: Option<u32>,
    /// Default: gray for a 1-channel input, rgb for 3.
    pub colour: Option<ColourName>,
    #[serde(default)]
    pub resize: ResizeName,
    /// center-crop: the share of the resized shorter side kept (torchvision's
    /// Resize(256) + CenterCrop(224) is 0.875).
    pub crop_fraction: Option<f32>,
    /// letterbox: the fill, in pixel units (0 to 255), before normalisation.
    pub pad: Option<f32>,
    /// Model input = (pixel / scale - mean) / std, per channel.
    #[serde(default = "default_scale")]
    pub scale: f32,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
}

fn default_scale() -> f32 {
    255.0
}

impl Default for InputSection {
    fn default() -> Self {
        Self {
            name: None,
            layout: None,
            height: None,
            width: None,
            colour: None,
            resize: ResizeName::default(),
            crop_fraction: None,
            pad: None,
            scale: default_scale(),
            mean: None,
            std: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayoutName {
    #[serde(alias = "nhwc")]
    NHWC,
    #[serde(alias = "nchw")]
    NCHW,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourName {
    Gray,
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeName {
    #[default]
    Stretch,
    CenterCrop,
    Letterbox,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsSection {
    #[serde(default = "default_embedding")]
    pub embedding: String,
    /// Softmax already applied. Default "probabilities" when `logits` is not given.
    pub probabilities: Option<String>,
    /// Raw scores: the server applies softmax.
    pub logits: Option<String>,
}

fn default_embedding() -> String {
    "embedding".into()
}

impl Default for OutputsSection {
    fn default() -> Self {
        Self {
            embedding: default_embedding(),
            probabilities: None,
            logits: None,
        }
    }
}

/// Unset values come from the server's `[index]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LofSection {
    pub k: Option<usize>,
    pub contamination: Option<f64>,
    pub distance_check: Option<bool>,
}

/// A set of images (or embeddings) in one of the forms `oodgate index build` reads;
/// exactly one form is given. Paths are relative to the gate folder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// A dataset the data folder knows: mnist, fashion-mnist or cifar10.
    pub dataset: Option<String>,
    /// With `dataset`: train (default) or test.
    pub split: Option<String>,
    /// PNG/JPEG images, one subfolder per class (named as in classes.json).
    pub folder: Option<PathBuf>,
    pub idx: Option<IdxSection>,
    /// CIFAR-10 binary batch files.
    pub cifar10: Option<Vec<PathBuf>>,
    pub npy: Option<NpySection>,
    /// `[calibration]` only: the share of the calibration set the default threshold
    /// rejects.
    pub false_rejection_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdxSection {
    pub images: PathBuf,
    pub labels: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpySection {
    /// float32 `[N, D]`, already the model's embeddings.
    pub embeddings: PathBuf,
    /// Integer labels `[N]`; optional.
    pub labels: Option<PathBuf>,
}

/// Where a reference or calibration set comes from, checked, with paths joined to the
/// gate folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Dataset {
        id: oodgate_datasets::DatasetId,
        split: oodgate_datasets::Split,
    },
    Folder(PathBuf),
    Idx {
        images: PathBuf,
        labels: PathBuf,
    },
    Cifar10(Vec<PathBuf>),
    Npy {
        embeddings: PathBuf,
        labels: Option<PathBuf>,
    },
}

/// Which model output holds the class scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassOutput {
    Probabilities(String),
    /// Softmax is applied by the server.
    Logits(String),
}

impl ClassOutput {
    pub fn name(&self) -> &str {
        match self {
            Self::Probabilities(n) | Self::Logits(n) => n,
        }
    }
}

/// A read and checked `gate.toml`.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub path: PathBuf,
    pub file: GateFile,
    pub class_output: ClassOutput,
    pub reference: Option<Source>,
    /// The calibration set and its false-rejection rate.
    pub calibration: Option<(Source, f64)>,
    /// SHA-256 of what shapes an index (input, embedding output, k, reference and
    /// calibration sets): an index built under another is refused.
    pub index_sha256: String,
}

impl GateConfig {
    /// Reads `<dir>/gate.toml`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, GateError> {
        let path = dir.join(FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| GateError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&path, &text).map(Some)
    }

    /// `text` as the contents of `path` (relative paths in it are from its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Self, GateError> {
        let file: GateFile = toml::from_str(text).map_err(|e| GateError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let field = |field: &'static str, message: String| GateError::Field {
            path: path.to_path_buf(),
            field,
            message,
        };
        let dir = path.parent().unwrap_or(Path::new("."));

        let input = &file.input;
        if !(input.scale.is_finite() && input.scale > 0.0) {
            return Err(field(
                "input.scale",
                format!("must be a positive number, got {}", input.scale),
            ));
        }
        for (name, values) in [("input.mean", &input.mean), ("input.std", &input.std)] {
            if let Some(values) = values {
                if values.is_empty() || values.len() > 4 {
                    return Err(field(
                        name,
                        format!("needs one value per channel, got {}", values.len()),
                    ));
                }
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(field(
                        name,
                        format!("values must be finite, got {values:?}"),
                    ));
                }
            }
        }
        if let Some(std) = &input.std
            && std.iter().any(|v| *v <= 0.0)
        {
            return Err(field(
                "input.std",
                format!("values must be positive, got {std:?}"),
            ));
        }
        if let (Some(mean), Some(std)) = (&input.mean, &input.std)
            && mean.len() != std.len()
        {
            return Err(field(
                "input.std",
                format!("has {} values but input.mean has {}", std.len(), mean.len()),
            ));
        }
        if let Some(channels) = input.colour.map(ColourName::channels) {
            for (name, values) in [("input.mean", &input.mean), ("input.std", &input.std)] {
                if let Some(values) = values
                    && values.len() != channels
                {
                    return Err(field(
                        name,
                        format!(
                            "has {} values, but colour {:?} has {channels} channels",
                            values.len(),
                            input.colour.expect("checked")
                        ),
                    ));
                }
            }
        }
        match (input.resize, input.crop_fraction, input.pad) {
            (ResizeName::CenterCrop, Some(f), _) if !(f > 0.0 && f <= 1.0) => {
                return Err(field(
                    "input.crop_fraction",
                    format!("must be in (0, 1], got {f}"),
                ));
            }
            (ResizeName::Letterbox, _, Some(p)) if !(0.0..=255.0).contains(&p) => {
                return Err(field("input.pad", format!("must be 0 to 255, got {p}")));
            }
            (r, Some(_), _) if r != ResizeName::CenterCrop => {
                return Err(field(
                    "input.crop_fraction",
                    "applies only to resize = \"center-crop\"".into(),
                ));
            }
            (r, _, Some(_)) if r != ResizeName::Letterbox => {
                return Err(field(
                    "input.pad",
                    "applies only to resize = \"letterbox\"".into(),
                ));
            }
            _ => {}
        }
        for (name, side) in [("input.height", input.height), ("input.width", input.width)] {
            if side == Some(0) {
                return Err(field(name, "must be at least 1".into()));
            }
        }

        let outputs = &file.outputs;
        let class_output = match (&outputs.probabilities, &outputs.logits) {
            (Some(_), Some(_)) => {
                return Err(field(
                    "outputs.logits",
                    "give either outputs.probabilities or outputs.logits, not both".into(),
                ));
            }
            (_, Some(logits)) => ClassOutput::Logits(logits.clone()),
            (Some(p), None) => ClassOutput::Probabilities(p.clone()),
            (None, None) => ClassOutput::Probabilities("probabilities".into()),
        };
        if outputs.embedding.is_empty() {
            return Err(field("outputs.embedding", "must name an output".into()));
        }

        let lof = &file.lof;
        if lof.k == Some(0) {
            return Err(field("lof.k", "must be at least 1".into()));
        }
        if let Some(c) = lof.contamination
            && !(c > 0.0 && c <= 0.5)
        {
            return Err(field(
                "lof.contamination",
                format!("must be in (0, 0.5], got {c}"),
            ));
        }
        if let Some(name) = &file.name
            && !valid_name(name)
        {
            return Err(field(
                "name",
                format!("must be 1 to 64 of a-z, 0-9, - and _, got {name:?}"),
            ));
        }

        let reference = file
            .reference
            .as_ref()
            .map(|s| {
                if s.false_rejection_rate.is_some() {
                    return Err(field(
                        "reference.false_rejection_rate",
                        "belongs in [calibration]".into(),
                    ));
                }
                source(s, dir).map_err(|(f, m)| field(reference_field(f), m))
            })
            .transpose()?;
        let calibration = file
            .calibration
            .as_ref()
            .map(|s| {
                let rate = s.false_rejection_rate.ok_or_else(|| {
                    field(
                        "calibration.false_rejection_rate",
                        "is required: the share of the calibration set the default threshold rejects".into(),
                    )
                })?;
                if !(rate > 0.0 && rate <= 0.5) {
                    return Err(field(
                        "calibration.false_rejection_rate",
                        format!("must be in (0, 0.5], got {rate}"),
                    ));
                }
                let source = source(s, dir).map_err(|(f, m)| field(calibration_field(f), m))?;
                if matches!(source, Source::Npy { .. }) {
                    return Err(field(
                        "calibration.npy",
                        "calibration needs images (their embeddings are computed with the model)".into(),
                    ));
                }
                Ok((source, rate))
            })
            .transpose()?;

        let index_sha256 = {
            #[derive(Serialize)]
            struct Shaping<'a> {
                input: &'a InputSection,
                embedding: &'a str,
                k: Option<usize>,
                reference: &'a Option<SourceSection>,
                calibration: &'a Option<SourceSection>,
            }
            let shaping = Shaping {
                input: &file.input,
                embedding: &file.outputs.embedding,
                k: file.lof.k,
                reference: &file.reference,
                calibration: &file.calibration,
            };
            let json = serde_json::to_vec(&shaping).expect("plain data serialises");
            hex::encode(Sha256::digest(json))
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            class_output,
            reference,
            calibration,
            index_sha256,
        })
    }

    /// A [`GateError::Field`] about this file, for checks made elsewhere (against the
    /// ONNX file).
    pub fn field_error(&self, field: &'static str, message: String) -> GateError {
        GateError::Field {
            path: self.path.clone(),
            field,
            message,
        }
    }
}

impl ColourName {
    pub fn channels(self) -> usize {
        match self {
            Self::Gray => 1,
            Self::Rgb | Self::Bgr => 3,
        }
    }
}

/// Gate names: short, and safe in metric labels, URLs and file names.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The field names of a source form, under `[reference]` or `[calibration]`.
#[derive(Debug, Clone, Copy)]
enum SourceField {
    Whole,
    Dataset,
    Split,
    Cifar10,
}

fn reference_field(f: SourceField) -> &'static str {
    match f {
        SourceField::Whole => "reference",
        SourceField::Dataset => "reference.dataset",
        SourceField::Split => "reference.split",
        SourceField::Cifar10 => "reference.cifar10",
    }
}

fn calibration_field(f: SourceField) -> &'static str {
    match f {
        SourceField::Whole => "calibration",
        SourceField::Dataset => "calibration.dataset",
        SourceField::Split => "calibration.split",
        SourceField::Cifar10 => "calibration.cifar10",
    }
}

/// The one form a source section gives, with paths joined to `dir`.
fn source(s: &SourceSection, dir: &Path) -> Result<Source, (SourceField, String)> {
    let given = [
        s.dataset.is_some(),
        s.folder.is_some(),
        s.idx.is_some(),
        s.cifar10.is_some(),
        s.npy.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err((
            SourceField::Whole,
            format!("give exactly one of dataset, folder, idx, cifar10, npy (found {given})"),
        ));
    }
    if s.split.is_some() && s.dataset.is_none() {
        return Err((SourceField::Split, "applies only to dataset".into()));
    }
    let at = |p: &Path| dir.join(p);
    Ok(if let Some(name) = &s.dataset {
        let id = dataset_id(name).ok_or_else(|| {
            (
                SourceField::Dataset,
                format!("unknown dataset {name:?}: mnist, fashion-mnist or cifar10"),
            )
        })?;
        let split = match s.split.as_deref() {
            None | Some("train") => oodgate_datasets::Split::Train,
            Some("test") => oodgate_datasets::Split::Test,
            Some(other) => {
                return Err((SourceField::Split, format!("train or test, got {other:?}")));
            }
        };
        Source::Dataset { id, split }
    } else if let Some(folder) = &s.folder {
        Source::Folder(at(folder))
    } else if let Some(idx) = &s.idx {
        Source::Idx {
            images: at(&idx.images),
            labels: at(&idx.labels),
        }
    } else if let Some(files) = &s.cifar10 {
        if files.is_empty() {
            return Err((SourceField::Cifar10, "lists no file".into()));
        }
        Source::Cifar10(files.iter().map(|f| at(f)).collect())
    } else {
        let npy = s.npy.as_ref().expect("one form is given");
        Source::Npy {
            embeddings: at(&npy.embeddings),
            labels: npy.labels.as_ref().map(|l| at(l)),
        }
    })
}

impl std::str::FromStr for Source {
    type Err = String;

    /// The command line's form: `folder:DIR`, `idx:IMAGES,LABELS`, `cifar10:FILE[,FILE...]`,
    /// `npy:EMBEDDINGS[,LABELS]` or `dataset:NAME[/SPLIT]` (paths as given).
    fn from_str(spec: &str) -> Result<Self, String> {
        let (kind, rest) = spec
            .split_once(':')
            .ok_or_else(|| format!("{spec:?}: expected KIND:WHAT, e.g. folder:images/train"))?;
        let parts: Vec<PathBuf> = rest.split(',').map(PathBuf::from).collect();
        let empty = || format!("{spec:?}: nothing after {kind}:");
        if rest.is_empty() {
            return Err(empty());
        }
        match (kind, parts.as_slice()) {
            ("folder", [dir]) => Ok(Source::Folder(dir.clone())),
            ("idx", [images, labels]) => Ok(Source::Idx {
                images: images.clone(),
                labels: labels.clone(),
            }),
            ("cifar10", files) => Ok(Source::Cifar10(files.to_vec())),
            ("npy", [embeddings]) => Ok(Source::Npy {
                embeddings: embeddings.clone(),
                labels: None,
            }),
            ("npy", [embeddings, labels]) => Ok(Source::Npy {
                embeddings: embeddings.clone(),
                labels: Some(labels.clone()),
            }),
            ("dataset", [_]) => {
                let (name, split) = rest.split_once('/').unwrap_or((rest, "train"));
                let section = SourceSection {
                    dataset: Some(name.into()),
                    split: Some(split.into()),
                    ..SourceSection::default()
                };
                source(&section, Path::new("")).map_err(|(_, m)| format!("{spec:?}: {m}"))
            }
            ("folder" | "idx" | "npy" | "dataset", _) => Err(format!(
                "{spec:?}: folder:DIR, idx:IMAGES,LABELS, npy:EMBEDDINGS[,LABELS] or dataset:NAME[/SPLIT]"
            )),
            _ => Err(format!(
                "{spec:?}: unknown kind {kind:?}: folder, idx, cifar10, npy or dataset"
            )),
        }
    }
}

pub fn dataset_id(name: &str) -> Option<oodgate_datasets::DatasetId> {
    use oodgate_datasets::DatasetId;
    match name {
        "mnist" => Some(DatasetId::Mnist),
        "fashion-mnist" | "fashion_mnist" => Some(DatasetId::FashionMnist),
        "cifar10" | "cifar-10" => Some(DatasetId::Cifar10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GateConfig, String> {
        GateConfig::parse(Path::new("/g/gate.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_file_is_the_model_contract() {
        let g = parse("").unwrap();
        assert_eq!(g.file.outputs.embedding, "embedding");
        assert_eq!(
            g.class_output,
            ClassOutput::Probabilities("probabilities".into())
        );
        assert_eq!(g.file.input.scale, 255.0);
        assert_eq!(g.reference, None);
    }

    #[test]
    fn a_full_file_is_read() {
        let g = parse(
            r#"
            name = "shop"
            [input]
            layout = "NCHW"
            colour = "rgb"
            resize = "center-crop"
            crop_fraction = 0.875
            mean = [0.485, 0.456, 0.406]
            std = [0.229, 0.224, 0.225]
            [outputs]
            embedding = "features"
            logits = "logits"
            [lof]
            k = 10
            contamination = 0.02
            [reference]
            folder = "ref"
            [calibration]
            folder = "holdout"
            false_rejection_rate = 0.05
            "#,
        )
        .unwrap();
        assert_eq!(g.class_output, ClassOutput::Logits("logits".into()));
        assert_eq!(g.reference, Some(Source::Folder("/g/ref".into())));
        assert_eq!(
            g.calibration,
            Some((Source::Folder("/g/holdout".into()), 0.05))
        );
        assert_eq!(g.file.input.layout, Some(LayoutName::NCHW));
        assert_eq!(g.file.lof.k, Some(10));
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            ("[input]\nsize = 3\n", "size"),
            ("[inptu]\n", "inptu"),
            ("[input]\ncolour = \"rgb\"\nmean = [0.5]\n", "input.mean"),
            ("[input]\nmean = [0.5, 0.5]\nstd = [1.0]\n", "input.std"),
            ("[input]\nstd = [0.0]\n", "input.std"),
            ("[input]\ncolour = \"cmyk\"\n", "cmyk"),
            ("[input]\npad = 3.0\n", "input.pad"),
            (
                "[outputs]\nprobabilities = \"p\"\nlogits = \"l\"\n",
                "outputs.logits",
            ),
            ("[lof]\nk = 0\n", "lof.k"),
            (
                "[reference]\nfolder = \"a\"\ndataset = \"mnist\"\n",
                "reference",
            ),
            ("[reference]\ndataset = \"svhn\"\n", "reference.dataset"),
            (
                "[calibration]\nfolder = \"a\"\n",
                "calibration.false_rejection_rate",
            ),
            ("name = \"Bad Name\"\n", "name"),
        ];
        for (text, field) in cases {
            let err = parse(text).unwrap_err();
            assert!(
                err.starts_with("/g/gate.toml: ") && err.contains(field),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn command_line_sources() {
        assert_eq!("folder:a/b".parse(), Ok(Source::Folder("a/b".into())));
        assert_eq!(
            "npy:e.npy,l.npy".parse(),
            Ok(Source::Npy {
                embeddings: "e.npy".into(),
                labels: Some("l.npy".into())
            })
        );
        assert_eq!(
            "dataset:fashion-mnist".parse(),
            Ok(Source::Dataset {
                id: oodgate_datasets::DatasetId::FashionMnist,
                split: oodgate_datasets::Split::Train
            })
        );
        for bad in ["folder", "pics:x", "idx:onlyone", "dataset:svhn", "folder:"] {
            assert!(bad.parse::<Source>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_index_hash_follows_what_shapes_the_index_only() {
        let a = parse("[lof]\ncontamination = 0.01\n").unwrap();
        let b = parse("[lof]\ncontamination = 0.05\n").unwrap();
        let c = parse("[input]\nscale = 1.0\n").unwrap();
        assert_eq!(a.index_sha256, b.index_sha256);
        assert_ne!(a.index_sha256, c.index_sha256);
    }
}
