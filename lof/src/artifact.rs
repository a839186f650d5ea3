//! The index file: one versioned, checksummed artifact.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! offset  size  content
//! 0       8     magic "OODGLOF\0"
//! 8       4     format version (u32)
//! 12      4     header length H (u32)
//! 16      8     body length B (u64)
//! 24      H     header, JSON (ArtifactHeader)
//! 24+H    B     body:
//!                 embeddings   count x dim f32
//!                 labels       count u8
//!                 kdist        count f64
//!                 lrd          count f64
//!                 scores       count f64, ascending
//!                 layers       u32 L, then per HNSW layer (layer 0 first) three u32
//!                              arrays, each a u64 length then the values:
//!                              members, offsets, links (see `hnsw::Layer`);
//!                              L = 0 for an index built without its graph
//! 24+H+B  32    SHA-256 of bytes [0, 24+H+B)
//! ```
//!
//! The fixed preamble lets a reader tell "not ours" (magic), "another version" and
//! "truncated" before trusting anything else. The checksum covers the header too, so a
//! damaged header is reported as damage, not as a model mismatch. SHA-256 rather than
//! BLAKE3: the workspace already uses `sha2` (model hashes), and with the SHA extensions
//! of these CPUs it hashes the 21 MB artifact of 60,000 x 64 in about 10 ms.
//!
//! Files are written to a temporary file in the target directory and renamed into
//! place, so a reader never sees a half-written index.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::LofError;
use crate::hnsw::{HnswParams, Layer, RecallReport};

/// First bytes of every index file.
pub(crate) const MAGIC: [u8; 8] = *b"OODGLOF\0";
/// Version of the layout above; bump on any change.
pub const FORMAT_VERSION: u32 = 1;
/// The only distance this crate implements.
pub(crate) const DISTANCE: &str = "euclidean";

const PREAMBLE_LEN: usize = 24;
const CHECKSUM_LEN: usize = 32;
/// A header is a few hundred bytes, or a few megabytes with a folder's file list in
/// `provenance`; refuse absurd lengths before allocating.
const MAX_HEADER_LEN: u32 = 256 << 20;

/// What an index file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactHeader {
    /// Identifies the model whose embeddings were indexed (the caller's choice, e.g.
    /// SHA-256 hex of the ONNX file). Loading for another model is refused.
    pub model_hash: String,
    /// Embedding dimension.
    pub dim: usize,
    /// LOF's k (n_neighbors).
    pub k: usize,
    /// Number of training points.
    pub count: usize,
    /// Always "euclidean".
    pub distance: String,
    /// HNSW parameters the graph was built with (and the default search ef).
    pub hnsw: HnswParams,
    /// Recall measured when the graph was built.
    pub recall: Option<RecallReport>,
    /// Which code wrote the file, for humans.
    pub writer: String,
    /// What the caller recorded about the indexed set (the server: the gate config's
    /// hash, the reference set's fingerprint and where each item came from, the
    /// calibration). Stored and returned as is; this crate never reads it. Absent in
    /// files written before it existed, so the format version did not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<serde_json::Value>,
}

/// Borrowed contents to write.
pub(crate) struct Contents<'a> {
    pub header: &'a ArtifactHeader,
    pub embeddings: &'a [f32],
    pub labels: &'a [u8],
    pub kdist: &'a [f64],
    pub lrd: &'a [f64],
    pub sorted_scores: &'a [f64],
    pub layers: &'a [Layer],
}

/// The decoded contents of a validated artifact.
pub(crate) struct Decoded {
    pub header: ArtifactHeader,
    pub embeddings: Vec<f32>,
    pub labels: Vec<u8>,
    pub kdist: Vec<f64>,
    pub lrd: Vec<f64>,
    pub sorted_scores: Vec<f64>,
    pub layers: Vec<Layer>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LofError + '_ {
    move |source| LofError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the artifact atomically (temporary file in the same directory, fsync, rename).
pub(crate) fn write(path: &Path, c: &Contents<'_>) -> Result<(), LofError> {
    let header = serde_json::to_vec(c.header)
        .map_err(|e| LofError::InvalidInput(format!("header does not serialise: {e}")))?;
    let header_len = u32::try_from(header.len())
        .ok()
        .filter(|&l| l <= MAX_HEADER_LEN)
        .ok_or_else(|| LofError::InvalidInput("header too long".into()))?;
    let layers_len: usize = c
        .layers
        .iter()
        .map(|l| 3 * 8 + 4 * (l.members.len() + l.offsets.len() + l.links.len()))
        .sum();
    let body_len = 4 * c.embeddings.len()
        + c.labels.len()
        + 8 * (c.kdist.len() + c.lrd.len() + c.sorted_scores.len())
        + 4
        + layers_len;
    let layer_count = u32::try_from(c.layers.len())
        .map_err(|_| LofError::InvalidInput("too many layers".into()))?;

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".lof-index-")
        .tempfile_in(&dir)
        .map_err(io_error(&dir))?;
    {
        let mut out = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, tmp.as_file()),
            hasher: Sha256::new(),
        };
        let mut emit = || -> std::io::Result<()> {
            out.write_all(&MAGIC)?;
            out.write_all(&FORMAT_VERSION.to_le_bytes())?;
            out.write_all(&header_len.to_le_bytes())?;
            out.write_all(&(body_len as u64).to_le_bytes())?;
            out.write_all(&header)?;
            write_f32s(&mut out, c.embeddings)?;
            out.write_all(c.labels)?;
            write_f64s(&mut out, c.kdist)?;
            write_f64s(&mut out, c.lrd)?;
            write_f64s(&mut out, c.sorted_scores)?;
            out.write_all(&layer_count.to_le_bytes())?;
            for layer in c.layers {
                for array in [&layer.members, &layer.offsets, &layer.links] {
                    out.write_all(&(array.len() as u64).to_le_bytes())?;
                    write_u32s(&mut out, array)?;
                }
            }
            let digest = out.hasher.clone().finalize();
            out.inner.write_all(&digest)?;
            out.inner.flush()
        };
        emit().map_err(io_error(tmp.path()))?;
    }
    tmp.as_file().sync_all().map_err(io_error(tmp.path()))?;
    tmp.persist(path).map_err(|e| LofError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    // Make the rename itself durable; not all platforms can open a directory.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads only the preamble and header (no checksum: for inspection, e.g. to decide
/// whether an index matches the current model before loading it).
pub fn read_header(path: &Path) -> Result<ArtifactHeader, LofError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let file_len = file.metadata().map_err(io_error(path))?.len();
    let mut preamble = Vec::with_capacity(PREAMBLE_LEN);
    Read::by_ref(&mut file)
        .take(PREAMBLE_LEN as u64)
        .read_to_end(&mut preamble)
        .map_err(io_error(path))?;
    let (header_len, _) = check_preamble(path, &preamble, file_len)?;
    let mut header = vec![0; header_len];
    file.read_exact(&mut header).map_err(io_error(path))?;
    parse_header(path, &header)
}

/// Checks magic, version and lengths; returns (header length, body length).
fn check_preamble(path: &Path, bytes: &[u8], file_len: u64) -> Result<(usize, usize), LofError> {
    let p = || path.to_path_buf();
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) && !bytes.is_empty() {
            LofError::Truncated {
                path: p(),
                expected: PREAMBLE_LEN as u64,
                actual: file_len,
            }
        } else {
            LofError::WrongMagic { path: p() }
        });
    }
    if bytes[..8] != MAGIC {
        return Err(LofError::WrongMagic { path: p() });
    }
    if bytes.len() < PREAMBLE_LEN {
        return Err(LofError::Truncated {
            path: p(),
            expected: PREAMBLE_LEN as u64,
            actual: file_len,
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(LofError::UnsupportedVersion {
            path: p(),
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let body_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_LEN {
        return Err(LofError::Corrupt {
            path: p(),
            reason: format!("header length {header_len}"),
        });
    }
    let expected = (PREAMBLE_LEN as u64 + u64::from(header_len))
        .checked_add(body_len)
        .and_then(|l| l.checked_add(CHECKSUM_LEN as u64))
        .ok_or_else(|| LofError::Corrupt {
            path: p(),
            reason: "body length overflows".into(),
        })?;
    if file_len < expected {
        return Err(LofError::Truncated {
            path: p(),
            expected,
            actual: file_len,
        });
    }
    if file_len > expected {
        return Err(LofError::Corrupt {
            path: p(),
            reason: format!("{} bytes after the checksum", file_len - expected),
        });
    }
    let body_len = usize::try_from(body_len).map_err(|_| LofError::Corrupt {
        path: p(),
        reason: "body too large for this machine".into(),
    })?;
    Ok((header_len as usize, body_len))
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<ArtifactHeader, LofError> {
    serde_json::from_slice(bytes).map_err(|e| LofError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("header: {e}"),
    })
}

/// Reads a whole artifact file into memory.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, LofError> {
    std::fs::read(path).map_err(io_error(path))
}

/// Validates and decodes an artifact read by [`read_file`]. Checks, in order: magic,
/// version, length, checksum, header, model hash, body layout.
pub(crate) fn decode(
    path: &Path,
    bytes: &[u8],
    expected_model_hash: &str,
) -> Result<Decoded, LofError> {
    let corrupt = |reason: String| LofError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let (header_len, body_len) = check_preamble(path, bytes, bytes.len() as u64)?;
    let end = bytes.len() - CHECKSUM_LEN;
    let digest = Sha256::digest(&bytes[..end]);
    if digest.as_slice() != &bytes[end..] {
        return Err(LofError::ChecksumMismatch {
            path: path.to_path_buf(),
        });
    }
    let header = parse_header(path, &bytes[PREAMBLE_LEN..PREAMBLE_LEN + header_len])?;
    if header.model_hash != expected_model_hash {
        return Err(LofError::ModelMismatch {
            path: path.to_path_buf(),
            expected: expected_model_hash.to_string(),
            found: header.model_hash,
        });
    }
    if header.distance != DISTANCE {
        return Err(corrupt(format!("unknown distance {:?}", header.distance)));
    }
    let (n, d, k) = (header.count, header.dim, header.k);
    if d == 0 || k == 0 || k >= n || u32::try_from(n).is_err() || n.checked_mul(d).is_none() {
        return Err(corrupt(format!("bad shape: count {n}, dim {d}, k {k}")));
    }
    header.hnsw.validate().map_err(|e| corrupt(e.to_string()))?;

    let mut body = Cursor {
        bytes: &bytes[PREAMBLE_LEN + header_len..PREAMBLE_LEN + header_len + body_len],
    };
    let missing = || corrupt("body shorter than its header says".into());
    let embeddings = body.f32s(n * d).ok_or_else(missing)?;
    let labels = body.take(n).ok_or_else(missing)?.to_vec();
    let kdist = body.f64s(n).ok_or_else(missing)?;
    let lrd = body.f64s(n).ok_or_else(missing)?;
    let sorted_scores = body.f64s(n).ok_or_else(missing)?;
    let layer_count = body.u32().ok_or_else(missing)?;
    let mut layers = Vec::new();
    for _ in 0..layer_count {
        let mut array = || {
            let len = usize::try_from(body.u64()?).ok()?;
            body.u32s(len)
        };
        let (members, offsets, links) = (
            array().ok_or_else(missing)?,
            array().ok_or_else(missing)?,
            array().ok_or_else(missing)?,
        );
        layers.push(Layer {
            members,
            offsets,
            links,
        });
    }
    if !body.bytes.is_empty() {
        return Err(corrupt("body longer than its header says".into()));
    }
    let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
    let valid = finite(&kdist)
        && finite(&lrd)
        && finite(&sorted_scores)
        && sorted_scores.is_sorted()
        && embeddings.iter().all(|x| x.is_finite())
        && kdist.iter().all(|&x| x >= 0.0)
        && lrd.iter().all(|&x| x > 0.0);
    if !valid {
        return Err(corrupt("non-finite, negative or unsorted values".into()));
    }
    Ok(Decoded {
        header,
        embeddings,
        labels,
        kdist,
        lrd,
        sorted_scores,
        layers,
    })
}

/// Bounds-checked reading of the body; `None` when a section runs past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32s(&mut self, count: usize) -> Option<Vec<u32>> {
        let raw = self.take(count.checked_mul(4)?)?;
        Some(
            raw.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        )
    }

    fn f32s(&mut self, count: usize) -> Option<Vec<f32>> {
        let raw = self.take(count.checked_mul(4)?)?;
        Some(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        )
    }

    fn f64s(&mut self, count: usize) -> Option<Vec<f64>> {
        let raw = self.take(count.checked_mul(8)?)?;
        Some(
            raw.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        )
    }
}

/// Feeds everything written to the hasher as well.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes floats little-endian, a chunk at a time (one `write_all` per value is slow).
fn write_f32s(out: &mut impl Write, values: &[f32]) -> std::io::Result<()> {
    for chunk in values.chunks(8192) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes)?;
    }
    Ok(())
}

fn write_u32s(out: &mut impl Write, values: &[u32]) -> std::io::Result<()> {
    for chunk in values.chunks(8192) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes)?;
    }
    Ok(())
}

fn write_f64s(out: &mut impl Write, values: &[f64]) -> std::io::Result<()> {
    for chunk in values.chunks(8192) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes)?;
    }
    Ok(())
}
