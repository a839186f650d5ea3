//! The readers on small files made here: good files read back exactly, and each kind of
//! damage gives its own error variant, with a message naming the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use image::{GrayImage, ImageFormat, Rgb, RgbImage};
use oodgate_datasets::{
    CIFAR10_CLASSES, CIFAR10_RECORD_BYTES as RECORD_BYTES, DatasetError, IMAGES_MAGIC,
    LABELS_MAGIC, list_image_folder, load_idx_dataset, load_image_folder, read_cifar10_batch,
    read_idx_images, read_idx_labels,
};
use tempfile::TempDir;

// ---------- helpers ----------

fn tempdir() -> TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// An IDX file's bytes.
fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, bytes).expect("write");
    path
}

/// Asserts that the error's message names `file`.
fn assert_names(err: &DatasetError, file: &str) {
    let msg = err.to_string();
    assert!(msg.contains(file), "message {msg:?} should name {file}");
}

fn save_gray(dir: &Path, name: &str, w: u32, h: u32, value: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    GrayImage::from_pixel(w, h, image::Luma([value]))
        .save_with_format(&path, ImageFormat::Png)
        .expect("png");
    path
}

fn save_rgb(dir: &Path, name: &str, w: u32, h: u32, rgb: [u8; 3]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    RgbImage::from_pixel(w, h, Rgb(rgb))
        .save_with_format(&path, ImageFormat::Png)
        .expect("png");
    path
}

// ---------- IDX ----------

#[test]
fn idx_raw_and_gzip_read_back() {
    let dir = tempdir();
    let pixels: Vec<u8> = (0..12).collect();
    let images = idx_bytes(IMAGES_MAGIC, &[3, 2, 2], &pixels);
    let labels = idx_bytes(LABELS_MAGIC, &[3], &[2, 0, 1]);
    for (images_file, labels_file) in [
        (
            write(dir.path(), "i", &images),
            write(dir.path(), "l", &labels),
        ),
        (
            write(dir.path(), "i.gz", &gzip(&images)),
            write(dir.path(), "l.gz", &gzip(&labels)),
        ),
    ] {
        let ds =
            load_idx_dataset("toy", &images_file, &labels_file, &["a", "b", "c"]).expect("read");
        assert_eq!((ds.len(), ds.width, ds.height, ds.channels), (3, 2, 2, 1));
        assert_eq!(ds.image(1), &[4, 5, 6, 7]);
        assert_eq!(ds.labels, vec![2, 0, 1]);
        assert_eq!(ds.class_names, vec!["a", "b", "c"]);
    }
}

#[test]
fn idx_truncated_raw() {
    let dir = tempdir();
    // Header promises 3 images of 2x2 (16 + 12 bytes); only 5 pixel bytes follow.
    let path = write(
        dir.path(),
        "short-images",
        &idx_bytes(IMAGES_MAGIC, &[3, 2, 2], &[0; 5]),
    );
    let err = read_idx_images(&path).expect_err("truncated");
    assert!(
        matches!(
            err,
            DatasetError::Truncated {
                expected: 28,
                actual: 21,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, "short-images");
}

#[test]
fn idx_truncated_inside_gzip() {
    let dir = tempdir();
    // A complete gzip stream of an IDX file that is itself cut short.
    let path = write(
        dir.path(),
        "short-labels.gz",
        &gzip(&idx_bytes(LABELS_MAGIC, &[10], &[1; 4])),
    );
    let err = read_idx_labels(&path).expect_err("truncated");
    assert!(matches!(err, DatasetError::Truncated { .. }), "{err:?}");
    assert_names(&err, "short-labels.gz");
}

#[test]
fn idx_cut_gzip_stream() {
    let dir = tempdir();
    // A good IDX file, but its gzip stream is cut in the middle (a partial download).
    let full = gzip(&idx_bytes(IMAGES_MAGIC, &[50, 28, 28], &[7; 50 * 784]));
    let path = write(dir.path(), "cut-images.gz", &full[..full.len() / 2]);
    let err = read_idx_images(&path).expect_err("cut");
    assert!(matches!(err, DatasetError::Gzip { .. }), "{err:?}");
    assert_names(&err, "cut-images.gz");
}

#[test]
fn idx_wrong_magic() {
    let dir = tempdir();
    // A labels file handed to the images reader.
    let path = write(
        dir.path(),
        "labels-not-images",
        &idx_bytes(LABELS_MAGIC, &[2], &[0, 1]),
    );
    let err = read_idx_images(&path).expect_err("wrong magic");
    assert!(
        matches!(
            err,
            DatasetError::BadMagic {
                found: LABELS_MAGIC,
                expected: IMAGES_MAGIC,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, "labels-not-images");
}

#[test]
fn idx_trailing_garbage() {
    let dir = tempdir();
    let path = write(
        dir.path(),
        "long-labels",
        &idx_bytes(LABELS_MAGIC, &[2], &[0, 1, 99, 99]),
    );
    let err = read_idx_labels(&path).expect_err("trailing");
    assert!(
        matches!(err, DatasetError::TrailingBytes { extra: 2, .. }),
        "{err:?}"
    );
    assert_names(&err, "long-labels");
}

#[test]
fn idx_image_label_count_mismatch() {
    let dir = tempdir();
    let images = write(
        dir.path(),
        "three-images",
        &idx_bytes(IMAGES_MAGIC, &[3, 1, 1], &[0, 1, 2]),
    );
    let labels = write(
        dir.path(),
        "two-labels",
        &idx_bytes(LABELS_MAGIC, &[2], &[0, 1]),
    );
    let err = load_idx_dataset("x", &images, &labels, &["a", "b"]).expect_err("mismatch");
    assert!(
        matches!(
            err,
            DatasetError::CountMismatch {
                image_count: 3,
                label_count: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, "three-images");
    assert_names(&err, "two-labels");
}

#[test]
fn idx_label_out_of_range() {
    let dir = tempdir();
    let images = write(
        dir.path(),
        "imgs",
        &idx_bytes(IMAGES_MAGIC, &[2, 1, 1], &[0, 1]),
    );
    let labels = write(
        dir.path(),
        "bad-labels",
        &idx_bytes(LABELS_MAGIC, &[2], &[1, 10]),
    );
    let err = load_idx_dataset("x", &images, &labels, &MNIST_TEN).expect_err("bad label");
    assert!(
        matches!(
            err,
            DatasetError::BadLabel {
                index: 1,
                label: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, "bad-labels");
}

const MNIST_TEN: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

#[test]
fn idx_missing_file_is_an_io_error_naming_it() {
    let dir = tempdir();
    let err = read_idx_labels(&dir.path().join("nowhere.gz")).expect_err("missing");
    assert!(matches!(err, DatasetError::Io { .. }), "{err:?}");
    assert_names(&err, "nowhere.gz");
}

// ---------- CIFAR-10 ----------

/// One CIFAR record: label, then R, G, B planes given by functions of the pixel index.
fn cifar_record(label: u8, plane: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    let mut rec = vec![label];
    for channel in 0..3 {
        rec.extend((0..1024).map(|i| plane(channel, i)));
    }
    rec
}

#[test]
fn cifar_two_records_convert_chw_to_hwc() {
    let dir = tempdir();
    // Every value encodes its record, channel and position, so any mix-up shows.
    let value =
        |record: usize, channel: usize, i: usize| ((record * 7 + channel * 50 + i) % 251) as u8;
    let mut bytes = cifar_record(3, |c, i| value(0, c, i));
    bytes.extend(cifar_record(9, |c, i| value(1, c, i)));
    assert_eq!(bytes.len(), 2 * RECORD_BYTES);
    let path = write(dir.path(), "two.bin", &bytes);

    let ds = read_cifar10_batch("two", &path).expect("read");
    assert_eq!((ds.len(), ds.width, ds.height, ds.channels), (2, 32, 32, 3));
    assert_eq!(ds.labels, vec![3, 9]);
    assert_eq!(ds.class_names, CIFAR10_CLASSES);
    for record in 0..2 {
        let image = ds.image(record);
        for (y, x) in [(0, 0), (0, 1), (1, 0), (17, 5), (31, 31)] {
            let i = y * 32 + x;
            assert_eq!(
                &image[i * 3..i * 3 + 3],
                &[
                    value(record, 0, i),
                    value(record, 1, i),
                    value(record, 2, i)
                ],
                "record {record} pixel ({y},{x})"
            );
        }
    }
}

#[test]
fn cifar_bad_size() {
    let dir = tempdir();
    let path = write(dir.path(), "odd.bin", &vec![0; RECORD_BYTES + 1]);
    let err = read_cifar10_batch("x", &path).expect_err("bad size");
    assert!(
        matches!(err, DatasetError::CifarSize { size, .. } if size == RECORD_BYTES as u64 + 1),
        "{err:?}"
    );
    assert_names(&err, "odd.bin");
}

#[test]
fn cifar_bad_label() {
    let dir = tempdir();
    let mut bytes = cifar_record(0, |_, _| 0);
    bytes.extend(cifar_record(10, |_, _| 0));
    let path = write(dir.path(), "label10.bin", &bytes);
    let err = read_cifar10_batch("x", &path).expect_err("bad label");
    assert!(
        matches!(
            err,
            DatasetError::BadLabel {
                index: 1,
                label: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, "label10.bin");
}

#[test]
fn cifar_empty_file() {
    let dir = tempdir();
    let path = write(dir.path(), "empty.bin", &[]);
    let err = read_cifar10_batch("x", &path).expect_err("empty");
    assert!(matches!(err, DatasetError::Empty { .. }), "{err:?}");
    assert_names(&err, "empty.bin");
}

// ---------- image folders ----------

#[test]
fn folder_listing_is_sorted_and_skips_hidden_entries() {
    let dir = tempdir();
    // Created out of order on purpose.
    save_gray(dir.path(), "zebra/b.png", 2, 2, 1);
    save_gray(dir.path(), "zebra/a.png", 2, 2, 2);
    save_gray(dir.path(), "ant/c.png", 2, 2, 3);
    write(dir.path(), "ant/.DS_Store", b"junk");
    write(dir.path(), "README.txt", b"root files are not classes");
    save_gray(dir.path(), ".hidden/x.png", 2, 2, 0);

    let listing = list_image_folder(dir.path()).expect("list");
    assert_eq!(listing.class_names, vec!["ant", "zebra"]);
    let got: Vec<(String, u8)> = listing
        .entries
        .iter()
        .map(|e| {
            let rel = e.path.strip_prefix(dir.path()).expect("inside");
            (rel.to_string_lossy().into_owned(), e.label)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("ant/c.png".to_string(), 0),
            ("zebra/a.png".to_string(), 1),
            ("zebra/b.png".to_string(), 1),
        ]
    );
}

#[test]
fn folder_all_gray_keeps_one_channel() {
    let dir = tempdir();
    save_gray(dir.path(), "a/1.png", 3, 2, 10);
    save_gray(dir.path(), "b/1.png", 3, 2, 20);
    let ds = load_image_folder(dir.path()).expect("load");
    assert_eq!((ds.len(), ds.width, ds.height, ds.channels), (2, 3, 2, 1));
    assert_eq!(ds.image(0), &[10; 6]);
    assert_eq!(ds.image(1), &[20; 6]);
    assert_eq!(ds.labels, vec![0, 1]);
}

#[test]
fn folder_with_any_color_image_becomes_rgb() {
    let dir = tempdir();
    save_gray(dir.path(), "a/1.png", 2, 2, 7);
    save_rgb(dir.path(), "b/1.png", 2, 2, [1, 2, 3]);
    let ds = load_image_folder(dir.path()).expect("load");
    assert_eq!(ds.channels, 3);
    assert_eq!(ds.image(0), &[7; 12], "gray replicated to RGB");
    assert_eq!(ds.image(1), &[1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
}

#[test]
fn folder_with_undecodable_file() {
    let dir = tempdir();
    save_gray(dir.path(), "a/good.png", 2, 2, 0);
    write(dir.path(), "a/broken.png", b"\x89PNG\r\n\x1a\nnot really");
    let err = load_image_folder(dir.path()).expect_err("undecodable");
    assert!(matches!(err, DatasetError::Decode { .. }), "{err:?}");
    assert_names(&err, "broken.png");
}

#[test]
fn folder_with_mixed_sizes() {
    let dir = tempdir();
    save_gray(dir.path(), "a/first.png", 4, 4, 0);
    save_gray(dir.path(), "b/odd.png", 5, 4, 0);
    let err = load_image_folder(dir.path()).expect_err("mixed sizes");
    assert!(
        matches!(
            err,
            DatasetError::MixedSizes {
                width: 5,
                height: 4,
                first_width: 4,
                first_height: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, "odd.png");
    assert_names(&err, "first.png");
    assert_names(&err, "5x4");
    assert_names(&err, "4x4");
}

#[test]
fn empty_folder() {
    let dir = tempdir();
    let err = list_image_folder(dir.path()).expect_err("empty");
    assert!(matches!(err, DatasetError::Empty { .. }), "{err:?}");
    assert_names(&err, &dir.path().display().to_string());

    // Class folders with no image in them are still empty.
    std::fs::create_dir(dir.path().join("cats")).expect("mkdir");
    let err = load_image_folder(dir.path()).expect_err("empty classes");
    assert!(matches!(err, DatasetError::Empty { .. }), "{err:?}");
}
