//! Datasets for oodgate: readers for the file formats the project uses, one uniform
//! in-memory [`Dataset`] type, and the lookup (read-only mirror or download cache) and
//! download of MNIST, Fashion-MNIST and CIFAR-10.
//!
//! Modules (private; what other crates use is re-exported here):
//!
//! - `idx`: MNIST-style IDX files, gzip-compressed or raw.
//! - `cifar`: CIFAR-10 binary batches.
//! - `folder`: a folder of PNG/JPEG images, one subfolder per class.
//! - `fetch`: where the data lives ([`DataDir`]), download with SHA-256 checks, and the
//!   named datasets ([`DataDir::mnist`], [`DataDir::fashion_mnist`], [`DataDir::cifar10_test`]).
//! - `synth`: generated evaluation sets close to a digit: letters, typed digits,
//!   doodles (from installed fonts, deterministic per seed; [`SynthSet`]).

mod cifar;
mod error;
mod fetch;
mod folder;
mod idx;
mod synth;

pub use cifar::{RECORD_BYTES as CIFAR10_RECORD_BYTES, read_cifar10_batch};
pub use error::{DatasetError, Result};
pub use fetch::{DataDir, DatasetId, RemoteFile, Split, remote_files};
pub use folder::{FolderEntry, ImageFolder, list_image_folder, load_image_folder};
pub use idx::{
    IMAGES_MAGIC, IdxImages, LABELS_MAGIC, load_idx_dataset, read_idx_images, read_idx_labels,
    read_maybe_gzip, write_idx_dataset,
};
pub use synth::{SynthSet, contact_sheet};

/// MNIST class names, in label order.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Fashion-MNIST class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// CIFAR-10 class names, in label order (which is also their alphabetical order, so an
/// image folder of CIFAR-10 gets the same labels).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// A labelled image dataset held in memory, whatever file format it came from.
///
/// All images share one size and channel count, so image `i` is the fixed-size slice
/// `pixels[i * image_len() .. (i + 1) * image_len()]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Short name for logs and reports, e.g. `mnist-test`.
    pub name: String,
    /// Class names indexed by label.
    pub class_names: Vec<String>,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: u8,
    /// All images, one after another, each row-major and channel-interleaved (HWC).
    pub pixels: Vec<u8>,
    /// One label per image, each below `class_names.len()`.
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the dataset holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps only the first `limit` images (all when `None` or when there are fewer):
    /// the quick runs of the offline tools.
    pub fn truncated(mut self, limit: Option<usize>) -> Self {
        if let Some(n) = limit.filter(|n| *n < self.len()) {
            self.pixels.truncate(n * self.image_len());
            self.labels.truncate(n);
        }
        self
    }

    /// Bytes per image: `height * width * channels`.
    pub fn image_len(&self) -> usize {
        self.width as usize * self.height as usize * self.channels as usize
    }

    /// Pixels of image `i` (HWC). Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Label of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// Number of images of each class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &label in &self.labels {
            if let Some(c) = counts.get_mut(label as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// Owned class names from a constant table.
pub(crate) fn class_names(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_slices_follow_hwc_layout() {
        let ds = Dataset {
            name: "t".into(),
            class_names: class_names(&["a", "b"]),
            width: 2,
            height: 1,
            channels: 3,
            pixels: (0..12).collect(),
            labels: vec![1, 0],
        };
        assert_eq!(ds.len(), 2);
        assert!(!ds.is_empty());
        assert_eq!(ds.image_len(), 6);
        assert_eq!(ds.image(1), &[6, 7, 8, 9, 10, 11]);
        assert_eq!(ds.label(0), 1);
        assert_eq!(ds.class_counts(), vec![1, 1]);
    }
}
