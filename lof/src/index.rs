//! `LofIndex`: the training set's LOF state ([`FittedLof`]) plus the two ways to find
//! a query's neighbours, and its build, query, save and load.

use std::path::Path;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::artifact::{self, ArtifactHeader, Contents, DISTANCE};
use crate::error::LofError;
use crate::exact::ExactIndex;
use crate::fitted::{FittedLof, training_matrix};
use crate::hnsw::{Builder, Graph, HnswParams, RecallReport, measure_recall, sample_points};
use crate::neighbours::NeighbourLists;
use crate::progress_bar;
use crate::score::{self, TrainingDistribution};

/// Training points queried against the graph after a build to measure recall.
pub(crate) const RECALL_SAMPLE: usize = 1_000;

/// How a query's k nearest training points are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Exact search (matrix product + exact re-ranking): scikit-learn's answer.
    Exact,
    /// The HNSW graph with this candidate list width (raised to k if smaller).
    Hnsw {
        /// Search width; larger is slower and closer to exact.
        ef: usize,
    },
}

/// How a build finds each training point's own k neighbours (for kdist and lrd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingNeighbours {
    /// Exact all-pairs search: scikit-learn's answer; its cost grows with n squared.
    Exact,
    /// Searched on the HNSW graph with this width, once the graph is built: for
    /// training sets where the all-pairs pass takes too long.
    Graph {
        /// Search width.
        ef: usize,
    },
}

/// One of a query's nearest training points, as evidence for its verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// Row of the training point in the index.
    pub id: u32,
    /// Its training label.
    pub label: u8,
    /// Euclidean distance to the query.
    pub distance: f64,
}

/// The LOF result for one query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// scikit-learn's `score_samples`: `-LOF`, lower is more anomalous (about -1 inside
    /// the training distribution).
    pub score: f64,
    /// The k neighbours the score was computed from, nearest first.
    pub neighbours: Vec<Neighbour>,
}

/// What a build did and how long each step took.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    /// Exact k-nearest-neighbour pass over all training points.
    pub knn: Duration,
    /// kdist, lrd and training scores.
    pub lof: Duration,
    /// Whole build.
    pub total: Duration,
    /// The HNSW graph, when the build made one.
    pub graph: Option<GraphReport>,
}

/// What building the HNSW graph took, and the recall it reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraphReport {
    /// Graph construction (hnsw_rs) and its export to neighbour lists.
    pub build: Duration,
    /// Recall measurement.
    pub recall_check: Duration,
    /// Recall of the search this crate serves with, on the exported graph.
    pub recall: RecallReport,
    /// Recall of hnsw_rs's own search on the same graph and points, for comparison
    /// (its descent makes one pass per upper layer, so it can end in the wrong region).
    pub hnsw_rs_recall: RecallReport,
}

/// A fitted LOF model over training embeddings, ready to score queries.
pub struct LofIndex {
    /// The training points, k, kdist, lrd and training distribution; exact search.
    fitted: FittedLof,
    /// Training labels, returned with neighbours as evidence.
    labels: Vec<u8>,
    /// The approximate neighbour graph; absent until asked for, since exact search needs
    /// none and the graph costs most of a build (about 14 of 17 s at 60,000 points).
    graph: Option<Graph>,
    /// Parameters the graph was (or will be) built with; `ef_search` is the default
    /// search width.
    hnsw_params: HnswParams,
    /// Recall measured when the graph was built (kept in the artifact).
    recall: Option<RecallReport>,
}

/// Share of the training points, those with the largest k-distance on the graph, whose
/// neighbours a graph build then searches exactly. The threshold comes from the most
/// outlying training points' scores, and they are the ones whose graph neighbours are
/// least reliable: an error there overstates their k-distance. At 240,000 points
/// (`oodgate bench`'s synthetic set) the threshold at contamination 0.001 was 0.0033 off
/// the exact build's without this step, and 0.0005 with it, for 0.5 s of exact search.
const EXACT_SPARSE_SHARE: f64 = 0.02;

/// Each training point's k nearest other training points as the graph finds them
/// (itself dropped by id), or by exact search where the graph reaches too few points;
/// then the sparsest [`EXACT_SPARSE_SHARE`] again by exact search.
fn graph_training_neighbours(
    graph: &Graph,
    exact: &ExactIndex,
    k: usize,
    ef: usize,
) -> NeighbourLists {
    let data = exact.data();
    let rows: Vec<(Vec<u32>, Vec<f64>)> = (0..data.nrows())
        .into_par_iter()
        .map(|p| {
            let q = crate::exact::row(data, p as u32);
            let found = graph.search_training(data, p as u32, k + 1, ef);
            let mut ranked = crate::exact::rank_exact(data, q, &found, k + 1);
            match ranked.iter().position(|&(_, id)| id as usize == p) {
                Some(at) => {
                    ranked.remove(at);
                }
                None => ranked.truncate(k),
            }
            if ranked.len() < k {
                let lists = exact.search_training_rows(&[p], k);
                return (lists.all_ids().to_vec(), lists.all_dists().to_vec());
            }
            ranked.into_iter().map(|(sq, id)| (id, sq.sqrt())).unzip()
        })
        .collect();
    let (ids, dists): (Vec<Vec<u32>>, Vec<Vec<f64>>) = rows.into_iter().unzip();
    let (mut ids, mut dists) = (ids.concat(), dists.concat());
    let kdist: Vec<f64> = dists.chunks_exact(k).map(|row| row[k - 1]).collect();
    let sparse: Vec<usize> = score::sparsest(&kdist, EXACT_SPARSE_SHARE)
        .into_iter()
        .map(|p| p as usize)
        .collect();
    let exact_lists = exact.search_training_rows(&sparse, k);
    for (j, &p) in sparse.iter().enumerate() {
        ids[p * k..(p + 1) * k].copy_from_slice(exact_lists.ids(j));
        dists[p * k..(p + 1) * k].copy_from_slice(exact_lists.dists(j));
    }
    NeighbourLists::new(k, ids, dists)
}

impl std::fmt::Debug for LofIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LofIndex")
            .field("count", &self.len())
            .field("dim", &self.dim())
            .field("k", &self.k())
            .field("hnsw_params", &self.hnsw_params)
            .field("recall", &self.recall)
            .finish_non_exhaustive()
    }
}

/// Builds the HNSW graph over `data` with hnsw_rs and exports it.
fn build_graph(
    data: ArrayView2<'_, f32>,
    params: &HnswParams,
    progress: bool,
) -> Result<(Builder, Graph, Duration), LofError> {
    let t = Instant::now();
    let bar = progress.then(|| progress_bar(data.nrows(), "HNSW graph"));
    let builder = Builder::build(data, params, bar.as_ref());
    if let Some(bar) = bar {
        bar.finish();
    }
    let graph = builder.export()?;
    Ok((builder, graph, t.elapsed()))
}

/// recall@k of the exported graph and of hnsw_rs's own search on [`RECALL_SAMPLE`]
/// training points, against exact search; warns when the served search falls short.
fn check_recall(
    fitted: &FittedLof,
    builder: Builder,
    graph: &Graph,
    ef: usize,
) -> (RecallReport, RecallReport, Duration) {
    let t = Instant::now();
    let exact = fitted.exact();
    let data = exact.data();
    let points = sample_points(data.nrows(), RECALL_SAMPLE);
    let truth = exact.search_training_rows(&points, fitted.k());
    let recall = measure_recall(data, &points, &truth, ef, |q, count, ef| {
        graph.search(data, q, count, ef)
    });
    let hnsw_rs_recall = measure_recall(data, &points, &truth, ef, |q, count, ef| {
        builder.search(q, count, ef)
    });
    if recall.recall < 0.95 {
        tracing::warn!(
            recall = recall.recall,
            ef,
            "HNSW recall below 0.95: consider a larger ef_search or exact search"
        );
    }
    (recall, hnsw_rs_recall, t.elapsed())
}

impl LofIndex {
    /// Fits LOF on `embeddings` (row-major, `labels.len()` rows of `dim` floats): exact
    /// neighbours of every training point (itself excluded), kdist, lrd and training
    /// scores; then the HNSW graph and recall@k of the graph on [`RECALL_SAMPLE`]
    /// training points ([`Self::build_exact`] then [`Self::add_graph`]). Shows progress
    /// bars on stderr when `progress` is set.
    pub fn build(
        embeddings: Vec<f32>,
        labels: Vec<u8>,
        dim: usize,
        k: usize,
        hnsw_params: HnswParams,
        progress: bool,
    ) -> Result<(Self, BuildReport), LofError> {
        Self::build_with(
            embeddings,
            labels,
            dim,
            k,
            hnsw_params,
            TrainingNeighbours::Exact,
            progress,
        )
    }

    /// Fits LOF exactly, without the HNSW graph: all that exact search needs.
    /// `hnsw_params` are kept for a later [`Self::add_graph`].
    pub fn build_exact(
        embeddings: Vec<f32>,
        labels: Vec<u8>,
        dim: usize,
        k: usize,
        hnsw_params: HnswParams,
        progress: bool,
    ) -> Result<(Self, BuildReport), LofError> {
        let started = Instant::now();
        hnsw_params.validate()?;
        let n = labels.len();
        let exact = ExactIndex::new(training_matrix(embeddings, n, dim, k)?);
        let t = Instant::now();
        let bar = progress.then(|| progress_bar(n, "exact kNN"));
        let neighbours = exact.search_training(k, bar.as_ref());
        if let Some(bar) = bar {
            bar.finish();
        }
        let knn = t.elapsed();
        let t = Instant::now();
        let fitted = FittedLof::from_neighbours(exact, &neighbours);
        let lof = t.elapsed();
        tracing::info!(
            count = n,
            dim,
            k,
            seconds = started.elapsed().as_secs_f64(),
            "LOF index built (exact, no graph)"
        );
        let index = Self {
            fitted,
            labels,
            graph: None,
            hnsw_params,
            recall: None,
        };
        let report = BuildReport {
            knn,
            lof,
            total: started.elapsed(),
            graph: None,
        };
        Ok((index, report))
    }

    /// [`LofIndex::build`], with the training points' own neighbours found as `training`
    /// says. With [`TrainingNeighbours::Graph`] the graph is built first, and the recall
    /// check compares it with exact search on [`RECALL_SAMPLE`] points.
    pub fn build_with(
        embeddings: Vec<f32>,
        labels: Vec<u8>,
        dim: usize,
        k: usize,
        hnsw_params: HnswParams,
        training: TrainingNeighbours,
        progress: bool,
    ) -> Result<(Self, BuildReport), LofError> {
        let ef = match training {
            TrainingNeighbours::Exact => {
                let (mut index, mut report) =
                    Self::build_exact(embeddings, labels, dim, k, hnsw_params, progress)?;
                let graph = index.add_graph(progress)?;
                report.total += graph.build + graph.recall_check;
                report.graph = Some(graph);
                return Ok((index, report));
            }
            TrainingNeighbours::Graph { ef } => ef,
        };
        let started = Instant::now();
        hnsw_params.validate()?;
        let n = labels.len();
        let exact = ExactIndex::new(training_matrix(embeddings, n, dim, k)?);
        let (builder, graph, graph_time) = build_graph(exact.data(), &hnsw_params, progress)?;
        let t = Instant::now();
        let neighbours = graph_training_neighbours(&graph, &exact, k, ef);
        let knn = t.elapsed();

        let t = Instant::now();
        let fitted = FittedLof::from_neighbours(exact, &neighbours);
        let graph = graph.with_seeds(fitted.exact().data(), fitted.kdist());
        let lof = t.elapsed();

        let (recall, hnsw_rs_recall, recall_check) =
            check_recall(&fitted, builder, &graph, hnsw_params.ef_search);
        tracing::info!(
            count = n,
            dim,
            k,
            recall = recall.recall,
            self_found = recall.self_found,
            ef = recall.ef,
            seconds = started.elapsed().as_secs_f64(),
            "LOF index built (training neighbours from the graph)"
        );
        let index = Self {
            fitted,
            labels,
            graph: Some(graph),
            hnsw_params,
            recall: Some(recall),
        };
        let report = BuildReport {
            knn,
            lof,
            total: started.elapsed(),
            graph: Some(GraphReport {
                build: graph_time,
                recall_check,
                recall,
                hnsw_rs_recall,
            }),
        };
        Ok((index, report))
    }

    /// Builds the HNSW graph over the training points (replacing any) with the index's
    /// parameters, and measures its recall@k on [`RECALL_SAMPLE`] training points.
    pub fn add_graph(&mut self, progress: bool) -> Result<GraphReport, LofError> {
        let data = self.fitted.exact().data();
        let (builder, graph, build) = build_graph(data, &self.hnsw_params, progress)?;
        let graph = graph.with_seeds(data, self.fitted.kdist());
        let (recall, hnsw_rs_recall, recall_check) =
            check_recall(&self.fitted, builder, &graph, self.hnsw_params.ef_search);
        tracing::info!(
            count = self.len(),
            recall = recall.recall,
            self_found = recall.self_found,
            ef = recall.ef,
            seconds = (build + recall_check).as_secs_f64(),
            "HNSW graph built"
        );
        self.graph = Some(graph);
        self.recall = Some(recall);
        Ok(GraphReport {
            build,
            recall_check,
            recall,
            hnsw_rs_recall,
        })
    }

    /// True when the index has its HNSW graph (built, or loaded from the artifact).
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// Scores a batch of queries (b x dim): for each, its k nearest training points
    /// found by `mode`, and its LOF score from them.
    pub fn query(
        &self,
        queries: ArrayView2<'_, f32>,
        mode: SearchMode,
    ) -> Result<Vec<QueryResult>, LofError> {
        if queries.ncols() != self.dim() {
            return Err(LofError::InvalidInput(format!(
                "queries have dimension {}, index has {}",
                queries.ncols(),
                self.dim()
            )));
        }
        if !queries.iter().all(|v| v.is_finite()) {
            return Err(LofError::InvalidInput(
                "queries contain NaN or infinity".into(),
            ));
        }
        if queries.nrows() == 0 {
            return Ok(Vec::new());
        }
        let queries = queries.as_standard_layout();
        let k = self.k();
        let exact = self.fitted.exact();
        let lists = match mode {
            SearchMode::Exact => exact.search(queries.view(), k),
            SearchMode::Hnsw { ef } => {
                let graph = self.graph.as_ref().ok_or(LofError::NoGraph)?;
                let found = graph.search_batch(exact.data(), queries.view(), k, ef);
                // Each row: (distance, id) nearest first.
                let rows: Vec<Vec<(f64, u32)>> = found
                    .into_par_iter()
                    .enumerate()
                    .map(|(i, row)| match row {
                        Some(row) => row.into_iter().map(|(sq, id)| (sq.sqrt(), id)).collect(),
                        None => {
                            // The graph returned fewer than k points: answer exactly.
                            tracing::debug!(query = i, "HNSW returned fewer than k neighbours");
                            let q = queries.row(i).insert_axis(Axis(0));
                            let lists = exact.search(q, k);
                            lists
                                .all_dists()
                                .iter()
                                .copied()
                                .zip(lists.all_ids().iter().copied())
                                .collect()
                        }
                    })
                    .collect();
                let (dists, ids) = rows.into_iter().flatten().unzip();
                NeighbourLists::new(k, ids, dists)
            }
        };
        let scored = self.fitted.score_neighbours(&lists);
        Ok(scored
            .scores
            .into_iter()
            .enumerate()
            .map(|(q, score)| QueryResult {
                score,
                neighbours: lists
                    .ids(q)
                    .iter()
                    .zip(lists.dists(q))
                    .map(|(&id, &distance)| Neighbour {
                        id,
                        label: self.labels[id as usize],
                        distance,
                    })
                    .collect(),
            })
            .collect())
    }

    /// scikit-learn's `offset_` for `LocalOutlierFactor(contamination=c)`: the `100 c`-th
    /// percentile of the training scores. `c` must lie in `[0, 1]`.
    pub fn offset(&self, contamination: f64) -> Result<f64, LofError> {
        self.fitted.offset(contamination)
    }

    /// The threshold that rejects a fraction `rate` of the training points themselves
    /// (the same percentile mapping as [`Self::offset`]).
    pub fn threshold_for_false_rejection_rate(&self, rate: f64) -> Result<f64, LofError> {
        self.fitted.offset(rate)
    }

    /// The training scores and k-distances that thresholds and tails are read from.
    pub fn training(&self) -> &TrainingDistribution {
        self.fitted.training()
    }

    /// Writes the index to `path` as one artifact file (atomically), recording
    /// `model_hash` so that loading for another model is refused.
    pub fn save(&self, path: &Path, model_hash: &str) -> Result<(), LofError> {
        self.save_with_provenance(path, model_hash, None)
    }

    /// [`Self::save`], with the caller's record of the indexed set in the header
    /// (read back by [`Self::load_with_provenance`]).
    pub fn save_with_provenance(
        &self,
        path: &Path,
        model_hash: &str,
        provenance: Option<serde_json::Value>,
    ) -> Result<(), LofError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| LofError::Io {
                path: parent.to_path_buf(),
                source: e,
            })?;
        }
        let header = ArtifactHeader {
            model_hash: model_hash.to_string(),
            dim: self.dim(),
            k: self.k(),
            count: self.len(),
            distance: DISTANCE.to_string(),
            hnsw: self.hnsw_params,
            recall: self.recall,
            writer: format!(
                "oodgate-lof {} (graph built by hnsw_rs 0.3)",
                env!("CARGO_PKG_VERSION")
            ),
            provenance,
        };
        let embeddings = self.embeddings();
        let embeddings = embeddings.as_slice().expect("standard layout");
        artifact::write(
            path,
            &Contents {
                header: &header,
                embeddings,
                labels: &self.labels,
                kdist: self.kdist(),
                lrd: self.lrd(),
                sorted_scores: self.sorted_training_scores(),
                layers: self.graph.as_ref().map_or(&[], |g| g.layers()),
            },
        )
    }

    /// Loads an index written by [`Self::save`], refusing a file for another model
    /// (`ModelMismatch`), of another format version, with wrong magic, truncated or
    /// corrupted. The graph is reloaded, not rebuilt.
    pub fn load(path: &Path, expected_model_hash: &str) -> Result<Self, LofError> {
        Ok(Self::load_with_provenance(path, expected_model_hash)?.0)
    }

    /// [`Self::load`], returning also what [`Self::save_with_provenance`] recorded.
    pub fn load_with_provenance(
        path: &Path,
        expected_model_hash: &str,
    ) -> Result<(Self, Option<serde_json::Value>), LofError> {
        let bytes = artifact::read_file(path)?;
        let d = artifact::decode(path, &bytes, expected_model_hash)?;
        drop(bytes);
        let (n, dim) = (d.header.count, d.header.dim);
        let corrupt = |reason: String| LofError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let data =
            Array2::from_shape_vec((n, dim), d.embeddings).map_err(|e| corrupt(e.to_string()))?;
        // No layers: the index was built without its graph.
        let graph = match d.layers.is_empty() {
            true => None,
            false => Some(
                Graph::from_layers(n, d.layers)
                    .map_err(|e| corrupt(e.to_string()))?
                    .with_seeds(data.view(), &d.kdist),
            ),
        };
        let index = Self {
            fitted: FittedLof::from_parts(
                ExactIndex::new(data),
                d.header.k,
                d.kdist,
                d.lrd,
                d.sorted_scores,
            ),
            labels: d.labels,
            graph,
            hnsw_params: d.header.hnsw,
            recall: d.header.recall,
        };
        Ok((index, d.header.provenance))
    }

    /// Number of training points.
    pub fn len(&self) -> usize {
        self.fitted.len()
    }

    /// True when the index holds no points (never, for a built or loaded index).
    pub fn is_empty(&self) -> bool {
        self.fitted.is_empty()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.fitted.dim()
    }

    /// LOF's k.
    pub fn k(&self) -> usize {
        self.fitted.k()
    }

    /// Training embeddings (n x dim).
    pub fn embeddings(&self) -> ArrayView2<'_, f32> {
        self.fitted.exact().data()
    }

    /// Training labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// kdist per training point.
    pub fn kdist(&self) -> &[f64] {
        self.fitted.kdist()
    }

    /// lrd per training point.
    pub fn lrd(&self) -> &[f64] {
        self.fitted.lrd()
    }

    /// Training scores (scikit-learn's `negative_outlier_factor_`), ascending.
    pub fn sorted_training_scores(&self) -> &[f64] {
        self.fitted.sorted_training_scores()
    }

    /// Graph parameters.
    pub fn hnsw_params(&self) -> HnswParams {
        self.hnsw_params
    }

    /// The default HNSW mode: the graph with its configured `ef_search`.
    pub fn default_search_mode(&self) -> SearchMode {
        SearchMode::Hnsw {
            ef: self.hnsw_params.ef_search,
        }
    }

    /// Recall measured at build time.
    pub fn recall(&self) -> Option<RecallReport> {
        self.recall
    }

    /// Measures recall@k of the graph again (e.g. for another ef) on up to `sample`
    /// training points spread over the index, against exact search of those points.
    pub fn measure_recall(&self, sample: usize, ef: usize) -> Result<RecallReport, LofError> {
        let graph = self.graph.as_ref().ok_or(LofError::NoGraph)?;
        let points = sample_points(self.len(), sample);
        let exact = self.fitted.exact();
        let truth = exact.search_training_rows(&points, self.k());
        let data = exact.data();
        Ok(measure_recall(data, &points, &truth, ef, |q, count, ef| {
            graph.search(data, q, count, ef)
        }))
    }
}
