//! Where the datasets live, and their download.
//!
//! Two kinds of data folder ([`DataDir`]):
//!
//! - **Mirror**: when `OODGATE_DATA_DIR` is set, that folder is a read-only copy of the
//!   datasets (layout: `mnist/*.gz`, `fashion-mnist/*.gz`, `cifar10-test-jpeg/<class>/*.jpg`,
//!   optionally `cifar-10-batches-bin/`). Nothing here touches the network or writes
//!   there; a missing file is an error that names it.
//! - **Cache**: otherwise `OODGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/oodgate/data`, else
//!   `~/.cache/oodgate/data`, with `mnist/`, `fashion-mnist/` and `cifar-10-batches-bin/`
//!   (extracted from the canonical tarball). [`DataDir::ensure`] downloads what is missing.
//!
//! Every download goes to a temporary file in the destination folder, is checked against
//! the published SHA-256, and only then renamed to its final name, so an interrupted or
//! corrupt download never sits under the final name. A file already present with the
//! right checksum is not downloaded again.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::error::{DatasetError, Result};
use crate::{CIFAR10_CLASSES, Dataset, FASHION_MNIST_CLASSES, MNIST_CLASSES, cifar, folder, idx};

/// Training or test part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// `"train"` or `"test"`, as used in dataset names.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// A dataset this crate knows how to find and download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetId {
    Mnist,
    FashionMnist,
    Cifar10,
}

/// A file published at a canonical URL, with its size and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name, the same in the URL and on disk.
    pub name: &'static str,
    /// Size in bytes; a file of another size is not looked at further.
    pub size: u64,
    /// Lower-case hex SHA-256 of the file as published.
    pub sha256: &'static str,
}

/// A dataset made of files downloaded side by side into one folder.
#[derive(Debug, Clone, Copy)]
struct IdxSource {
    /// Folder name under the data folder (the same in the mirror and the cache).
    dir: &'static str,
    /// Base URLs tried in order; each file's URL is base + name.
    base_urls: &'static [&'static str],
    /// `[train images, train labels, test images, test labels]`.
    files: [RemoteFile; 4],
}

// Checksums of the canonical MNIST files, from tensorflow/datasets,
// tensorflow_datasets/url_checksums/mnist.txt (URLs on storage.googleapis.com/cvdf-datasets,
// which serves the same files; sizes match the ones on yann.lecun.com). The ossci mirror that
// torchvision uses publishes the same files (torchvision's MD5s are LeCun's).
const MNIST: IdxSource = IdxSource {
    dir: "mnist",
    base_urls: &[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    files: [
        RemoteFile {
            name: "train-images-idx3-ubyte.gz",
            size: 9_912_422,
            sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        },
        RemoteFile {
            name: "train-labels-idx1-ubyte.gz",
            size: 28_881,
            sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        },
        RemoteFile {
            name: "t10k-images-idx3-ubyte.gz",
            size: 1_648_877,
            sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        },
        RemoteFile {
            name: "t10k-labels-idx1-ubyte.gz",
            size: 4_542,
            sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ],
};

// Checksums of the canonical Fashion-MNIST files, from tensorflow/datasets,
// tensorflow_datasets/url_checksums/fashion_mnist.txt (same URLs as here); the MD5s in
// zalandoresearch/fashion-mnist's README belong to the same files. The copies in the
// offline mirror (Debian's package) hash differently only because their gzip headers were
// rewritten (stored file name dropped, timestamp changed): putting the original header back
// gives exactly these checksums, which tests/mirror.rs checks. That is why the mirror is
// checked for presence, not for these checksums.
const FASHION_MNIST: IdxSource = IdxSource {
    dir: "fashion-mnist",
    base_urls: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    files: [
        RemoteFile {
            name: "train-images-idx3-ubyte.gz",
            size: 26_421_880,
            sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        },
        RemoteFile {
            name: "train-labels-idx1-ubyte.gz",
            size: 29_515,
            sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        },
        RemoteFile {
            name: "t10k-images-idx3-ubyte.gz",
            size: 4_422_102,
            sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        },
        RemoteFile {
            name: "t10k-labels-idx1-ubyte.gz",
            size: 5_148,
            sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ],
};

/// URL of the canonical CIFAR-10 binary tarball.
const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

// From tensorflow/datasets, tensorflow_datasets/url_checksums/cifar10.txt (same URL).
// The dataset page publishes MD5 c32a1d4ab5d03f1284b67883e8d87530 for the same file.
const CIFAR10_TARBALL: RemoteFile = RemoteFile {
    name: "cifar-10-binary.tar.gz",
    size: 170_052_171,
    sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
};

/// Folder of the binary batches, inside the tarball and under the data folder.
pub(crate) const CIFAR10_BIN_DIR: &str = "cifar-10-batches-bin";
/// Folder of the CIFAR-10 test set as JPEG files, in the mirror.
pub(crate) const CIFAR10_JPEG_DIR: &str = "cifar10-test-jpeg";

/// The canonical files of a dataset, each with its path relative to a cache folder and
/// its published size and SHA-256. (CIFAR-10's tarball is only kept until extracted.)
pub fn remote_files(id: DatasetId) -> Vec<(PathBuf, RemoteFile)> {
    match id {
        DatasetId::Mnist => idx_remote_files(&MNIST),
        DatasetId::FashionMnist => idx_remote_files(&FASHION_MNIST),
        DatasetId::Cifar10 => vec![(PathBuf::from(CIFAR10_TARBALL.name), CIFAR10_TARBALL)],
    }
}

fn idx_remote_files(source: &IdxSource) -> Vec<(PathBuf, RemoteFile)> {
    source
        .files
        .iter()
        .map(|f| (Path::new(source.dir).join(f.name), *f))
        .collect()
}

/// The folder datasets are read from: a read-only mirror or a download cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// A read-only copy of the datasets (`OODGATE_DATA_DIR`): never written, never
    /// downloaded into.
    Mirror(PathBuf),
    /// A cache that [`DataDir::ensure`] fills by downloading.
    Cache(PathBuf),
}

impl DataDir {
    /// Chooses the data folder from the environment: `OODGATE_DATA_DIR` (mirror), else
    /// `OODGATE_CACHE_DIR`, `$XDG_CACHE_HOME/oodgate/data` or `$HOME/.cache/oodgate/data`.
    /// Empty variables count as unset.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// [`DataDir::from_env`] with the variables read through `var`, so the choice can be
    /// tested without changing the process environment.
    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Self> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(mirror) = set("OODGATE_DATA_DIR") {
            return Ok(DataDir::Mirror(mirror));
        }
        if let Some(cache) = set("OODGATE_CACHE_DIR") {
            return Ok(DataDir::Cache(cache));
        }
        if let Some(xdg) = set("XDG_CACHE_HOME") {
            return Ok(DataDir::Cache(xdg.join("oodgate").join("data")));
        }
        if let Some(home) = set("HOME") {
            return Ok(DataDir::Cache(
                home.join(".cache").join("oodgate").join("data"),
            ));
        }
        Err(DatasetError::NoCacheDir)
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        match self {
            DataDir::Mirror(p) | DataDir::Cache(p) => p,
        }
    }

    /// True for a read-only mirror.
    pub fn is_mirror(&self) -> bool {
        matches!(self, DataDir::Mirror(_))
    }

    /// Makes sure the files of `ids` are there.
    ///
    /// Mirror: only checks that they are present (no network, no writes). Cache: downloads
    /// whatever is missing or has the wrong checksum; files already right are skipped.
    /// `progress` shows a progress bar on stderr for each download.
    pub fn ensure(&self, ids: &[DatasetId], progress: bool) -> Result<()> {
        for &id in ids {
            match (self, id) {
                (DataDir::Mirror(_), DatasetId::Mnist) => self.check_idx_present(&MNIST)?,
                (DataDir::Mirror(_), DatasetId::FashionMnist) => {
                    self.check_idx_present(&FASHION_MNIST)?
                }
                (DataDir::Mirror(_), DatasetId::Cifar10) => {
                    self.cifar10_test_source()?;
                }
                (DataDir::Cache(root), DatasetId::Mnist) => {
                    download_idx(root, &MNIST, progress, &http_get)?
                }
                (DataDir::Cache(root), DatasetId::FashionMnist) => {
                    download_idx(root, &FASHION_MNIST, progress, &http_get)?
                }
                (DataDir::Cache(root), DatasetId::Cifar10) => {
                    download_cifar10(root, progress, &http_get)?
                }
            }
        }
        Ok(())
    }

    /// MNIST (60,000 train or 10,000 test images, 28x28, 1 channel).
    pub fn mnist(&self, split: Split) -> Result<Dataset> {
        self.load_idx(&MNIST, "mnist", split, &MNIST_CLASSES)
    }

    /// Fashion-MNIST (60,000 train or 10,000 test images, 28x28, 1 channel).
    pub fn fashion_mnist(&self, split: Split) -> Result<Dataset> {
        self.load_idx(
            &FASHION_MNIST,
            "fashion-mnist",
            split,
            &FASHION_MNIST_CLASSES,
        )
    }

    /// The CIFAR-10 test set (10,000 images, 32x32, 3 channels): the binary batch
    /// `cifar-10-batches-bin/test_batch.bin` when present, else the `cifar10-test-jpeg`
    /// image folder.
    pub fn cifar10_test(&self) -> Result<Dataset> {
        let name = "cifar10-test";
        match self.cifar10_test_source()? {
            Cifar10Source::Binary(path) => cifar::read_cifar10_batch(name, &path),
            Cifar10Source::Jpeg(dir) => {
                let listing = folder::list_image_folder(&dir)?;
                if listing.class_names != CIFAR10_CLASSES {
                    return Err(DatasetError::UnexpectedClasses {
                        path: dir,
                        found: listing.class_names,
                        expected: crate::class_names(&CIFAR10_CLASSES),
                    });
                }
                folder::decode_image_folder(name, &listing)
            }
        }
    }

    /// The CIFAR-10 training set (50,000 images), from the binary batches only.
    pub fn cifar10_train(&self) -> Result<Dataset> {
        let dir = self.root().join(CIFAR10_BIN_DIR);
        let paths = cifar::TRAIN_BATCHES
            .iter()
            .map(|name| self.existing(dir.join(name)))
            .collect::<Result<Vec<_>>>()?;
        cifar::read_cifar10_batches("cifar10-train", &paths)
    }

    /// Any known dataset by id and split.
    pub fn load(&self, id: DatasetId, split: Split) -> Result<Dataset> {
        match (id, split) {
            (DatasetId::Mnist, _) => self.mnist(split),
            (DatasetId::FashionMnist, _) => self.fashion_mnist(split),
            (DatasetId::Cifar10, Split::Test) => self.cifar10_test(),
            (DatasetId::Cifar10, Split::Train) => self.cifar10_train(),
        }
    }

    /// Reads one split of an IDX dataset.
    fn load_idx(
        &self,
        source: &IdxSource,
        name: &str,
        split: Split,
        classes: &[&str],
    ) -> Result<Dataset> {
        let (images, labels) = match split {
            Split::Train => (source.files[0], source.files[1]),
            Split::Test => (source.files[2], source.files[3]),
        };
        let dir = self.root().join(source.dir);
        let images = self.existing(dir.join(images.name))?;
        let labels = self.existing(dir.join(labels.name))?;
        idx::load_idx_dataset(
            &format!("{name}-{}", split.as_str()),
            &images,
            &labels,
            classes,
        )
    }

    /// Where the CIFAR-10 test set is, binary batch first.
    fn cifar10_test_source(&self) -> Result<Cifar10Source> {
        let binary = self.root().join(CIFAR10_BIN_DIR).join(cifar::TEST_BATCH);
        if binary.is_file() {
            return Ok(Cifar10Source::Binary(binary));
        }
        let jpeg = self.root().join(CIFAR10_JPEG_DIR);
        if jpeg.is_dir() {
            return Ok(Cifar10Source::Jpeg(jpeg));
        }
        // Name what this kind of folder is expected to hold: the mirror ships JPEGs, the
        // cache the extracted binary batches.
        Err(self.missing(if self.is_mirror() { jpeg } else { binary }))
    }

    /// Checks that the four files of an IDX dataset are in the mirror.
    fn check_idx_present(&self, source: &IdxSource) -> Result<()> {
        let dir = self.root().join(source.dir);
        for file in &source.files {
            self.existing(dir.join(file.name))?;
        }
        Ok(())
    }

    /// `path` if it exists, else the error that fits this kind of folder.
    fn existing(&self, path: PathBuf) -> Result<PathBuf> {
        if path.exists() {
            Ok(path)
        } else {
            Err(self.missing(path))
        }
    }

    fn missing(&self, path: PathBuf) -> DatasetError {
        match self {
            DataDir::Mirror(mirror) => DatasetError::MissingFromMirror {
                path,
                mirror: mirror.clone(),
            },
            DataDir::Cache(_) => DatasetError::NotDownloaded { path },
        }
    }
}

/// Where [`DataDir::cifar10_test`] reads from.
enum Cifar10Source {
    Binary(PathBuf),
    Jpeg(PathBuf),
}

/// Error type of a [`Fetch`] function: whatever the transport reports.
type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// Copies the body at a URL into a writer, setting the progress bar's length when known.
/// [`http_get`] is the real one; tests pass a local function instead.
type Fetch<'a> = dyn Fn(&str, &mut dyn Write, &ProgressBar) -> Result<(), FetchError> + 'a;

/// Fetches `url` over HTTP(S). The one piece of this module that needs the network.
fn http_get(url: &str, out: &mut dyn Write, bar: &ProgressBar) -> Result<(), FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // A budget for the whole body, large enough for 170 MB on a slow line, so that a
        // stalled server does not hang the download for ever.
        .timeout_recv_body(Some(Duration::from_secs(2 * 3600)))
        .build()
        .into();
    // Ask for the bytes as stored: the checksums are of the .gz files themselves, so the
    // transfer must not be transparently decompressed.
    let response = agent
        .get(url)
        .header("Accept-Encoding", "identity")
        .call()?;
    if let Some(len) = response.body().content_length() {
        bar.set_length(len);
    }
    let mut body = response.into_body().into_reader();
    io::copy(&mut body, &mut bar.wrap_write(out))?;
    Ok(())
}

/// Downloads the four files of an IDX dataset into `root/<dir>/`.
fn download_idx(root: &Path, source: &IdxSource, progress: bool, fetch: &Fetch<'_>) -> Result<()> {
    let dir = root.join(source.dir);
    std::fs::create_dir_all(&dir).map_err(|e| DatasetError::io(&dir, e))?;
    for file in &source.files {
        let urls: Vec<String> = source
            .base_urls
            .iter()
            .map(|base| format!("{base}{}", file.name))
            .collect();
        download_verified(&dir.join(file.name), file, &urls, progress, fetch)?;
    }
    Ok(())
}

/// Downloads and extracts the CIFAR-10 binary batches into `root/cifar-10-batches-bin/`,
/// unless they are already there. The tarball is removed once extracted.
fn download_cifar10(root: &Path, progress: bool, fetch: &Fetch<'_>) -> Result<()> {
    let bin_dir = root.join(CIFAR10_BIN_DIR);
    if cifar10_batches_complete(&bin_dir) {
        tracing::info!(path = %bin_dir.display(), "CIFAR-10 batches already present");
        return Ok(());
    }
    std::fs::create_dir_all(root).map_err(|e| DatasetError::io(root, e))?;
    let tarball = root.join(CIFAR10_TARBALL.name);
    download_verified(
        &tarball,
        &CIFAR10_TARBALL,
        &[CIFAR10_URL.to_string()],
        progress,
        fetch,
    )?;
    extract_dir(&tarball, CIFAR10_BIN_DIR, root)?;
    if !cifar10_batches_complete(&bin_dir) {
        return Err(DatasetError::BadArchive {
            path: tarball,
            message: format!(
                "{CIFAR10_BIN_DIR}/ lacks some of the six batches of {} records",
                cifar::RECORDS_PER_BATCH
            ),
        });
    }
    std::fs::remove_file(&tarball).map_err(|e| DatasetError::io(&tarball, e))?;
    Ok(())
}

/// True when all six batches are in `dir` with the size of 10,000 records.
fn cifar10_batches_complete(dir: &Path) -> bool {
    let size = (cifar::RECORDS_PER_BATCH * cifar::RECORD_BYTES) as u64;
    cifar::TRAIN_BATCHES
        .iter()
        .chain([&cifar::TEST_BATCH])
        .all(|name| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.len() == size))
}

/// Extracts the folder `inner` of a `.tar.gz` into `dest/inner`.
///
/// The entries are unpacked into a temporary folder beside the destination, which is
/// then renamed into place, so `dest/inner` is never seen half-extracted. A previous
/// `dest/inner` is replaced.
fn extract_dir(tarball: &Path, inner: &str, dest: &Path) -> Result<()> {
    let tar_err = |e| DatasetError::io(tarball, e);
    let staging = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(dest)
        .map_err(|e| DatasetError::io(dest, e))?;
    let file = File::open(tarball).map_err(tar_err)?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let wanted = entry.path().map_err(tar_err)?.starts_with(inner);
        if wanted {
            // unpack_in refuses entries that would land outside the staging folder
            // (absolute paths, `..`), so a hostile archive cannot write elsewhere.
            entry.unpack_in(staging.path()).map_err(tar_err)?;
        }
    }
    let extracted = staging.path().join(inner);
    if !extracted.is_dir() {
        return Err(DatasetError::BadArchive {
            path: tarball.to_path_buf(),
            message: format!("no {inner}/ folder in it"),
        });
    }
    let target = dest.join(inner);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| DatasetError::io(&target, e))?;
    }
    std::fs::rename(&extracted, &target).map_err(|e| DatasetError::io(&target, e))?;
    Ok(())
}

/// What [`download_verified`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Downloaded {
    /// The file was already there with the right checksum.
    AlreadyPresent,
    /// The file was fetched, verified and moved into place.
    Fetched,
}

/// Makes `dest` hold `file`: skipped when already right, else fetched from the first of
/// `urls` that gives the right bytes.
///
/// Each attempt writes a fresh temporary file in `dest`'s folder, hashing as it writes;
/// only a file whose SHA-256 matches is renamed to `dest`. The temporary file is deleted
/// on every failure (and, being under another name, is harmless if the process dies).
fn download_verified(
    dest: &Path,
    file: &RemoteFile,
    urls: &[String],
    progress: bool,
    fetch: &Fetch<'_>,
) -> Result<Downloaded> {
    if has_checksum(dest, file)? {
        tracing::info!(path = %dest.display(), "already present with the right SHA-256");
        return Ok(Downloaded::AlreadyPresent);
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut failures = Vec::new();
    for url in urls {
        tracing::info!(url, path = %dest.display(), "downloading");
        match fetch_once(url, dir, dest, file, progress, fetch) {
            Ok(()) => return Ok(Downloaded::Fetched),
            Err(e) => {
                tracing::warn!(url, error = %e, "download failed");
                failures.push((url, e));
            }
        }
    }
    // One source: its own error (e.g. a checksum mismatch). Several: every source's story.
    if failures.len() == 1
        && let Some((_, e)) = failures.pop()
    {
        return Err(e);
    }
    let message = failures
        .iter()
        .map(|(url, e)| format!("{url}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(DatasetError::Download {
        path: dest.to_path_buf(),
        message,
    })
}

/// One download attempt from one URL into a temporary file, then the checked rename.
fn fetch_once(
    url: &str,
    dir: &Path,
    dest: &Path,
    file: &RemoteFile,
    progress: bool,
    fetch: &Fetch<'_>,
) -> Result<()> {
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", file.name))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| DatasetError::io(dir, e))?;
    let bar = progress_bar(progress, file);
    let mut writer = HashingWriter::new(temp.as_file_mut());
    let fetched = fetch(url, &mut writer, &bar);
    bar.finish_and_clear();
    fetched.map_err(|e| DatasetError::Download {
        path: dest.to_path_buf(),
        message: format!("{url}: {e}"),
    })?;
    let actual = hex::encode(writer.finish());
    if actual != file.sha256 {
        return Err(DatasetError::Checksum {
            path: dest.to_path_buf(),
            expected: file.sha256.to_string(),
            actual,
        });
    }
    // Flush to disk before the rename, so a crash cannot leave a renamed but empty file.
    temp.as_file()
        .sync_all()
        .map_err(|e| DatasetError::io(temp.path(), e))?;
    temp.persist(dest)
        .map_err(|e| DatasetError::io(dest, e.error))?;
    Ok(())
}

/// True when `path` exists with the size and SHA-256 of `file`.
fn has_checksum(path: &Path, file: &RemoteFile) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == file.size && sha256_file(path)? == file.sha256 => {
            Ok(true)
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "present but not the published file; downloading again");
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(DatasetError::io(path, e)),
    }
}

/// Lower-case hex SHA-256 of a file's bytes.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut hasher = Sha256::new();
    io::copy(&mut BufReader::new(file), &mut hasher).map_err(|e| DatasetError::io(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// A progress bar for one download, hidden unless asked for. Not the count style of
/// the project's other long steps (`oodgate_lof::progress_bar`, which this crate does
/// not depend on): a download counts bytes, so it shows sizes and throughput.
fn progress_bar(progress: bool, file: &RemoteFile) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    // The published size is the right length even when the server sends no
    // Content-Length; the fetch overrides it when it does.
    ProgressBar::new(file.size)
        .with_style(style)
        .with_message(file.name)
}

/// A writer that hashes everything written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Flushes the inner writer and returns the digest of all bytes written.
    fn finish(mut self) -> [u8; 32] {
        // A flush error would also have shown up as a write error; the checksum then
        // catches any missing bytes.
        let _ = self.inner.flush();
        self.hasher.finalize().into()
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Hash only what the inner writer accepted, so the digest matches the file.
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::HashMap;

    /// A file of `bytes` with its real size and checksum.
    fn remote(name: &'static str, bytes: &[u8]) -> RemoteFile {
        let sha = hex::encode(Sha256::digest(bytes));
        RemoteFile {
            name,
            size: bytes.len() as u64,
            sha256: Box::leak(sha.into_boxed_str()),
        }
    }

    /// A fetch function serving fixed bodies by URL and counting calls.
    fn serve<'a>(
        bodies: &'a HashMap<&'a str, Vec<u8>>,
        calls: &'a Cell<usize>,
    ) -> impl Fn(&str, &mut dyn Write, &ProgressBar) -> Result<(), FetchError> + 'a {
        move |url, out, _bar| {
            calls.set(calls.get() + 1);
            match bodies.get(url) {
                Some(body) => Ok(out.write_all(body)?),
                None => Err(format!("404 for {url}").into()),
            }
        }
    }

    /// Names in a folder, to check that no temporary file was left behind.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn downloads_verifies_and_renames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"the real bytes".to_vec();
        let file = remote("data.gz", &body);
        let bodies = HashMap::from([("http://a/data.gz", body.clone())]);
        let calls = Cell::new(0);
        let dest = dir.path().join("data.gz");
        let got = download_verified(
            &dest,
            &file,
            &["http://a/data.gz".into()],
            false,
            &serve(&bodies, &calls),
        )
        .expect("download");
        assert_eq!(got, Downloaded::Fetched);
        assert_eq!(std::fs::read(&dest).expect("read"), body);
        assert_eq!(names(dir.path()), vec!["data.gz"]);
    }

    #[test]
    fn checksum_mismatch_leaves_no_final_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = remote("data.gz", b"the real bytes");
        let bodies = HashMap::from([("http://a/data.gz", b"tampered bytes".to_vec())]);
        let calls = Cell::new(0);
        let dest = dir.path().join("data.gz");
        let err = download_verified(
            &dest,
            &file,
            &["http://a/data.gz".into()],
            false,
            &serve(&bodies, &calls),
        )
        .expect_err("must fail");
        assert!(matches!(err, DatasetError::Checksum { .. }), "got {err:?}");
        assert!(err.to_string().contains("data.gz"), "{err}");
        assert!(!dest.exists());
        // The temporary file is gone too.
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn matching_existing_file_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"already here".to_vec();
        let file = remote("data.gz", &body);
        let dest = dir.path().join("data.gz");
        std::fs::write(&dest, &body).expect("write");
        let bodies = HashMap::new();
        let calls = Cell::new(0);
        let got = download_verified(
            &dest,
            &file,
            &["http://a/data.gz".into()],
            false,
            &serve(&bodies, &calls),
        )
        .expect("skip");
        assert_eq!(got, Downloaded::AlreadyPresent);
        assert_eq!(calls.get(), 0, "no fetch for a file already right");
    }

    #[test]
    fn wrong_existing_file_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"good content".to_vec();
        let file = remote("data.gz", &body);
        let dest = dir.path().join("data.gz");
        // Same size, other bytes: only the checksum can tell.
        std::fs::write(&dest, b"bad! content").expect("write");
        let bodies = HashMap::from([("http://a/data.gz", body.clone())]);
        let calls = Cell::new(0);
        let got = download_verified(
            &dest,
            &file,
            &["http://a/data.gz".into()],
            false,
            &serve(&bodies, &calls),
        )
        .expect("download");
        assert_eq!(got, Downloaded::Fetched);
        assert_eq!(std::fs::read(&dest).expect("read"), body);
    }

    #[test]
    fn falls_back_to_the_next_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"mirror bytes".to_vec();
        let file = remote("data.gz", &body);
        let bodies = HashMap::from([("http://fallback/data.gz", body.clone())]);
        let calls = Cell::new(0);
        let dest = dir.path().join("data.gz");
        download_verified(
            &dest,
            &file,
            &[
                "http://primary/data.gz".into(),
                "http://fallback/data.gz".into(),
            ],
            false,
            &serve(&bodies, &calls),
        )
        .expect("fallback");
        assert_eq!(calls.get(), 2);
        assert_eq!(std::fs::read(&dest).expect("read"), body);
        assert_eq!(names(dir.path()), vec!["data.gz"]);
    }

    #[test]
    fn all_urls_failing_names_each_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = remote("data.gz", b"x");
        let bodies = HashMap::new();
        let calls = Cell::new(0);
        let dest = dir.path().join("data.gz");
        let err = download_verified(
            &dest,
            &file,
            &["http://a/data.gz".into(), "http://b/data.gz".into()],
            false,
            &serve(&bodies, &calls),
        )
        .expect_err("must fail");
        let msg = err.to_string();
        assert!(matches!(err, DatasetError::Download { .. }), "{err:?}");
        assert!(msg.contains("http://a/data.gz") && msg.contains("http://b/data.gz"));
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn interrupted_fetch_leaves_no_final_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = remote("data.gz", b"the whole body");
        let dest = dir.path().join("data.gz");
        let cut = |_: &str, out: &mut dyn Write, _: &ProgressBar| -> Result<(), FetchError> {
            out.write_all(b"the wh")?;
            Err("connection reset".into())
        };
        let err = download_verified(&dest, &file, &["http://a/data.gz".into()], false, &cut)
            .expect_err("must fail");
        assert!(matches!(err, DatasetError::Download { .. }), "{err:?}");
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn download_idx_fetches_every_file_then_skips_them() {
        let root = tempfile::tempdir().expect("tempdir");
        let contents: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10 + i as usize]).collect();
        let files = [
            remote("a.gz", &contents[0]),
            remote("b.gz", &contents[1]),
            remote("c.gz", &contents[2]),
            remote("d.gz", &contents[3]),
        ];
        let source = IdxSource {
            dir: "toy",
            base_urls: &["http://host/"],
            files,
        };
        let bodies: HashMap<&str, Vec<u8>> = [
            ("http://host/a.gz", contents[0].clone()),
            ("http://host/b.gz", contents[1].clone()),
            ("http://host/c.gz", contents[2].clone()),
            ("http://host/d.gz", contents[3].clone()),
        ]
        .into();
        let calls = Cell::new(0);
        let fetch = serve(&bodies, &calls);
        download_idx(root.path(), &source, false, &fetch).expect("first");
        assert_eq!(calls.get(), 4);
        assert_eq!(
            names(&root.path().join("toy")),
            vec!["a.gz", "b.gz", "c.gz", "d.gz"]
        );
        download_idx(root.path(), &source, false, &fetch).expect("second");
        assert_eq!(calls.get(), 4, "second run is idempotent");
    }

    #[test]
    fn extracts_only_the_inner_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tarball = dir.path().join("t.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                File::create(&tarball).expect("create"),
                flate2::Compression::fast(),
            );
            let mut builder = tar::Builder::new(gz);
            for (path, body) in [
                ("cifar-10-batches-bin/test_batch.bin", &b"abc"[..]),
                ("cifar-10-batches-bin/readme.html", &b"<p>"[..]),
                ("other/ignored.txt", &b"no"[..]),
            ] {
                let mut header = tar::Header::new_gnu();
                header.set_size(body.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                builder
                    .append_data(&mut header, path, body)
                    .expect("append");
            }
            builder.into_inner().expect("tar").finish().expect("gzip");
        }
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        // A stale, incomplete previous extraction is replaced.
        std::fs::create_dir(out.join(CIFAR10_BIN_DIR)).expect("mkdir");
        std::fs::write(out.join(CIFAR10_BIN_DIR).join("stale"), b"x").expect("write");

        extract_dir(&tarball, CIFAR10_BIN_DIR, &out).expect("extract");
        assert_eq!(names(&out), vec![CIFAR10_BIN_DIR]);
        assert_eq!(
            names(&out.join(CIFAR10_BIN_DIR)),
            vec!["readme.html", "test_batch.bin"]
        );
        assert_eq!(
            std::fs::read(out.join(CIFAR10_BIN_DIR).join("test_batch.bin")).expect("read"),
            b"abc"
        );
        // Short batches are not a complete CIFAR-10.
        assert!(!cifar10_batches_complete(&out.join(CIFAR10_BIN_DIR)));
    }

    #[test]
    fn archive_without_the_folder_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tarball = dir.path().join("t.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                File::create(&tarball).expect("create"),
                flate2::Compression::fast(),
            );
            let mut builder = tar::Builder::new(gz);
            let mut header = tar::Header::new_gnu();
            header.set_size(2);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, "something-else/x.bin", &b"no"[..])
                .expect("append");
            builder.into_inner().expect("tar").finish().expect("gzip");
        }
        let err = extract_dir(&tarball, CIFAR10_BIN_DIR, dir.path()).expect_err("no folder");
        assert!(matches!(err, DatasetError::BadArchive { .. }), "{err:?}");
        assert!(err.to_string().contains("t.tar.gz"), "{err}");
        assert_eq!(
            names(dir.path()),
            vec!["t.tar.gz"],
            "staging folder removed"
        );
    }

    #[test]
    fn data_dir_resolution_order() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            DataDir::from_vars(vars(&[
                ("OODGATE_DATA_DIR", "/m"),
                ("OODGATE_CACHE_DIR", "/c")
            ]))
            .expect("dir"),
            DataDir::Mirror("/m".into())
        );
        assert_eq!(
            DataDir::from_vars(vars(&[
                ("OODGATE_DATA_DIR", ""),
                ("OODGATE_CACHE_DIR", "/c"),
                ("HOME", "/h")
            ]))
            .expect("dir"),
            DataDir::Cache("/c".into())
        );
        assert_eq!(
            DataDir::from_vars(vars(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])).expect("dir"),
            DataDir::Cache("/x/oodgate/data".into())
        );
        assert_eq!(
            DataDir::from_vars(vars(&[("HOME", "/h")])).expect("dir"),
            DataDir::Cache("/h/.cache/oodgate/data".into())
        );
        assert!(matches!(
            DataDir::from_vars(vars(&[])),
            Err(DatasetError::NoCacheDir)
        ));
    }

    #[test]
    fn mirror_never_writes_and_names_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mirror = DataDir::Mirror(dir.path().to_path_buf());
        let err = mirror
            .ensure(&[DatasetId::Mnist], false)
            .expect_err("empty mirror");
        assert!(
            matches!(err, DatasetError::MissingFromMirror { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("train-images-idx3-ubyte.gz") && msg.contains("incomplete"));
        let err = mirror
            .ensure(&[DatasetId::Cifar10], false)
            .expect_err("no cifar");
        assert!(err.to_string().contains(CIFAR10_JPEG_DIR), "{err}");
        // Nothing was created in the mirror.
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn cache_load_before_download_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DataDir::Cache(dir.path().to_path_buf());
        let err = cache.mnist(Split::Test).expect_err("nothing downloaded");
        assert!(matches!(err, DatasetError::NotDownloaded { .. }), "{err:?}");
        assert!(err.to_string().contains("t10k-images-idx3-ubyte.gz"));
    }

    #[test]
    fn checksum_tables_are_well_formed() {
        for file in MNIST
            .files
            .iter()
            .chain(&FASHION_MNIST.files)
            .chain([&CIFAR10_TARBALL])
        {
            assert_eq!(file.sha256.len(), 64, "{}", file.name);
            assert!(
                file.sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{}",
                file.name
            );
        }
    }
}
