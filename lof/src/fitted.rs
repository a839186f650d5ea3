//! `FittedLof`: everything LOF keeps from its training set (the points for exact
//! search, k, each point's k-distance and lrd, the sorted training scores and
//! k-distances), and exact scoring of queries against it. The served index
//! ([`crate::LofIndex`]) holds one and adds labels and the graph; offline evaluation
//! uses one alone (scikit-learn's answer in any dimension, without the HNSW build).

use ndarray::{Array2, ArrayView2, Axis};

use crate::error::LofError;
use crate::exact::ExactIndex;
use crate::neighbours::NeighbourLists;
use crate::score::{self, TrainingDistribution};

/// Query rows searched per step of [`FittedLof::score`]: keeps its progress bar moving
/// (the search parallelises inside each step).
const SCORE_CHUNK: usize = 2048;

/// A fitted LOF model: the training set's state, ready to score queries.
#[derive(Debug, Clone)]
pub struct FittedLof {
    /// Training embeddings (n x d) for exact search and exact re-ranking.
    exact: ExactIndex,
    /// LOF's k (n_neighbors).
    k: usize,
    /// Distance from each training point to its k-th neighbour.
    kdist: Vec<f64>,
    /// Local reachability density of each training point.
    lrd: Vec<f64>,
    /// Training scores and k-distances, ascending: any contamination maps to thresholds
    /// by percentile.
    training: TrainingDistribution,
}

/// Per query: scikit-learn's `score_samples`, and the distance to its k-th nearest
/// training point (the distance part of [`crate::decide`]).
#[derive(Debug, Clone, Default)]
pub struct QueryScores {
    pub scores: Vec<f64>,
    pub kth_distances: Vec<f64>,
}

/// Checks `embeddings` as `n` rows of `dim` finite floats to fit LOF's `k` on, and
/// shapes them as a matrix.
pub(crate) fn training_matrix(
    embeddings: Vec<f32>,
    n: usize,
    dim: usize,
    k: usize,
) -> Result<Array2<f32>, LofError> {
    if dim == 0 || embeddings.len() != n * dim {
        return Err(LofError::InvalidInput(format!(
            "{} floats are not {n} rows of dimension {dim}",
            embeddings.len()
        )));
    }
    if k == 0 || k >= n {
        return Err(LofError::InvalidInput(format!(
            "k must lie in [1, n - 1] = [1, {}], got {k}",
            n.saturating_sub(1)
        )));
    }
    if u32::try_from(n).is_err() {
        return Err(LofError::InvalidInput(format!("{n} points: too many")));
    }
    if !embeddings.iter().all(|v| v.is_finite()) {
        return Err(LofError::InvalidInput(
            "embeddings contain NaN or infinity".into(),
        ));
    }
    Array2::from_shape_vec((n, dim), embeddings).map_err(|e| LofError::InvalidInput(e.to_string()))
}

impl FittedLof {
    /// Fits on the rows of `embeddings` (`dim` floats each) with exact neighbours:
    /// scikit-learn's `fit`. Shows a progress bar on stderr when `progress` is set.
    pub fn fit(
        embeddings: Vec<f32>,
        dim: usize,
        k: usize,
        progress: bool,
    ) -> Result<Self, LofError> {
        let n = embeddings.len().checked_div(dim).unwrap_or(0);
        let exact = ExactIndex::new(training_matrix(embeddings, n, dim, k)?);
        let bar = progress.then(|| crate::progress_bar(n, "exact kNN (fit)"));
        let neighbours = exact.search_training(k, bar.as_ref());
        if let Some(bar) = bar {
            bar.finish();
        }
        Ok(Self::from_neighbours(exact, &neighbours))
    }

    /// The state that follows from each training point's k nearest other training
    /// points (exact, or found on a graph).
    pub(crate) fn from_neighbours(exact: ExactIndex, neighbours: &NeighbourLists) -> Self {
        let kdist = score::kdist(neighbours);
        let lrd = score::training_lrd(neighbours, &kdist);
        let sorted_scores = score::sort_scores(score::training_scores(neighbours, &lrd));
        Self::from_parts(exact, neighbours.k(), kdist, lrd, sorted_scores)
    }

    /// The state as stored (in an index artifact), not recomputed.
    pub(crate) fn from_parts(
        exact: ExactIndex,
        k: usize,
        kdist: Vec<f64>,
        lrd: Vec<f64>,
        sorted_scores: Vec<f64>,
    ) -> Self {
        Self {
            exact,
            k,
            training: TrainingDistribution::new(sorted_scores, &kdist),
            kdist,
            lrd,
        }
    }

    /// Scores and k-th neighbour distances of each query row, from its exact k
    /// nearest training points: scikit-learn's `score_samples`.
    pub fn score(
        &self,
        queries: ArrayView2<'_, f32>,
        progress: bool,
    ) -> Result<QueryScores, LofError> {
        if queries.ncols() != self.dim() {
            return Err(LofError::InvalidInput(format!(
                "queries have dimension {}, the fit had {}",
                queries.ncols(),
                self.dim()
            )));
        }
        let bar = progress.then(|| crate::progress_bar(queries.nrows(), "exact kNN (score)"));
        let mut out = QueryScores {
            scores: Vec::with_capacity(queries.nrows()),
            kth_distances: Vec::with_capacity(queries.nrows()),
        };
        for chunk in queries.axis_chunks_iter(Axis(0), SCORE_CHUNK) {
            let part = self.score_neighbours(&self.exact.search(chunk, self.k));
            out.scores.extend(part.scores);
            out.kth_distances.extend(part.kth_distances);
            if let Some(bar) = &bar {
                bar.inc(chunk.nrows() as u64);
            }
        }
        if let Some(bar) = bar {
            bar.finish();
        }
        Ok(out)
    }

    /// The score and k-th distance of each row of queries' k nearest training points,
    /// however they were found: the one place a query is scored.
    pub(crate) fn score_neighbours(&self, lists: &NeighbourLists) -> QueryScores {
        debug_assert_eq!(lists.k(), self.k);
        let mut out = QueryScores {
            scores: Vec::with_capacity(lists.len()),
            kth_distances: Vec::with_capacity(lists.len()),
        };
        for q in 0..lists.len() {
            let (ids, dists) = (lists.ids(q), lists.dists(q));
            out.scores
                .push(score::query_score(ids, dists, &self.kdist, &self.lrd));
            out.kth_distances.push(dists[self.k - 1]);
        }
        out
    }

    /// scikit-learn's `offset_` for `LocalOutlierFactor(contamination=c)`: the `100 c`-th
    /// percentile of the training scores. `c` must lie in `[0, 1]`.
    pub fn offset(&self, contamination: f64) -> Result<f64, LofError> {
        self.training.offset(contamination)
    }

    /// The training scores and k-distances that thresholds and tails are read from.
    pub fn training(&self) -> &TrainingDistribution {
        &self.training
    }

    /// The training points prepared for exact search.
    pub(crate) fn exact(&self) -> &ExactIndex {
        &self.exact
    }

    /// Number of training points.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// True when fitted on no points (never: a fit needs more than k).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.exact.dim()
    }

    /// LOF's k.
    pub fn k(&self) -> usize {
        self.k
    }

    /// kdist per training point.
    pub fn kdist(&self) -> &[f64] {
        &self.kdist
    }

    /// lrd per training point.
    pub fn lrd(&self) -> &[f64] {
        &self.lrd
    }

    /// Training scores (scikit-learn's `negative_outlier_factor_`), ascending.
    pub fn sorted_training_scores(&self) -> &[f64] {
        self.training.sorted_scores()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use crate::exact::ExactIndex;
    use crate::score;

    include!("../tests/common/sklearn_fixture.rs");

    #[test]
    fn training_state_matches_sklearn() {
        let f = fixture();
        // Per-point values through the crate's maths, in training order.
        let data = Array2::from_shape_vec((f.n_train, f.dim), f.train.clone()).unwrap();
        let neighbours = ExactIndex::new(data).search_training(f.k, None);
        let kdist = score::kdist(&neighbours);
        let lrd = score::training_lrd(&neighbours, &kdist);
        let scores = score::training_scores(&neighbours, &lrd);
        for (name, ours, theirs) in [
            ("kdist", &kdist, &f.kdist),
            ("lrd", &lrd, &f.lrd),
            (
                "negative_outlier_factor_",
                &scores,
                &f.negative_outlier_factor,
            ),
        ] {
            let (d, at) = max_rel_diff(ours, theirs);
            println!("{name}: max relative difference {d:e} at {at}");
            assert!(
                d < 1e-9,
                "{name}[{at}]: {} vs sklearn {}",
                ours[at],
                theirs[at]
            );
        }
    }
}
