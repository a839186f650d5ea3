//! A gate's reference (and calibration) set: read from any of the forms `gate.toml`
//! names, embedded through the same preprocessing as client images, and recorded in the
//! index artifact (fingerprint, and where each item came from).
//!
//! Images are decoded, preprocessed and embedded a chunk at a time, so a folder of
//! large photos never sits in memory as floats all at once.

use std::path::{Path, PathBuf};

use oodgate_datasets::{Dataset, DatasetId, Split};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::embed::{EmbedError, Embedder};
use crate::core::gate::Source;
use crate::core::preprocess::{ImageInput, Limits, prepare};

/// Images per model run while embedding a set.
const CHUNK: usize = 256;
/// Unreadable files named in an error, at most (the count is always given).
const LISTED: usize = 10;
/// Reference images may be photos: larger than what a client may send.
const REFERENCE_LIMITS: Limits = Limits {
    max_side: 32_768,
    max_pixels: 256 * 1024 * 1024,
};

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Data(#[from] oodgate_datasets::DatasetError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: {count} of {total} images are unreadable ({listing}); fix or remove them, or pass --skip-unreadable to leave them out"
    )]
    Unreadable {
        path: PathBuf,
        count: usize,
        total: usize,
        listing: String,
    },
    #[error("{path}: every image is unreadable ({listing})")]
    NothingReadable { path: PathBuf, listing: String },
    #[error("{path}: class folder {folder:?} is not in classes.json ({classes})")]
    UnknownClass {
        path: PathBuf,
        folder: String,
        classes: String,
    },
    #[error("{path}: label {label} of item {item}, but the model has {classes} classes")]
    Label {
        path: PathBuf,
        item: usize,
        label: u64,
        classes: usize,
    },
    #[error("{path}: {message}")]
    Npy { path: PathBuf, message: String },
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

/// What an index records about one set (stored in the artifact's provenance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetRecord {
    /// dataset, folder, idx, cifar10 or npy.
    pub kind: String,
    /// The dataset's name and split, or the path as it was read.
    pub location: String,
    /// SHA-256 over the files' names and checksums, sorted by name.
    pub fingerprint: String,
    pub files: Vec<FileRecord>,
    /// Items indexed (unreadable ones skipped are not counted).
    pub count: usize,
    /// Folder sets: each item's path relative to `location`, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Files left out as unreadable (only with --skip-unreadable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// What an index artifact records about where its items came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// [`crate::core::gate::GateConfig::index_sha256`] of the gate it was built for
    /// (None: a model folder without gate.toml).
    pub gate_config: Option<String>,
    pub reference: SetRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// The default threshold fixed on a held-out in-distribution set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub set: SetRecord,
    /// The share of the calibration set the default threshold rejects, as asked.
    pub false_rejection_rate: f64,
    /// LOF alone: its threshold at that rate.
    pub lof_threshold: f64,
    /// LOF or distance: both parts' thresholds, each at `part_rate` of the set, chosen
    /// so that the two together reject at most `false_rejection_rate` of it.
    pub fused_lof_threshold: f64,
    pub fused_distance_threshold: f64,
    pub part_rate: f64,
    /// Shares of the calibration set rejected, measured: LOF alone, LOF or distance.
    pub rejected_lof: f64,
    pub rejected_fused: f64,
}

/// One file a set was read from. For a folder, one per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub sha256: String,
    /// Items the file holds, in id order (for IDX, CIFAR-10 and npy files).
    #[serde(default)]
    pub items: usize,
}

impl SetRecord {
    /// Where item `id` came from: a folder image's relative path, else `file#index`.
    pub fn item(&self, id: usize) -> Option<String> {
        if !self.paths.is_empty() {
            return self.paths.get(id).cloned();
        }
        let mut first = 0;
        for file in &self.files {
            if id < first + file.items {
                return Some(format!("{}#{}", file.name, id - first));
            }
            first += file.items;
        }
        None
    }
}

/// A set embedded by the model: row-major embeddings, a label per row, the record.
pub(crate) struct EmbeddedSet {
    pub embeddings: Vec<f32>,
    pub labels: Vec<u8>,
    pub record: SetRecord,
}

/// How to read a set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadOptions<'a> {
    /// The gate's class names: a folder's subfolders are matched to them by name.
    pub classes: &'a [String],
    /// Leave unreadable images out (counted and listed in the record) instead of
    /// refusing the set.
    pub skip_unreadable: bool,
    pub progress: bool,
}

/// Reads `source` and embeds it with `embedder` (npy sets are embeddings already).
pub(crate) fn embed_source(
    source: &Source,
    embedder: &Embedder,
    options: ReadOptions<'_>,
) -> Result<EmbeddedSet, ReferenceError> {
    match source {
        Source::Dataset { id, split } => {
            let data = oodgate_datasets::DataDir::from_env()?;
            let dataset = data.load(*id, *split)?;
            let files = dataset_files(*id, *split);
            let location = format!("{}/{}", dataset_name(*id), split.as_str());
            embed_dataset_set(dataset, embedder, options, "dataset", location, files)
        }
        Source::Idx { images, labels } => {
            let classes: Vec<&str> = options.classes.iter().map(String::as_str).collect();
            let dataset =
                oodgate_datasets::load_idx_dataset(&file_name(images), images, labels, &classes)?;
            let files = vec![hash_file(images, dataset.len())?, hash_file(labels, 0)?];
            embed_dataset_set(
                dataset,
                embedder,
                options,
                "idx",
                images.display().to_string(),
                files,
            )
        }
        Source::Cifar10(paths) => {
            let mut files = Vec::new();
            let mut all: Option<Dataset> = None;
            for path in paths {
                let batch = oodgate_datasets::read_cifar10_batch(&file_name(path), path)?;
                files.push(hash_file(path, batch.len())?);
                all = Some(match all {
                    None => batch,
                    Some(mut all) => {
                        all.pixels.extend_from_slice(&batch.pixels);
                        all.labels.extend_from_slice(&batch.labels);
                        all
                    }
                });
            }
            let dataset = all.expect("a cifar10 source lists at least one file");
            let location = paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(",");
            embed_dataset_set(dataset, embedder, options, "cifar10", location, files)
        }
        Source::Folder(root) => embed_folder(root, embedder, options),
        Source::Npy { embeddings, labels } => {
            read_npy(embeddings, labels.as_deref(), embedder, options)
        }
    }
}

fn dataset_name(id: DatasetId) -> &'static str {
    match id {
        DatasetId::Mnist => "mnist",
        DatasetId::FashionMnist => "fashion-mnist",
        DatasetId::Cifar10 => "cifar10",
    }
}

/// The files a known dataset is read from, with the checksums its download checks.
fn dataset_files(id: DatasetId, split: Split) -> Vec<FileRecord> {
    oodgate_datasets::remote_files(id)
        .into_iter()
        .filter(|(path, _)| {
            let name = path.to_string_lossy();
            // MNIST-style files name their split (train-*, t10k-*); CIFAR-10's archive
            // holds both.
            match split {
                Split::Train => !name.contains("t10k"),
                Split::Test => !name.contains("train"),
            }
        })
        .map(|(path, file)| FileRecord {
            name: path.display().to_string(),
            sha256: file.sha256.to_string(),
            items: 0,
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn hash_file(path: &Path, items: usize) -> Result<FileRecord, ReferenceError> {
    let bytes = std::fs::read(path).map_err(|source| ReferenceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(FileRecord {
        name: file_name(path),
        sha256: hex::encode(Sha256::digest(&bytes)),
        items,
    })
}

fn fingerprint(files: &[FileRecord]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.name))
        .collect();
    lines.sort();
    hex::encode(Sha256::digest(lines.concat()))
}

fn check_labels(path: &Path, labels: &[u8], classes: usize) -> Result<(), ReferenceError> {
    match labels.iter().position(|&l| usize::from(l) >= classes) {
        Some(item) => Err(ReferenceError::Label {
            path: path.to_path_buf(),
            item,
            label: u64::from(labels[item]),
            classes,
        }),
        None => Ok(()),
    }
}

/// A set already in memory as pixels: the same path as `embed_dataset` (and so as the
/// digits models' index before gates existed).
fn embed_dataset_set(
    dataset: Dataset,
    embedder: &Embedder,
    options: ReadOptions<'_>,
    kind: &str,
    location: String,
    files: Vec<FileRecord>,
) -> Result<EmbeddedSet, ReferenceError> {
    check_labels(Path::new(&location), &dataset.labels, options.classes.len())?;
    let embedded = crate::core::embed::embed_dataset(embedder, &dataset, options.progress)?;
    let record = SetRecord {
        kind: kind.into(),
        location,
        fingerprint: fingerprint(&files),
        files,
        count: dataset.len(),
        paths: Vec::new(),
        skipped: Vec::new(),
    };
    Ok(EmbeddedSet {
        embeddings: embedded.embeddings,
        labels: dataset.labels,
        record,
    })
}

/// One folder image, read, hashed and preprocessed.
struct FolderItem {
    relative: String,
    sha256: String,
    label: u8,
    pixels: Result<Vec<f32>, String>,
}

fn embed_folder(
    root: &Path,
    embedder: &Embedder,
    options: ReadOptions<'_>,
) -> Result<EmbeddedSet, ReferenceError> {
    let listing = oodgate_datasets::list_image_folder(root)?;
    // Subfolders are classes by name: their sorted order need not be classes.json's.
    let mut label_of = Vec::with_capacity(listing.class_names.len());
    for folder in &listing.class_names {
        let label = options
            .classes
            .iter()
            .position(|c| c == folder)
            .ok_or_else(|| ReferenceError::UnknownClass {
                path: root.to_path_buf(),
                folder: folder.clone(),
                classes: options.classes.join(", "),
            })?;
        label_of.push(label as u8);
    }
    let spec = embedder.input;
    let total = listing.entries.len();
    let bar = options
        .progress
        .then(|| oodgate_lof::progress_bar(total, format!("embed {}", root.display())));
    let mut embeddings = Vec::new();
    let mut labels = Vec::new();
    let mut files = Vec::new();
    let mut paths = Vec::new();
    let mut unreadable = Vec::new();
    for chunk in listing.entries.chunks(CHUNK) {
        let items: Vec<FolderItem> = chunk
            .par_iter()
            .map(|entry| {
                let relative = entry
                    .path
                    .strip_prefix(root)
                    .unwrap_or(&entry.path)
                    .to_string_lossy()
                    .into_owned();
                let label = label_of[usize::from(entry.label)];
                match std::fs::read(&entry.path) {
                    Ok(bytes) => FolderItem {
                        sha256: hex::encode(Sha256::digest(&bytes)),
                        pixels: prepare(ImageInput::Encoded(&bytes), &spec, &REFERENCE_LIMITS)
                            .map_err(|e| e.to_string()),
                        relative,
                        label,
                    },
                    Err(e) => FolderItem {
                        sha256: String::new(),
                        pixels: Err(e.to_string()),
                        relative,
                        label,
                    },
                }
            })
            .collect();
        let mut pixels = Vec::with_capacity(items.len() * spec.len());
        for item in items {
            match item.pixels {
                Ok(values) => {
                    pixels.extend_from_slice(&values);
                    labels.push(item.label);
                    files.push(FileRecord {
                        name: item.relative.clone(),
                        sha256: item.sha256,
                        items: 1,
                    });
                    paths.push(item.relative);
                }
                Err(why) => unreadable.push(format!("{}: {why}", item.relative)),
            }
        }
        let n = pixels.len() / spec.len();
        embeddings.extend_from_slice(&embedder.run(&pixels, n)?.embeddings);
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    let listing_text = |all: &[String]| {
        let mut shown = all
            .iter()
            .take(LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if all.len() > LISTED {
            shown.push_str(&format!("; and {} more", all.len() - LISTED));
        }
        shown
    };
    if labels.is_empty() {
        return Err(ReferenceError::NothingReadable {
            path: root.to_path_buf(),
            listing: listing_text(&unreadable),
        });
    }
    if !unreadable.is_empty() {
        if !options.skip_unreadable {
            return Err(ReferenceError::Unreadable {
                path: root.to_path_buf(),
                count: unreadable.len(),
                total,
                listing: listing_text(&unreadable),
            });
        }
        tracing::warn!(
            path = %root.display(),
            skipped = unreadable.len(),
            total,
            "unreadable reference images left out"
        );
    }
    Ok(EmbeddedSet {
        embeddings,
        record: SetRecord {
            kind: "folder".into(),
            location: root.display().to_string(),
            fingerprint: fingerprint(&files),
            count: labels.len(),
            files,
            paths,
            skipped: unreadable,
        },
        labels,
    })
}

/// Integer labels `[N]` of any common integer type.
fn read_npy_labels(path: &Path) -> Result<Vec<i64>, ReferenceError> {
    use ndarray_npy::ReadNpyExt;
    let bytes = std::fs::read(path).map_err(|source| ReferenceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let read = |bytes: &[u8]| -> Option<Vec<i64>> {
        use ndarray::Array1;
        if let Ok(a) = Array1::<i64>::read_npy(bytes) {
            return Some(a.to_vec());
        }
        if let Ok(a) = Array1::<i32>::read_npy(bytes) {
            return Some(a.iter().map(|&v| i64::from(v)).collect());
        }
        if let Ok(a) = Array1::<u8>::read_npy(bytes) {
            return Some(a.iter().map(|&v| i64::from(v)).collect());
        }
        if let Ok(a) = Array1::<i16>::read_npy(bytes) {
            return Some(a.iter().map(|&v| i64::from(v)).collect());
        }
        None
    };
    read(&bytes).ok_or_else(|| ReferenceError::Npy {
        path: path.to_path_buf(),
        message: "expected integer labels (int64, int32, int16 or uint8) of shape [N]".into(),
    })
}

/// Precomputed embeddings: float32 `[N, D]` with D the model's embedding width, and
/// optional integer labels `[N]` (without them every item has label 0).
fn read_npy(
    path: &Path,
    labels_path: Option<&Path>,
    embedder: &Embedder,
    options: ReadOptions<'_>,
) -> Result<EmbeddedSet, ReferenceError> {
    use ndarray_npy::ReadNpyExt;
    let npy_error = |path: &Path, message: String| ReferenceError::Npy {
        path: path.to_path_buf(),
        message,
    };
    let open = |path: &Path| {
        std::fs::File::open(path).map_err(|source| ReferenceError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let array = ndarray::Array2::<f32>::read_npy(open(path)?).map_err(|e| {
        npy_error(
            path,
            format!("expected a float32 array of shape [N, D]: {e}"),
        )
    })?;
    let (n, dim) = array.dim();
    if dim != embedder.embedding_dim {
        return Err(npy_error(
            path,
            format!(
                "embeddings are {dim} wide, the model's embedding output is {}",
                embedder.embedding_dim
            ),
        ));
    }
    if array.iter().any(|v| !v.is_finite()) {
        return Err(npy_error(path, "holds NaN or infinite values".into()));
    }
    let mut files = vec![hash_file(path, n)?];
    let labels = match labels_path {
        None => vec![0; n],
        Some(labels_path) => {
            let raw = read_npy_labels(labels_path)?;
            if raw.len() != n {
                return Err(npy_error(
                    labels_path,
                    format!("{} labels for {n} embeddings", raw.len()),
                ));
            }
            if let Some((item, &label)) = raw
                .iter()
                .enumerate()
                .find(|(_, l)| **l < 0 || **l as usize >= options.classes.len())
            {
                return Err(ReferenceError::Label {
                    path: labels_path.to_path_buf(),
                    item,
                    label: label as u64,
                    classes: options.classes.len(),
                });
            }
            files.push(hash_file(labels_path, 0)?);
            raw.iter().map(|&l| l as u8).collect()
        }
    };
    let embeddings = array.into_raw_vec_and_offset().0;
    Ok(EmbeddedSet {
        embeddings,
        labels,
        record: SetRecord {
            kind: "npy".into(),
            location: path.display().to_string(),
            fingerprint: fingerprint(&files),
            files,
            count: n,
            paths: Vec::new(),
            skipped: Vec::new(),
        },
    })
}

/// Fixes the default thresholds on an embedded held-out set: LOF alone at `rate`, and
/// LOF or distance with each part at the largest common rate at which the two together
/// reject at most `rate` of the set (found by bisection; the combined share only grows
/// with the per-part rate).
pub(crate) fn calibrate(
    index: &oodgate_lof::LofIndex,
    set: EmbeddedSet,
    rate: f64,
) -> Result<Calibration, oodgate_lof::LofError> {
    use oodgate_lof::{Thresholds, Verdict, decide, percentile_linear};
    let dim = index.dim();
    let n = set.embeddings.len() / dim;
    let queries = ndarray::ArrayView2::from_shape((n, dim), &set.embeddings)
        .map_err(|e| oodgate_lof::LofError::InvalidInput(e.to_string()))?;
    let results = index.query(queries, oodgate_lof::SearchMode::Exact)?;
    let scores: Vec<f64> = results.iter().map(|r| r.score).collect();
    let kdist: Vec<f64> = results
        .iter()
        .map(|r| r.neighbours.last().map_or(0.0, |nb| nb.distance))
        .collect();
    let mut sorted_scores = scores.clone();
    sorted_scores.sort_by(f64::total_cmp);
    let mut sorted_kdist = kdist.clone();
    sorted_kdist.sort_by(f64::total_cmp);
    let at = |part: f64| Thresholds {
        lof: percentile_linear(&sorted_scores, 100.0 * part),
        distance: Some(percentile_linear(&sorted_kdist, 100.0 - 100.0 * part)),
    };
    let rejected = |t: Thresholds| {
        let count = scores
            .iter()
            .zip(&kdist)
            .filter(|(s, d)| decide(**s, **d, t).verdict == Verdict::Reject)
            .count();
        count as f64 / n as f64
    };
    let lof_only = Thresholds {
        lof: at(rate).lof,
        distance: None,
    };
    let (mut low, mut high) = (0.0, rate);
    if rejected(at(high)) <= rate {
        low = high;
    }
    for _ in 0..40 {
        if high - low < 1e-9 {
            break;
        }
        let mid = (low + high) / 2.0;
        if rejected(at(mid)) <= rate {
            low = mid;
        } else {
            high = mid;
        }
    }
    let fused = at(low);
    Ok(Calibration {
        false_rejection_rate: rate,
        lof_threshold: lof_only.lof,
        fused_lof_threshold: fused.lof,
        fused_distance_threshold: fused.distance.expect("set by at()"),
        part_rate: low,
        rejected_lof: rejected(lof_only),
        rejected_fused: rejected(fused),
        set: set.record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_named_by_path_or_by_file_and_position() {
        let folder = SetRecord {
            kind: "folder".into(),
            location: "/r".into(),
            fingerprint: String::new(),
            files: Vec::new(),
            count: 2,
            paths: vec!["cat/a.png".into(), "dog/b.jpg".into()],
            skipped: Vec::new(),
        };
        assert_eq!(folder.item(1).as_deref(), Some("dog/b.jpg"));
        assert_eq!(folder.item(2), None);
        let batches = SetRecord {
            paths: Vec::new(),
            files: vec![
                FileRecord {
                    name: "data_batch_1.bin".into(),
                    sha256: String::new(),
                    items: 3,
                },
                FileRecord {
                    name: "data_batch_2.bin".into(),
                    sha256: String::new(),
                    items: 3,
                },
            ],
            ..folder
        };
        assert_eq!(batches.item(4).as_deref(), Some("data_batch_2.bin#1"));
        assert_eq!(batches.item(6), None);
    }

    #[test]
    fn the_fingerprint_ignores_listing_order() {
        let a = FileRecord {
            name: "a".into(),
            sha256: "1".into(),
            items: 1,
        };
        let b = FileRecord {
            name: "b".into(),
            sha256: "2".into(),
            items: 1,
        };
        assert_eq!(
            fingerprint(&[a.clone(), b.clone()]),
            fingerprint(&[b.clone(), a.clone()])
        );
        let b2 = FileRecord {
            sha256: "3".into(),
            ..b.clone()
        };
        assert_ne!(fingerprint(&[a.clone(), b2]), fingerprint(&[a, b]));
    }
}
