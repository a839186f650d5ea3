//! Tests on the real datasets, read from the offline mirror named by `OODGATE_DATA_DIR`.
//!
//! These never skip: without the variable they fail and say how to fix it. A relative
//! `OODGATE_DATA_DIR` (such as `../shared/data`) is taken relative to the workspace root,
//! since cargo runs tests from the crate's folder.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use oodgate_datasets::{
    CIFAR10_CLASSES, DataDir, DatasetId, FASHION_MNIST_CLASSES, MNIST_CLASSES, Split,
    list_image_folder, read_maybe_gzip, remote_files,
};
use sha2::Sha256;

/// The mirror folder, or a panic that tells the developer what to do.
fn mirror_root() -> PathBuf {
    let Some(value) = std::env::var_os("OODGATE_DATA_DIR").filter(|v| !v.is_empty()) else {
        panic!(
            "OODGATE_DATA_DIR is not set: these tests read the real datasets. Set it to the \
             dataset mirror (from the workspace root: OODGATE_DATA_DIR=../shared/data) or run \
             the data download step and point it at the result."
        );
    };
    let path = PathBuf::from(value);
    if path.is_absolute() {
        path
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }
}

fn mirror() -> DataDir {
    DataDir::Mirror(mirror_root())
}

#[test]
fn mirror_has_every_dataset() {
    mirror()
        .ensure(
            &[
                DatasetId::Mnist,
                DatasetId::FashionMnist,
                DatasetId::Cifar10,
            ],
            false,
        )
        .expect("mirror complete");
}

#[test]
fn mnist_train_and_test_have_the_published_shape() {
    let dir = mirror();
    for (split, count) in [(Split::Train, 60_000), (Split::Test, 10_000)] {
        let ds = dir.mnist(split).expect("mnist");
        assert_eq!(ds.len(), count, "{split:?}");
        assert_eq!((ds.width, ds.height, ds.channels), (28, 28, 1));
        assert_eq!(ds.pixels.len(), count * 28 * 28);
        assert_eq!(ds.image(count - 1).len(), 784);
        assert_eq!(ds.class_names, MNIST_CLASSES);
        assert!(ds.labels.iter().all(|&l| l <= 9));
        let counts = ds.class_counts();
        assert!(
            counts.iter().all(|&c| c > 0),
            "every digit present: {counts:?}"
        );
        assert_eq!(ds.name, format!("mnist-{}", split.as_str()));
    }
}

#[test]
fn mnist_known_test_counts_per_digit() {
    // The published class balance of the MNIST test set.
    let ds = mirror().mnist(Split::Test).expect("mnist");
    assert_eq!(
        ds.class_counts(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
}

#[test]
fn mnist_uncompressed_md5_matches_the_mirror_readme() {
    let dir = mirror_root().join("mnist");
    for (name, md5) in [
        (
            "train-images-idx3-ubyte.gz",
            "6bbc9ace898e44ae57da46a324031adb",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "a25bea736e30d166cdddb491f175f624",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "2646ac647ad5339dbf082846283269ea",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "27ae3e4e09519cfbb04c329615203637",
        ),
    ] {
        let bytes = read_maybe_gzip(&dir.join(name)).expect("read");
        assert_eq!(hex::encode(Md5::digest(&bytes)), md5, "{name}");
    }
}

#[test]
fn fashion_mnist_counts_and_classes() {
    let dir = mirror();
    for (split, per_class) in [(Split::Train, 6_000), (Split::Test, 1_000)] {
        let ds = dir.fashion_mnist(split).expect("fashion-mnist");
        assert_eq!(ds.len(), per_class * 10, "{split:?}");
        assert_eq!((ds.width, ds.height, ds.channels), (28, 28, 1));
        assert_eq!(ds.class_names, FASHION_MNIST_CLASSES);
        assert_eq!(ds.class_counts(), vec![per_class; 10]);
    }
}

/// The mirror's Fashion-MNIST files are the canonical ones with a rewritten gzip header
/// (no stored name, another timestamp). Restoring the original header must give the
/// canonical SHA-256 of the download table: this checks the table and the mirror at once.
#[test]
fn fashion_mnist_mirror_is_the_canonical_data() {
    // Timestamps of the canonical files' gzip headers (found by matching the published
    // checksums; the test files and the training files were written 21 s apart).
    let mtimes = [
        ("train-images-idx3-ubyte.gz", 1_504_176_606u32),
        ("train-labels-idx1-ubyte.gz", 1_504_176_606),
        ("t10k-images-idx3-ubyte.gz", 1_504_176_627),
        ("t10k-labels-idx1-ubyte.gz", 1_504_176_627),
    ];
    let files = remote_files(DatasetId::FashionMnist);
    assert_eq!(files.len(), 4);
    for (relative, remote) in files {
        let (_, mtime) = mtimes
            .iter()
            .find(|(n, _)| *n == remote.name)
            .expect("known file");
        let stored = std::fs::read(mirror_root().join(&relative)).expect("read");
        // Mirror header: magic, deflate, no flags, 4-byte mtime, XFL, OS = 10 bytes.
        assert_eq!(&stored[..4], &[0x1f, 0x8b, 8, 0], "{relative:?}");
        let mut canonical = vec![0x1f, 0x8b, 8, 0x08]; // FNAME flag
        canonical.extend_from_slice(&mtime.to_le_bytes());
        canonical.extend_from_slice(&stored[8..10]);
        canonical.extend_from_slice(remote.name.trim_end_matches(".gz").as_bytes());
        canonical.push(0);
        canonical.extend_from_slice(&stored[10..]);
        assert_eq!(canonical.len() as u64, remote.size, "{relative:?}");
        assert_eq!(
            hex::encode(Sha256::digest(&canonical)),
            remote.sha256,
            "{relative:?}"
        );
    }
}

#[test]
fn cifar10_test_jpeg_folder() {
    let ds = mirror().cifar10_test().expect("cifar10 test");
    assert_eq!(ds.name, "cifar10-test");
    assert_eq!(ds.len(), 10_000);
    assert_eq!((ds.width, ds.height, ds.channels), (32, 32, 3));
    assert_eq!(ds.pixels.len(), 10_000 * 32 * 32 * 3);
    assert_eq!(ds.class_names, CIFAR10_CLASSES);
    assert_eq!(ds.class_counts(), vec![1_000; 10]);
    // Real photographs, not a blank decode.
    assert!(ds.image(0).iter().any(|&p| p != ds.image(0)[0]));
}

#[test]
fn cifar10_listing_is_sorted_and_labelled() {
    let listing = list_image_folder(&mirror_root().join("cifar10-test-jpeg")).expect("listing");
    assert_eq!(listing.class_names, CIFAR10_CLASSES);
    assert_eq!(listing.entries.len(), 10_000);
    let first = &listing.entries[0];
    assert!(first.path.ends_with("airplane/0000.jpg"), "{first:?}");
    assert_eq!(first.label, 0);
    let last = &listing.entries[9_999];
    assert!(
        last.path
            .starts_with(mirror_root().join("cifar10-test-jpeg/truck"))
    );
    assert_eq!(last.label, 9);
    assert!(
        listing
            .entries
            .windows(2)
            .all(|w| (w[0].label, &w[0].path) < (w[1].label, &w[1].path))
    );
}
