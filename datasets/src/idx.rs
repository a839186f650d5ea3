//! MNIST-style IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw.
//!
//! An IDX file is a big-endian header, a magic number then one `u32` per dimension,
//! followed by the unsigned bytes of the array. Images files have magic 2051 and
//! dimensions `[N, rows, cols]`; labels files have magic 2049 and `[N]`. Whether a file is
//! gzip-compressed is read from its first two bytes, not from its name, so `foo.gz` that
//! was gunzipped in place (or the other way round) still reads.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{DatasetError, Result};
use crate::{Dataset, class_names};

/// Magic number of an IDX images file (unsigned bytes, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 2051;
/// Magic number of an IDX labels file (unsigned bytes, 1 dimension).
pub const LABELS_MAGIC: u32 = 2049;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The images of an IDX images file.
#[derive(Debug, Clone)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height.
    pub rows: u32,
    /// Image width.
    pub cols: u32,
    /// `count * rows * cols` bytes, one grayscale image after another, row-major.
    pub pixels: Vec<u8>,
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    // MultiGzDecoder, not GzDecoder: a gzip file may be several concatenated members
    // (as `cat a.gz b.gz` or some compressors make), and all of them are data.
    let mut out = Vec::with_capacity(raw.len() * 2);
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| DatasetError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Reads an IDX images file (magic 2051, dimensions `[N, rows, cols]`).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let bytes = read_maybe_gzip(path)?;
    let (dims, pixels) = parse_idx(path, bytes, IMAGES_MAGIC, 3)?;
    Ok(IdxImages {
        count: dims[0] as usize,
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Reads an IDX labels file (magic 2049, dimensions `[N]`).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gzip(path)?;
    let (_dims, labels) = parse_idx(path, bytes, LABELS_MAGIC, 1)?;
    Ok(labels)
}

/// Reads an images file and its labels file into a grayscale [`Dataset`].
///
/// Fails when the two files disagree on the number of items, or when a label is not
/// below `classes.len()`.
pub fn load_idx_dataset(
    name: &str,
    images_path: &Path,
    labels_path: &Path,
    classes: &[&str],
) -> Result<Dataset> {
    let images = read_idx_images(images_path)?;
    let labels = read_idx_labels(labels_path)?;
    if images.count != labels.len() {
        return Err(DatasetError::CountMismatch {
            images: images_path.to_path_buf(),
            image_count: images.count,
            labels: labels_path.to_path_buf(),
            label_count: labels.len(),
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes.len())
    {
        return Err(DatasetError::BadLabel {
            path: labels_path.to_path_buf(),
            index,
            label,
            classes: classes.len(),
        });
    }
    Ok(Dataset {
        name: name.to_string(),
        class_names: class_names(classes),
        width: images.cols,
        height: images.rows,
        channels: 1,
        pixels: images.pixels,
        labels,
    })
}

/// Writes an IDX images file (raw, not gzipped): magic 2051, `[count, rows, cols]`, then
/// the pixels.
pub(crate) fn write_idx_images(path: &Path, rows: u32, cols: u32, pixels: &[u8]) -> Result<()> {
    let per_image = rows as usize * cols as usize;
    if per_image == 0 || !pixels.len().is_multiple_of(per_image) {
        return Err(DatasetError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes are not a whole number of {rows}x{cols} images",
                    pixels.len()
                ),
            ),
        ));
    }
    let count = (pixels.len() / per_image) as u32;
    write_idx(path, IMAGES_MAGIC, &[count, rows, cols], pixels)
}

/// Writes an IDX labels file (raw): magic 2049, `[count]`, then the labels.
pub(crate) fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<()> {
    write_idx(path, LABELS_MAGIC, &[labels.len() as u32], labels)
}

/// Writes a grayscale dataset as an IDX images file and an IDX labels file, as MNIST is
/// stored; [`load_idx_dataset`] reads them back.
pub fn write_idx_dataset(dataset: &Dataset, images_path: &Path, labels_path: &Path) -> Result<()> {
    if dataset.channels != 1 {
        return Err(DatasetError::io(
            images_path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "IDX images are grayscale, {} has {} channels",
                    dataset.name, dataset.channels
                ),
            ),
        ));
    }
    write_idx_images(images_path, dataset.height, dataset.width, &dataset.pixels)?;
    write_idx_labels(labels_path, &dataset.labels)
}

fn write_idx(path: &Path, magic: u32, dims: &[u32], data: &[u8]) -> Result<()> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&magic.to_be_bytes());
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    std::fs::write(path, out).map_err(|e| DatasetError::io(path, e))
}

/// Checks an IDX header and returns the dimensions and the data bytes (header removed).
fn parse_idx(
    path: &Path,
    mut bytes: Vec<u8>,
    magic: u32,
    ndims: usize,
) -> Result<(Vec<u32>, Vec<u8>)> {
    let header_len = 4 + 4 * ndims;
    let actual = bytes.len() as u64;
    // Check the magic as soon as there are 4 bytes: a wrong magic on a short file is a
    // more useful message than "truncated".
    if let Some(found) = be_u32(&bytes, 0)
        && found != magic
    {
        return Err(DatasetError::BadMagic {
            path: path.to_path_buf(),
            found,
            expected: magic,
        });
    }
    if bytes.len() < header_len {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            expected: header_len as u64,
            actual,
        });
    }
    let dims: Vec<u32> = (0..ndims)
        .filter_map(|d| be_u32(&bytes, 4 + 4 * d))
        .collect();
    // u64 with checked maths: the dimensions come from the file and may be garbage; an
    // overflow means "more than any file can hold", i.e. truncated.
    let expected = payload_len(&dims)
        .and_then(|p| p.checked_add(header_len as u64))
        .unwrap_or(u64::MAX);
    if actual < expected {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(DatasetError::TrailingBytes {
            path: path.to_path_buf(),
            extra: actual - expected,
        });
    }
    bytes.drain(..header_len);
    Ok((dims, bytes))
}

/// Product of the dimensions, or `None` on overflow.
fn payload_len(dims: &[u32]) -> Option<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
}

/// The big-endian `u32` at `offset`, if the slice is long enough.
fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn parses_a_small_images_file() {
        let bytes = idx(IMAGES_MAGIC, &[2, 1, 3], &[1, 2, 3, 4, 5, 6]);
        let (dims, data) = parse_idx(Path::new("x"), bytes, IMAGES_MAGIC, 3).unwrap();
        assert_eq!(dims, vec![2, 1, 3]);
        assert_eq!(data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn huge_dimensions_are_truncation_not_overflow() {
        let bytes = idx(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[]);
        let err = parse_idx(Path::new("x"), bytes, IMAGES_MAGIC, 3).unwrap_err();
        assert!(matches!(
            err,
            DatasetError::Truncated {
                expected: u64::MAX,
                ..
            }
        ));
    }

    #[test]
    fn short_header_is_truncated() {
        let bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
        let err = parse_idx(Path::new("x"), bytes, IMAGES_MAGIC, 3).unwrap_err();
        assert!(matches!(
            err,
            DatasetError::Truncated {
                expected: 16,
                actual: 4,
                ..
            }
        ));
    }

    #[test]
    fn trailing_bytes_are_reported() {
        let bytes = idx(LABELS_MAGIC, &[2], &[1, 2, 3]);
        let err = parse_idx(Path::new("x"), bytes, LABELS_MAGIC, 1).unwrap_err();
        assert!(matches!(err, DatasetError::TrailingBytes { extra: 1, .. }));
    }
}
