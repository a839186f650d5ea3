//! The one error type of this crate.
//!
//! Artifact refusals each have their own variant so that a caller (the service, a test)
//! can tell "rebuild the index for this model" (`ModelMismatch`, `UnsupportedVersion`)
//! from "this file is damaged" (`Truncated`, `ChecksumMismatch`, `Corrupt`).

use std::path::PathBuf;

/// Everything that can go wrong when building, querying, saving or loading an index.
#[derive(Debug, thiserror::Error)]
pub enum LofError {
    /// The caller passed data that cannot be used (shapes, k, NaN, parameters).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Reading or writing a file failed.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The file does not start with the artifact magic: not an index file at all.
    #[error("{} is not an oodgate LOF index (wrong magic bytes)", .path.display())]
    WrongMagic {
        /// The file involved.
        path: PathBuf,
    },

    /// The file is an index of another format version.
    #[error(
        "{}: index format version {found}, this build reads version {expected}; rebuild the index",
        .path.display()
    )]
    UnsupportedVersion {
        /// The file involved.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build reads and writes.
        expected: u32,
    },

    /// The file is shorter than its own preamble says.
    #[error("{}: truncated: {actual} bytes, expected {expected}", .path.display())]
    Truncated {
        /// The file involved.
        path: PathBuf,
        /// Length the preamble announces.
        expected: u64,
        /// Length found.
        actual: u64,
    },

    /// The stored SHA-256 does not match the content: the file was damaged.
    #[error("{}: checksum mismatch, the index file is corrupted", .path.display())]
    ChecksumMismatch {
        /// The file involved.
        path: PathBuf,
    },

    /// The index was built from another model's embeddings.
    #[error(
        "{}: index was built for model {found}, expected model {expected}; rebuild the index",
        .path.display()
    )]
    ModelMismatch {
        /// The file involved.
        path: PathBuf,
        /// Model hash the caller expects.
        expected: String,
        /// Model hash recorded in the file.
        found: String,
    },

    /// The checksum matched but the content is inconsistent (bad header, wrong section
    /// lengths, unknown distance). Only a file written by other code gets here.
    #[error("{}: malformed index: {reason}", .path.display())]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The HNSW graph could not be exported from hnsw_rs, or its neighbour lists are
    /// inconsistent.
    #[error("HNSW graph: {0}")]
    Graph(String),

    /// An HNSW search or recall check on an index built without its graph.
    #[error("the index has no HNSW graph (it was built for exact search); build it with the graph")]
    NoGraph,
}
