//! Exact batched k-nearest-neighbour search on a matrix product.
//!
//! For a block of queries Q and a tile of training points X, the squared distance is
//! `|q|^2 + |x|^2 - 2 q.x`, and the `q.x` for the whole tile is one f32 GEMM (ndarray's
//! `general_mat_mul`, i.e. matrixmultiply). That expansion is fast but loses precision
//! (cancellation), so it is only used to *screen*: each row keeps its best candidates,
//! whose distances are then computed directly in f64 (sum of squared differences, left
//! to right, as scikit-learn's KD-tree does) and sorted by (distance, id). When the
//! training set is nearly low-dimensional, the screening runs in a smaller space whose
//! distances bound the true ones from below ([`crate::projection`]): 16 instead of 64
//! dimensions for the default model. Candidates are measured in screening order until
//! the next one's bound exceeds the k-th distance found. A rigorous bound on the
//! screening error checks that no point left out could still be among the true k
//! nearest; a row that fails the check is redone with more candidates, then by a plain
//! f64 scan. So the result is exact, not approximate.
//!
//! Query blocks run in parallel on rayon; each walks the training points tile by tile
//! so the GEMM output stays small (block x tile floats). Where the CPU has AVX-512,
//! the screening pass is instead one fused kernel that never writes the keys out
//! (`fused.rs`); both routes fill the same shortlist (`shortlist.rs`) and are tested
//! against brute force.

use indicatif::ProgressBar;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

use crate::fused::Panels;
use crate::neighbours::NeighbourLists;
use crate::projection::Projection;
use crate::shortlist::Shortlist;

/// Fewest query rows a batch is split into per thread: below this the GEMM's packing
/// of each training tile costs more than the parallelism gains.
const MIN_BLOCK_ROWS: usize = 16;

/// Query rows per parallel work item and training columns per GEMM tile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocking {
    /// Queries per block (one rayon task).
    pub query_rows: usize,
    /// Training points per GEMM tile.
    pub data_cols: usize,
}

impl Default for Blocking {
    fn default() -> Self {
        // 512 x 512 f32 = 1 MiB of GEMM output per task; taller query blocks mean the
        // training tiles are packed for the GEMM fewer times. Swept on the bench's
        // 30,000 x 60,000 search: within 4 % of the best of 64..4096 x 256..2048.
        Self {
            query_rows: 512,
            data_cols: 512,
        }
    }
}

/// Training embeddings prepared for exact search: the matrix, and the points of the
/// space candidates are screened in, with their squared norms.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    /// Training embeddings, n x d, standard (row-major) layout.
    data: Array2<f32>,
    /// When the training set is nearly low-dimensional: the projection to a smaller
    /// space whose distances bound the true ones from below. Screening then runs
    /// there, and only the candidates are measured in full.
    projection: Option<Projection>,
    /// The training points in the screening space, laid out for the screening pass.
    screen: Screen,
    /// Largest `|s|^2` over the screening points, for the screening error bound.
    max_sq_norm: f32,
}

/// The screening points, in one layout only: the fused kernel's where the CPU runs it,
/// else rows for the GEMM.
#[derive(Debug, Clone)]
enum Screen {
    Fused(Panels),
    Gemm {
        /// The projected points; `None` when screening in the full space (`data`).
        points: Option<Array2<f32>>,
        /// `|s|^2` per point, in f32 as used by the screening GEMM.
        sq_norms: Vec<f32>,
    },
}

/// One query's k nearest points, `(squared distance, id)` nearest first; `None` when
/// the screening could not prove that no point left out is nearer.
type Ranked = Option<Vec<(f64, u32)>>;

impl ExactIndex {
    /// Prepares `data` (n x d) for search, with a screening projection when the data
    /// allow one.
    pub fn new(data: Array2<f32>) -> Self {
        let data = data.as_standard_layout().into_owned();
        let projection = Projection::fit(data.view());
        Self::with_projection(data, projection, true)
    }

    /// Prepares `data` for search screened in the full space (no projection).
    #[cfg(test)]
    fn unprojected(data: Array2<f32>) -> Self {
        Self::with_projection(data.as_standard_layout().into_owned(), None, true)
    }

    /// `fused`: use the fused kernel where the CPU has it (tests turn it off).
    fn with_projection(data: Array2<f32>, projection: Option<Projection>, fused: bool) -> Self {
        let points = projection.as_ref().map(|p| p.apply(data.view()));
        let view = points.as_ref().map_or(data.view(), |p| p.view());
        let sq_norms: Vec<f32> = view
            .outer_iter()
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let max_sq_norm = sq_norms.iter().copied().fold(0.0, f32::max);
        let panels = fused
            .then(|| {
                let rows = view.as_slice().expect("standard layout");
                Panels::new(rows, &sq_norms, view.ncols())
            })
            .flatten();
        let screen = match panels {
            Some(panels) => Screen::Fused(panels),
            None => Screen::Gemm { points, sq_norms },
        };
        Self {
            data,
            projection,
            screen,
            max_sq_norm,
        }
    }

    /// The same index, screening by GEMM even where the fused kernel could run.
    #[cfg(test)]
    fn without_fused(self) -> Self {
        Self::with_projection(self.data, self.projection, false)
    }

    /// The training embeddings.
    pub fn data(&self) -> ArrayView2<'_, f32> {
        self.data.view()
    }

    /// Dimension of the space candidates are screened in (`dim()` without projection).
    #[cfg(test)]
    fn screening_dim(&self) -> usize {
        self.projection.as_ref().map_or(self.dim(), Projection::dim)
    }

    /// Number of training points.
    pub fn len(&self) -> usize {
        self.data.nrows()
    }

    /// True when there are no training points.
    pub fn is_empty(&self) -> bool {
        self.data.nrows() == 0
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.data.ncols()
    }

    /// The `k` nearest training points of each query (b x d), nearest first.
    ///
    /// Requires `1 <= k <= n` and `queries.ncols() == dim` (checked by the caller).
    pub fn search(&self, queries: ArrayView2<'_, f32>, k: usize) -> NeighbourLists {
        self.search_with(queries, k, false, None, Blocking::default())
    }

    /// The `k` nearest *other* training points of every training point: row i excludes
    /// index i itself (by index, so an exact duplicate of i still counts, as in
    /// scikit-learn's `kneighbors()` without arguments). Requires `k < n`.
    pub fn search_training(&self, k: usize, progress: Option<&ProgressBar>) -> NeighbourLists {
        self.search_with(self.data.view(), k, true, progress, Blocking::default())
    }

    /// The `k` nearest *other* training points of the training points `rows` only:
    /// asks for k + 1 and drops each point itself by id (or, if k + 1 exact duplicates
    /// crowded it out, the last one, which is then also at distance 0).
    pub fn search_training_rows(&self, rows: &[usize], k: usize) -> NeighbourLists {
        let queries = self.data.select(Axis(0), rows);
        let wide = self.search(queries.view(), (k + 1).min(self.len()));
        let mut ids = Vec::with_capacity(rows.len() * k);
        let mut dists = Vec::with_capacity(rows.len() * k);
        for (j, &p) in rows.iter().enumerate() {
            let (row_ids, row_dists) = (wide.ids(j), wide.dists(j));
            let drop = row_ids
                .iter()
                .position(|&id| id as usize == p)
                .unwrap_or(row_ids.len() - 1);
            for (i, (&id, &d)) in row_ids.iter().zip(row_dists).enumerate() {
                if i != drop && ids.len() < (j + 1) * k {
                    ids.push(id);
                    dists.push(d);
                }
            }
        }
        NeighbourLists::new(k, ids, dists)
    }

    /// Screening candidates kept per query: more than k, so that the exact ranking has
    /// room and the screening check almost always passes. A projection's bound is
    /// looser than the f32 expansion's rounding, so it keeps more.
    fn keep(&self, k: usize, available: usize) -> usize {
        let keep = if self.projection.is_some() {
            4 * k + 16
        } else {
            k + k.max(16)
        };
        keep.min(available)
    }

    pub(crate) fn search_with(
        &self,
        queries: ArrayView2<'_, f32>,
        k: usize,
        exclude_self: bool,
        progress: Option<&ProgressBar>,
        blocking: Blocking,
    ) -> NeighbourLists {
        let b = queries.nrows();
        let available = if exclude_self {
            self.len() - 1
        } else {
            self.len()
        };
        let keep = self.keep(k, available);
        let screened = self.projection.as_ref().map(|p| p.apply(queries));
        let screen_q = screened.as_ref().map_or(queries, |s| s.view());
        let all: Vec<usize> = (0..b).collect();
        let self_ids = exclude_self.then_some(&all[..]);
        let mut ranked =
            self.search_blocks(screen_q, queries, self_ids, k, keep, blocking, progress);

        // Rows the screening could not settle: once more with many more candidates
        // (a projection's bound can be loose for a few points), then a full scan.
        let unsettled: Vec<usize> = (0..b).filter(|&i| ranked[i].is_none()).collect();
        if self.projection.is_some() && keep < available && !unsettled.is_empty() {
            let again = self.search_blocks(
                screen_q.select(Axis(0), &unsettled).view(),
                queries.select(Axis(0), &unsettled).view(),
                exclude_self.then_some(&unsettled[..]),
                k,
                (keep * 8).min(available),
                blocking,
                None,
            );
            for (&i, row) in unsettled.iter().zip(again) {
                ranked[i] = row;
            }
        }
        let rows: Vec<Vec<(f64, u32)>> = ranked
            .into_par_iter()
            .enumerate()
            .map(|(i, row)| {
                row.unwrap_or_else(|| {
                    let query = queries.row(i);
                    let query = query.to_slice().expect("standard layout");
                    self.scan_exact(query, k, exclude_self.then_some(i))
                })
            })
            .collect();
        let mut ids = Vec::with_capacity(b * k);
        let mut dists = Vec::with_capacity(b * k);
        for row in rows {
            for (sq, id) in row {
                ids.push(id);
                dists.push(sq.sqrt());
            }
        }
        NeighbourLists::new(k, ids, dists)
    }

    /// [`Self::search_block`] over all rows, in blocks run in parallel; `self_ids[r]` is
    /// the training point row r must not find (training search only).
    #[allow(clippy::too_many_arguments)]
    fn search_blocks(
        &self,
        screen_q: ArrayView2<'_, f32>,
        q: ArrayView2<'_, f32>,
        self_ids: Option<&[usize]>,
        k: usize,
        keep: usize,
        blocking: Blocking,
        progress: Option<&ProgressBar>,
    ) -> Vec<Ranked> {
        let b = q.nrows();
        // A batch smaller than one block per thread is split so every thread works (a
        // batch of 256 would otherwise keep one core busy and leave the other idle).
        let rows_per_block = blocking
            .query_rows
            .min(b.div_ceil(rayon::current_num_threads()))
            .max(MIN_BLOCK_ROWS.min(blocking.query_rows))
            .max(1);
        let starts: Vec<usize> = (0..b).step_by(rows_per_block).collect();
        starts
            .par_iter()
            .flat_map_iter(|&start| {
                let end = (start + rows_per_block).min(b);
                let out = self.search_block(
                    screen_q.slice(s![start..end, ..]),
                    q.slice(s![start..end, ..]),
                    self_ids.map(|ids| &ids[start..end]),
                    k,
                    keep,
                    blocking.data_cols,
                );
                if let Some(bar) = progress {
                    bar.inc((end - start) as u64);
                }
                out
            })
            .collect()
    }

    /// One block of queries: `screen_q` in the screening space, `q` the same queries in
    /// full; `self_ids[r]` is the training point query row r must not find (training
    /// search only).
    fn search_block(
        &self,
        screen_q: ArrayView2<'_, f32>,
        q: ArrayView2<'_, f32>,
        self_ids: Option<&[usize]>,
        k: usize,
        keep: usize,
        data_cols: usize,
    ) -> Vec<Ranked> {
        let rows = q.nrows();
        let mut best: Vec<Shortlist> = (0..rows).map(|_| Shortlist::new(keep)).collect();
        match &self.screen {
            Screen::Fused(panels) => {
                let screen = screen_q.as_standard_layout();
                let rows = screen.as_slice().expect("standard layout");
                panels.scan(rows, &mut best, self_ids);
            }
            Screen::Gemm { points, sq_norms } => {
                let points = points.as_ref().map_or(self.data.view(), |p| p.view());
                screen_gemm(points, sq_norms, screen_q, &mut best, self_ids, data_cols);
            }
        }
        self.rank(best, screen_q, q, k)
    }

    /// Each query's k nearest among its screening candidates, measured exactly; `None`
    /// for a row whose candidates cannot be proven to hold them.
    fn rank(
        &self,
        best: Vec<Shortlist>,
        screen_q: ArrayView2<'_, f32>,
        q: ArrayView2<'_, f32>,
        k: usize,
    ) -> Vec<Ranked> {
        best.into_iter()
            .enumerate()
            .map(|(r, shortlist)| {
                let query = q.row(r);
                let query = query.as_slice().expect("standard layout");
                let screen = screen_q.row(r);
                let (mut items, worst_key, complete) = shortlist.finish();
                items.sort_unstable();
                let (q_sq, slack) = self.screening_slack(screen.as_slice().expect("standard"));
                // Measure candidates in screening order and stop as soon as the next
                // one's lower bound exceeds the k-th distance found: for a tight bound
                // that spares most of the (sequential, f64) exact distances.
                let mut top: Vec<(f64, u32)> = Vec::with_capacity(k + 1);
                let mut settled = complete;
                for (key, id) in items.into_iter().map(Shortlist::unpack) {
                    if top.len() == k && q_sq + f64::from(key) - slack > top[k - 1].0 {
                        settled = true;
                        break;
                    }
                    let row = self.data.row(id as usize);
                    let d = squared_distance(query, row.as_slice().expect("standard layout"));
                    let at = top.partition_point(|&(e, i)| (e, i) < (d, id));
                    if at < k {
                        top.insert(at, (d, id));
                        top.truncate(k);
                    }
                }
                // Points the screening left out have keys >= the largest kept.
                settled = settled
                    || (top.len() == k && q_sq + f64::from(worst_key) - slack > top[k - 1].0);
                settled.then_some(top)
            })
            .collect()
    }

    /// `(|s_q|^2, slack)` for a query's screening point `s_q`: a screening key `key`
    /// (`|s_x|^2 - 2 s_q.s_x` in f32) proves the true squared distance is at least
    /// `|s_q|^2 + key - slack`.
    fn screening_slack(&self, screen_q: &[f32]) -> (f64, f64) {
        let d = screen_q.len() as f64;
        let q_sq: f64 = screen_q.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        // Worst-case rounding of an f32 dot product of length d, of the two norms and of
        // the additions, each below (d + 2) eps (|q|^2 + |x|^2); doubled for margin. A
        // projection's f64-to-f32 rounding of each coordinate adds less than 4 eps of
        // the same, covered by the extra 8.
        let slack =
            2.0 * (2.0 * d + 16.0) * f64::from(f32::EPSILON) * (q_sq + f64::from(self.max_sq_norm));
        (q_sq, slack)
    }

    /// Plain f64 scan over every training point: the fallback when screening is unsafe.
    fn scan_exact(&self, query: &[f32], k: usize, exclude: Option<usize>) -> Vec<(f64, u32)> {
        let all: Vec<u32> = (0..self.len() as u32)
            .filter(|&i| Some(i as usize) != exclude)
            .collect();
        rank_exact(self.data.view(), query, &all, k)
    }
}

/// The screening pass as GEMM tiles, each then scanned against the thresholds:
/// `points` (n x s) with their squared norms, `screen_q` (rows x s).
fn screen_gemm(
    points: ArrayView2<'_, f32>,
    sq_norms: &[f32],
    screen_q: ArrayView2<'_, f32>,
    best: &mut [Shortlist],
    self_ids: Option<&[usize]>,
    data_cols: usize,
) {
    let n = points.nrows();
    let rows = screen_q.nrows();
    let data_cols = data_cols.max(1);
    let mut gram = Array2::<f32>::zeros((rows, data_cols.min(n)));
    for tile_start in (0..n).step_by(data_cols) {
        let tile_end = (tile_start + data_cols).min(n);
        let x = points.slice(s![tile_start..tile_end, ..]);
        let mut g = gram.slice_mut(s![.., ..tile_end - tile_start]);
        // g[r, c] = -2 q_r . x_c
        general_mat_mul(-2.0, &screen_q, &x.t(), 0.0, &mut g);
        let norms = &sq_norms[tile_start..tile_end];
        for (r, shortlist) in best.iter_mut().enumerate() {
            let row = g.row(r);
            let row = row
                .as_slice()
                .expect("rows of a standard-layout slice are contiguous");
            shortlist.offer_tile(row, norms, tile_start, self_ids.map(|s| s[r]));
        }
    }
}

/// Exact squared distances from `query` to the `candidates`, sorted by (distance, id),
/// truncated to `k`. Shared by the exact search and the HNSW re-ranking.
pub(crate) fn rank_exact(
    data: ArrayView2<'_, f32>,
    query: &[f32],
    candidates: &[u32],
    k: usize,
) -> Vec<(f64, u32)> {
    let mut scored: Vec<(f64, u32)> = candidates
        .iter()
        .map(|&id| (squared_distance(query, row(data, id)), id))
        .collect();
    let by_distance_then_id =
        |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if scored.len() > k {
        scored.select_nth_unstable_by(k - 1, by_distance_then_id);
        scored.truncate(k);
    }
    scored.sort_unstable_by(by_distance_then_id);
    scored
}

/// Row `id` of a standard-layout matrix, as a slice.
pub(crate) fn row(data: ArrayView2<'_, f32>, id: u32) -> &[f32] {
    data.index_axis_move(Axis(0), id as usize)
        .to_slice()
        .expect("standard layout")
}

/// `sum (a_i - b_i)^2` in f64, left to right: the same operations as scikit-learn's
/// KD-tree on float64 data, so identical inputs give identical distances.
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let t = f64::from(x) - f64::from(y);
            t * t
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random floats (splitmix64), no external crate needed.
    fn data(n: usize, d: usize, seed: u64) -> Array2<f32> {
        let mut s = seed;
        Array2::from_shape_fn((n, d), |_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
    }

    /// The obvious O(n^2) answer: all distances, sorted by (distance, id).
    fn naive(x: &Array2<f32>, q: &Array2<f32>, k: usize, exclude_self: bool) -> NeighbourLists {
        let mut ids = vec![];
        let mut dists = vec![];
        for (i, qr) in q.outer_iter().enumerate() {
            let mut all: Vec<(f64, u32)> = x
                .outer_iter()
                .enumerate()
                .filter(|(j, _)| !(exclude_self && *j == i))
                .map(|(j, xr)| {
                    let sq: f64 = qr
                        .iter()
                        .zip(xr.iter())
                        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                        .sum();
                    (sq, j as u32)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (sq, j) in all.into_iter().take(k) {
                ids.push(j);
                dists.push(sq.sqrt());
            }
        }
        NeighbourLists::new(k, ids, dists)
    }

    #[test]
    fn matches_naive_with_odd_blocks() {
        let mut x = data(301, 7, 1);
        // exact duplicates: rows 5 == 6 == 7, and row 100 == row 300
        for j in 0..7 {
            x[[6, j]] = x[[5, j]];
            x[[7, j]] = x[[5, j]];
            x[[300, j]] = x[[100, j]];
        }
        let q = data(53, 7, 2);
        let fused = ExactIndex::new(x.clone());
        let gemm = fused.clone().without_fused();
        for (index, blocking) in [&fused, &gemm].into_iter().flat_map(|index| {
            [
                Blocking {
                    query_rows: 1,
                    data_cols: 1,
                },
                Blocking {
                    query_rows: 7,
                    data_cols: 13,
                },
                Blocking {
                    query_rows: 128,
                    data_cols: 2048,
                },
            ]
            .map(|blocking| (index, blocking))
        }) {
            for k in [1, 5, 40] {
                let got = index.search_with(q.view(), k, false, None, blocking);
                assert_eq!(got, naive(&x, &q, k, false), "queries, k={k} {blocking:?}");
                let got = index.search_with(x.view(), k, true, None, blocking);
                assert_eq!(got, naive(&x, &x, k, true), "training, k={k} {blocking:?}");
            }
        }
        // The duplicate of a point is its nearest neighbour at distance 0.
        let t = fused.search_training(3, None);
        assert_eq!(&t.ids(5)[..2], &[6, 7]);
        assert_eq!(t.dists(300)[0], 0.0);
        assert_eq!(t.ids(300)[0], 100);
    }

    /// Points near 10 directions in 32 dimensions (variance in few dimensions, like a
    /// classifier's embeddings), with every 150th point scattered everywhere.
    fn clustered(n: usize, seed: u64) -> Array2<f32> {
        let noise = data(n, 32, seed);
        Array2::from_shape_fn((n, 32), |(i, j)| {
            let centre = if j == i % 10 { 8.0 } else { 0.0 };
            let scale = if i % 150 == 0 { 2.0 } else { 0.1 };
            centre + scale * noise[[i, j]]
        })
    }

    #[test]
    fn projected_screening_matches_naive() {
        let x = clustered(3000, 5);
        let index = ExactIndex::new(x.clone());
        assert!(
            index.screening_dim() < index.dim(),
            "the clustered data should be screened in a smaller space"
        );
        // Queries near the clusters, far from everything, and scattered.
        let mut q = clustered(60, 6);
        for j in 0..32 {
            q[[0, j]] = 20.0;
            q[[1, j]] = if j % 2 == 0 { -9.0 } else { 9.0 };
        }
        let gemm = index.clone().without_fused();
        for k in [1, 5, 20, 100] {
            let truth = naive(&x, &q, k, false);
            assert_eq!(index.search(q.view(), k), truth, "k={k}");
            assert_eq!(gemm.search(q.view(), k), truth, "GEMM route, k={k}");
        }
        let sample: Vec<usize> = (0..3000).step_by(7).collect();
        let training = index.search_training(20, None);
        let truth = naive(&x, &x, 20, true);
        for (j, &i) in sample.iter().enumerate() {
            assert_eq!(training.ids(i), truth.ids(i), "training row {i} ({j})");
            assert_eq!(training.dists(i), truth.dists(i));
        }
        // The same answers as screening in the full space.
        let full = ExactIndex::unprojected(x.clone());
        assert_eq!(full.screening_dim(), full.dim());
        assert_eq!(full.search(q.view(), 20), index.search(q.view(), 20));
    }

    #[test]
    fn all_points_when_k_is_n() {
        let x = data(10, 3, 3);
        let index = ExactIndex::new(x.clone());
        assert_eq!(index.search(x.view(), 10), naive(&x, &x, 10, false));
        assert_eq!(index.search_training(9, None), naive(&x, &x, 9, true));
    }

    #[test]
    fn dense_ties_fall_back_to_the_scan() {
        // 200 points all within 1e-4 of each other, far from the origin: the f32
        // expansion cannot tell them apart, so screening must detect it and rescan.
        let jitter = data(200, 16, 4);
        let x = jitter.mapv(|v| 100.0 + v * 1e-4);
        let index = ExactIndex::new(x.clone());
        let q = x.slice(s![0..9, ..]).to_owned();
        assert_eq!(index.search(q.view(), 10), naive(&x, &q, 10, false));
        assert_eq!(index.search_training(10, None), naive(&x, &x, 10, true));
    }
}
