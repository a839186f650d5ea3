//! Local Outlier Factor for out-of-distribution rejection, with scikit-learn's semantics.
//!
//! Everything that depends only on the training set (each point's exact k nearest
//! neighbours, k-distances, local reachability densities, the sorted training scores) is
//! computed once, exactly, by [`LofIndex::build`] (or, for training sets too large for
//! the exact all-pairs pass, from the graph by [`LofIndex::build_with`]). At serving time only a query's own k
//! neighbours are searched, exactly or on an HNSW graph ([`SearchMode`]); HNSW recall is
//! then the only difference from scikit-learn's `LocalOutlierFactor(novelty=True)`.
//!
//! Offline evaluation uses the fitted state alone ([`FittedLof`]): exact neighbours,
//! no graph. Every verdict, served or evaluated, comes from one rule: [`decide`].
//!
//! Modules (private; what other crates use is re-exported here): `score` (the LOF
//! maths), `fitted` (the training set's LOF state), `exact` (exact batched kNN),
//! `shortlist` and `fused` (its screening pass), `projection` (the low-dimensional
//! space exact search screens in), `hnsw` (the graph: built by hnsw_rs, kept as
//! neighbour lists, searched, recall-checked), `artifact` (the one-file index format),
//! `index` (`LofIndex`), `neighbours` (kNN result lists), `roc`, `error`.

mod artifact;
mod error;
mod exact;
mod fitted;
mod fused;
mod hnsw;
mod index;
mod neighbours;
mod projection;
mod roc;
mod score;
mod shortlist;

pub use artifact::{ArtifactHeader, FORMAT_VERSION, read_header};
pub use error::LofError;
pub use exact::ExactIndex;
pub use fitted::{FittedLof, QueryScores};
pub use hnsw::{HnswParams, RecallReport};
pub use index::{
    BuildReport, GraphReport, LofIndex, Neighbour, QueryResult, SearchMode, TrainingNeighbours,
};
pub use neighbours::NeighbourLists;
pub use roc::{auroc, rejected_fraction, threshold_accepting};
pub use score::{
    Decision, Thresholds, TrainingDistribution, Verdict, decide, percentile_linear, threshold,
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
