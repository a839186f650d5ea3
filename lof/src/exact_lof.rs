//! LOF fitted and queried with exact neighbours only, no graph: what offline
//! evaluation needs (scikit-learn's answer, in any dimension, without the HNSW build).

use indicatif::ProgressBar;
use ndarray::{Array2, ArrayView2};

use crate::error::LofError;
use crate::exact::ExactIndex;
use crate::score::{self, TrainingDistribution};

pub struct ExactLof {
    exact: ExactIndex,
    k: usize,
    kdist: Vec<f64>,
    lrd: Vec<f64>,
    /// Training scores and k-distances, ascending.
    training: TrainingDistribution,
}

/// Per query: scikit-learn's `score_samples`, and the distance to its k-th nearest
/// training point (the distance part of [`score::decide_fused`]).
#[derive(Debug, Clone, Default)]
pub struct QueryScores {
    pub scores: Vec<f64>,
    pub kth_distances: Vec<f64>,
}

impl ExactLof {
    /// Fits on n rows of `dim` floats.
    pub fn fit(
        embeddings: Vec<f32>,
        dim: usize,
        k: usize,
        progress: bool,
    ) -> Result<Self, LofError> {
        let n = embeddings.len().checked_div(dim).unwrap_or(0);
        if k == 0 || k >= n {
            return Err(LofError::InvalidInput(format!(
                "k must lie in [1, n - 1], got k = {k}, n = {n}"
            )));
        }
        let data = Array2::from_shape_vec((n, dim), embeddings)
            .map_err(|e| LofError::InvalidInput(e.to_string()))?;
        let exact = ExactIndex::new(data);
        let bar = progress.then(|| crate::progress_bar(n, "exact kNN (fit)"));
        let neighbours = exact.search_training(k, bar.as_ref());
        if let Some(bar) = bar {
            bar.finish();
        }
        let kdist = score::kdist(&neighbours);
        let lrd = score::training_lrd(&neighbours, &kdist);
        let sorted_scores = score::sort_scores(score::training_scores(&neighbours, &lrd));
        Ok(Self {
            exact,
            k,
            training: TrainingDistribution::new(sorted_scores, &kdist),
            kdist,
            lrd,
        })
    }

    /// scikit-learn's `score_samples` for each query row.
    pub fn score(
        &self,
        queries: ArrayView2<'_, f32>,
        progress: bool,
    ) -> Result<Vec<f64>, LofError> {
        Ok(self.score_with_distances(queries, progress)?.scores)
    }

    /// Scores and k-th neighbour distances for each query row.
    pub fn score_with_distances(
        &self,
        queries: ArrayView2<'_, f32>,
        progress: bool,
    ) -> Result<QueryScores, LofError> {
        if queries.ncols() != self.exact.dim() {
            return Err(LofError::InvalidInput(format!(
                "queries have dimension {}, the fit had {}",
                queries.ncols(),
                self.exact.dim()
            )));
        }
        let bar: Option<ProgressBar> =
            progress.then(|| crate::progress_bar(queries.nrows(), "exact kNN (score)"));
        let mut out = QueryScores {
            scores: Vec::with_capacity(queries.nrows()),
            kth_distances: Vec::with_capacity(queries.nrows()),
        };
        // Chunks keep the progress bar moving; the search parallelises inside each.
        for chunk in queries.axis_chunks_iter(ndarray::Axis(0), 2048) {
            let lists = self.exact.search(chunk, self.k);
            for q in 0..lists.len() {
                out.scores.push(score::query_score(
                    lists.ids(q),
                    lists.dists(q),
                    &self.kdist,
                    &self.lrd,
                ));
                out.kth_distances.push(lists.dists(q)[self.k - 1]);
            }
            if let Some(bar) = &bar {
                bar.inc(chunk.nrows() as u64);
            }
        }
        if let Some(bar) = bar {
            bar.finish();
        }
        Ok(out)
    }

    /// scikit-learn's `offset_` for this contamination.
    pub fn offset(&self, contamination: f64) -> Result<f64, LofError> {
        self.training.offset(contamination)
    }

    /// The training scores and k-distances that thresholds and tails are read from.
    pub fn training(&self) -> &TrainingDistribution {
        &self.training
    }

    pub fn sorted_training_scores(&self) -> &[f64] {
        self.training.sorted_scores()
    }
}
