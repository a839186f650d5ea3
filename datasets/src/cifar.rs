//! CIFAR-10 binary batches (`cifar-10-batches-bin/*.bin`).
//!
//! A batch is a run of 3073-byte records: one label byte (0..=9), then the 32x32 image
//! as three 1024-byte planes, red then green then blue (CHW). The reader converts each
//! image to interleaved RGB (HWC), the layout of [`Dataset`].

use std::path::{Path, PathBuf};

use crate::error::{DatasetError, Result};
use crate::{CIFAR10_CLASSES, Dataset, class_names};

/// Image side in pixels.
pub(crate) const SIDE: usize = 32;
/// Pixels per image.
const PLANE: usize = SIDE * SIDE;
/// Bytes per record: label byte + R, G and B planes.
pub const RECORD_BYTES: usize = 1 + 3 * PLANE;
/// Records in each batch of the canonical distribution.
pub(crate) const RECORDS_PER_BATCH: usize = 10_000;

/// File names of the training batches inside `cifar-10-batches-bin/`.
pub(crate) const TRAIN_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// File name of the test batch inside `cifar-10-batches-bin/`.
pub(crate) const TEST_BATCH: &str = "test_batch.bin";

/// Reads one CIFAR-10 batch file into a [`Dataset`] named `name`.
pub fn read_cifar10_batch(name: &str, path: &Path) -> Result<Dataset> {
    read_cifar10_batches(name, &[path.to_path_buf()])
}

/// Reads several CIFAR-10 batch files, in the given order, into one [`Dataset`].
pub(crate) fn read_cifar10_batches(name: &str, paths: &[PathBuf]) -> Result<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        append_batch(path, &mut pixels, &mut labels)?;
    }
    Ok(Dataset {
        name: name.to_string(),
        class_names: class_names(&CIFAR10_CLASSES),
        width: SIDE as u32,
        height: SIDE as u32,
        channels: 3,
        pixels,
        labels,
    })
}

/// Checks one batch file and appends its images (as HWC) and labels.
fn append_batch(path: &Path, pixels: &mut Vec<u8>, labels: &mut Vec<u8>) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    if bytes.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    if bytes.len() % RECORD_BYTES != 0 {
        return Err(DatasetError::CifarSize {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            record: RECORD_BYTES,
        });
    }
    let records = bytes.len() / RECORD_BYTES;
    pixels.reserve(records * 3 * PLANE);
    labels.reserve(records);
    for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if label as usize >= CIFAR10_CLASSES.len() {
            return Err(DatasetError::BadLabel {
                path: path.to_path_buf(),
                index,
                label,
                classes: CIFAR10_CLASSES.len(),
            });
        }
        labels.push(label);
        let (red, rest) = record[1..].split_at(PLANE);
        let (green, blue) = rest.split_at(PLANE);
        for ((&r, &g), &b) in red.iter().zip(green).zip(blue) {
            pixels.extend_from_slice(&[r, g, b]);
        }
    }
    Ok(())
}
