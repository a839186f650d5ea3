//! Local Outlier Factor for out-of-distribution rejection, with scikit-learn's semantics.
//!
//! Everything that depends only on the training set (each point's exact k nearest
//! neighbours, k-distances, local reachability densities, the sorted training scores) is
//! computed once, exactly, by [`LofIndex::build`] (or, for training sets too large for
//! the exact all-pairs pass, from the graph by [`LofIndex::build_with`]). At serving time only a query's own k
//! neighbours are searched, exactly or on an HNSW graph ([`SearchMode`]); HNSW recall is
//! then the only difference from scikit-learn's `LocalOutlierFactor(novelty=True)`.
//!
//! Modules: [`score`] (the LOF maths), [`exact`] (exact batched kNN), [`projection`]
//! (the low-dimensional space exact search screens in), [`hnsw`] (the
//! graph: built by hnsw_rs, kept as neighbour lists, searched, recall-checked),
//! [`artifact`] (the one-file index format), [`index`] (`LofIndex`), [`neighbours`]
//! (kNN result lists), [`error`].

pub mod artifact;
pub mod error;
pub mod exact;
pub mod exact_lof;
mod fused;
pub mod hnsw;
pub mod index;
pub mod neighbours;
pub mod projection;
pub mod roc;
pub mod score;

pub use artifact::{ArtifactHeader, FORMAT_VERSION, read_header};
pub use error::LofError;
pub use exact_lof::{ExactLof, QueryScores};
pub use hnsw::{HnswParams, RecallReport};
pub use index::{
    BuildReport, LofIndex, Neighbour, QueryResult, RECALL_SAMPLE, SearchMode, TrainingNeighbours,
};
pub use neighbours::NeighbourLists;
pub use score::{
    Decision, FusedDecision, Thresholds, TrainingDistribution, Verdict, decide, decide_fused,
    percentile_linear, training_tail,
};

/// The ndarray version this crate's API uses (re-exported so callers match it).
pub use ndarray;

/// A progress bar on stderr for the long offline steps (embedding, kNN passes, graph
/// build); the one style the project's commands share.
pub fn progress_bar(
    len: usize,
    message: impl Into<std::borrow::Cow<'static, str>>,
) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>24} [{bar:40}] {pos}/{len} {elapsed} (eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
