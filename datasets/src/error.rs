//! The one error type of this crate.
//!
//! Every variant that comes from a file carries that file's path, and its message starts
//! with it, so a user who sees the error knows which file to look at.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading, locating or downloading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be opened, read, written or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file starts with the gzip magic bytes but its compressed stream is corrupt or
    /// cut short.
    #[error("{}: corrupt or truncated gzip stream: {source}", path.display())]
    Gzip {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An IDX file whose magic number is not the one expected for its kind.
    #[error("{}: wrong IDX magic number {found} (expected {expected})", path.display())]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    /// The file holds fewer bytes than its header promises.
    #[error("{}: truncated: the header promises {expected} bytes, the file has {actual}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    /// The file holds more bytes than its header promises.
    #[error("{}: {extra} unexpected bytes after the data the header describes", path.display())]
    TrailingBytes { path: PathBuf, extra: u64 },

    /// An images file and its labels file disagree on the number of items.
    #[error(
        "{} holds {image_count} images but {} holds {label_count} labels",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        images: PathBuf,
        image_count: usize,
        labels: PathBuf,
        label_count: usize,
    },

    /// A label outside the dataset's classes.
    #[error("{}: item {index} has label {label}, but there are only {classes} classes", path.display())]
    BadLabel {
        path: PathBuf,
        index: usize,
        label: u8,
        classes: usize,
    },

    /// A CIFAR-10 batch whose size is not a whole number of `record`-byte records.
    #[error(
        "{}: size {size} bytes is not a multiple of the {record}-byte CIFAR-10 record",
        path.display()
    )]
    CifarSize {
        path: PathBuf,
        size: u64,
        record: usize,
    },

    /// A file or folder that holds no items at all.
    #[error("{}: empty: no images found", path.display())]
    Empty { path: PathBuf },

    /// An image file the `image` crate could not decode.
    #[error("{}: cannot decode image: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    /// An image whose size differs from the first image of its folder.
    #[error(
        "{}: image is {width}x{height}, but {} is {first_width}x{first_height}; all images must share one size",
        path.display(),
        first.display()
    )]
    MixedSizes {
        path: PathBuf,
        width: u32,
        height: u32,
        first: PathBuf,
        first_width: u32,
        first_height: u32,
    },

    /// A folder with more classes than fit in a `u8` label.
    #[error("{}: {count} class folders, at most 256 are supported", path.display())]
    TooManyClasses { path: PathBuf, count: usize },

    /// A folder whose class folders are not the ones the dataset defines.
    #[error("{}: class folders are {found:?}, expected {expected:?}", path.display())]
    UnexpectedClasses {
        path: PathBuf,
        found: Vec<String>,
        expected: Vec<String>,
    },

    /// A file the read-only mirror (`OODGATE_DATA_DIR`) should hold but does not.
    #[error(
        "{}: missing from the read-only data mirror {} (OODGATE_DATA_DIR): the mirror is incomplete",
        path.display(),
        mirror.display()
    )]
    MissingFromMirror { path: PathBuf, mirror: PathBuf },

    /// A file of the download cache that has not been downloaded yet.
    #[error("{}: not downloaded yet: run the data download step (DataDir::ensure) first", path.display())]
    NotDownloaded { path: PathBuf },

    /// A downloaded or cached file whose SHA-256 is not the published one.
    #[error("{}: SHA-256 mismatch: expected {expected}, got {actual}", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// Every source URL of a file failed; `message` holds each URL's failure.
    #[error("{}: download failed: {message}", path.display())]
    Download { path: PathBuf, message: String },

    /// A downloaded archive that does not hold what the dataset needs.
    #[error("{}: unexpected archive content: {message}", path.display())]
    BadArchive { path: PathBuf, message: String },

    /// A font file a synthetic set is drawn from is not installed.
    #[error(
        "{}: font file missing: install the Debian package {package} (`scripts/setup.sh test` installs it; the synthetic sets of `oodgate eval`, `oodgate data synth` and `oodgate-replay` need it)",
        path.display()
    )]
    MissingFont { path: PathBuf, package: String },

    /// A font file that is there but cannot be used: not parseable, or without a glyph
    /// a synthetic set needs.
    #[error("{}: unusable font: {message}", path.display())]
    BadFont { path: PathBuf, message: String },

    /// A synthetic set that could not be drawn.
    #[error("synthetic set {set}: {message}")]
    Synth { set: String, message: String },

    /// No folder could be chosen for the download cache.
    #[error(
        "no cache folder for datasets: set OODGATE_DATA_DIR (read-only mirror), OODGATE_CACHE_DIR, XDG_CACHE_HOME or HOME"
    )]
    NoCacheDir,
}

impl DatasetError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;
