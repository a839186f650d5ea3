//! What to replay: the three test sets and the three synthetic near-digit sets by name,
//! or any IDX file or image folder.

use std::path::PathBuf;

use anyhow::{Context, bail};
use oodgate_datasets::{
    DataDir, Dataset, MNIST_CLASSES, Split, SynthSet, load_idx_dataset, load_image_folder,
    read_idx_images,
};

/// A named set of images to send.
pub struct ReplaySet {
    /// Shown in the table and, unless `--source` says otherwise, sent as the source label.
    pub name: String,
    pub dataset: Dataset,
    /// Labels are digits the model was trained on: the classifier's accuracy is measured.
    pub labelled_digits: bool,
}

impl ReplaySet {
    /// `mnist`, `fashion-mnist`, `cifar10` (test splits; CIFAR-10 as its original 32x32
    /// RGB images), `letters`, `doodles`, `typed-digits` (synthetic, generated at their
    /// default seeds from the installed Debian fonts; typed digits are labelled digits),
    /// `idx:IMAGES[,LABELS]` or `folder:DIR`.
    pub fn load(spec: &str, data: &DataDir) -> anyhow::Result<Self> {
        let (name, dataset, labelled_digits) = match spec {
            "mnist" => ("mnist".into(), data.mnist(Split::Test)?, true),
            "fashion-mnist" => (
                "fashion-mnist".into(),
                data.fashion_mnist(Split::Test)?,
                false,
            ),
            "cifar10" => ("cifar10".into(), data.cifar10_test()?, false),
            _ => {
                if let Some(set) = SynthSet::from_name(spec) {
                    let dataset = set
                        .generate(set.default_seed())
                        .with_context(|| format!("generating the synthetic set {spec}"))?;
                    (spec.to_owned(), dataset, set.labelled_digits())
                } else if let Some(paths) = spec.strip_prefix("idx:") {
                    load_idx(paths)?
                } else if let Some(dir) = spec.strip_prefix("folder:") {
                    let dataset = load_image_folder(dir.as_ref())
                        .with_context(|| format!("image folder {dir}"))?;
                    (dataset.name.clone(), dataset, false)
                } else {
                    bail!(
                        "unknown set {spec:?}: use mnist, fashion-mnist, cifar10, letters, doodles, typed-digits, idx:IMAGES[,LABELS] or folder:DIR"
                    )
                }
            }
        };
        Ok(Self {
            name,
            dataset,
            labelled_digits,
        })
    }

    /// Keeps the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.dataset.len());
        self.dataset.pixels.truncate(n * self.dataset.image_len());
        self.dataset.labels.truncate(n);
    }

    pub fn len(&self) -> usize {
        self.dataset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dataset.is_empty()
    }
}

/// An IDX images file, with digit labels when a labels file is given.
fn load_idx(paths: &str) -> anyhow::Result<(String, Dataset, bool)> {
    let (images_path, labels_path) = match paths.split_once(',') {
        Some((images, labels)) => (PathBuf::from(images), Some(PathBuf::from(labels))),
        None => (PathBuf::from(paths), None),
    };
    let name = images_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| paths.to_owned());
    if let Some(labels_path) = labels_path {
        let dataset = load_idx_dataset(&name, &images_path, &labels_path, &MNIST_CLASSES)?;
        return Ok((name, dataset, true));
    }
    let images = read_idx_images(&images_path)?;
    let dataset = Dataset {
        name: name.clone(),
        class_names: vec!["unlabelled".into()],
        width: images.cols,
        height: images.rows,
        channels: 1,
        labels: vec![0; images.count],
        pixels: images.pixels,
    };
    Ok((name, dataset, false))
}
