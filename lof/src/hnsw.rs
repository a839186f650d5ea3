//! The approximate neighbour graph: built by hnsw_rs, kept and searched in compact form.
//!
//! hnsw_rs builds the graph (`parallel_insert`, its neighbour-selection heuristic). The
//! finished graph is then exported, layer by layer, as plain neighbour lists of training
//! ids ([`Graph`]), and that is what is searched, stored in the artifact and loaded.
//! Why not keep the hnsw_rs object: it can only be persisted as two files in a directory
//! and reloaded through `HnswIo`, which relinks every neighbour through a reference-counted
//! pointer; for 60,000 x 64 that reload alone took 0.5 to 0.9 s on this machine, against a
//! budget of well under a second for the whole load. Its graph type has no public
//! constructor from neighbour lists, so the lists cannot be turned back into an hnsw_rs
//! object either. Plain arrays load in milliseconds, and the search below is the standard
//! HNSW one (greedy descent to convergence on the upper layers, beam search of width ef
//! on layer 0; Malkov & Yashunin 2018, algorithms 2 and 5), also started from the seeds
//! nearest the query (`Seeds`), and run for a batch's queries a few at a time in turns
//! so that their cache misses overlap ([`Graph::search_batch`]).
//!
//! Only a query's k neighbours come from the graph: the search returns its ef best
//! candidates, whose distances are recomputed exactly from the stored embeddings and
//! re-sorted, so a query whose true neighbours are among the candidates gets exactly the
//! exact-mode score. Recall is the only difference, and it is measured after every build.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use hnsw_rs::prelude::{DistL2, Hnsw};
use indicatif::ProgressBar;
use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::LofError;
use crate::exact::{rank_exact, row};
use crate::neighbours::NeighbourLists;

/// hnsw_rs caps the number of layers at 16; asking for the cap costs nothing.
const MAX_LAYER: usize = 16;

/// Graph construction and default search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// M: links per node on the upper layers (2 M on layer 0).
    pub max_nb_connection: usize,
    /// Candidate list width while inserting: higher builds slower and finds better links.
    pub ef_construction: usize,
    /// Default candidate list width when searching (at least k is always used).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        // The served defaults (the server's configuration reads them from here).
        // M = 16 / ef_c = 200: hnswlib's usual values; M = 32 measured no better here.
        // ef 256: of the widths measured on the served model, the one whose verdicts
        // agree best with exact search (README; BENCHMARKS.md).
        Self {
            max_nb_connection: 16,
            ef_construction: 200,
            ef_search: 256,
        }
    }
}

impl HnswParams {
    /// Rejects values hnsw_rs would choke on (it exits the process for M > 256).
    pub fn validate(&self) -> Result<(), LofError> {
        if !(2..=255).contains(&self.max_nb_connection) {
            return Err(LofError::InvalidInput(format!(
                "HNSW max_nb_connection must lie in [2, 255], got {}",
                self.max_nb_connection
            )));
        }
        if self.ef_construction == 0 || self.ef_search == 0 {
            return Err(LofError::InvalidInput(
                "HNSW ef_construction and ef_search must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// recall@k of a graph search against the exact neighbours, measured on training points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecallReport {
    /// Training points queried.
    pub sample: usize,
    /// Neighbours compared per point.
    pub k: usize,
    /// Search width used.
    pub ef: usize,
    /// Mean fraction of the exact k neighbours (self excluded) that the search returned.
    pub recall: f64,
    /// Fraction of sampled points that found themselves: below 1 reveals points the
    /// search cannot reach (see hnswlib-rs issue 32 about parallel insertion).
    pub self_found: f64,
}

/// Up to `sample` training ids spread evenly over `0..n` (deterministic, no RNG).
pub(crate) fn sample_points(n: usize, sample: usize) -> Vec<usize> {
    let sample = sample.min(n);
    (0..sample).map(|s| s * n / sample).collect()
}

/// recall@k of `search` on training points `points` against their exact neighbours
/// `truth` (row j of `truth` belongs to `points[j]`, self excluded). `search(query, count,
/// ef)` returns candidate ids; they are ranked exactly, the first k + 1 kept, and the
/// point itself dropped by id (or the farthest one if it was not found).
pub(crate) fn measure_recall(
    data: ArrayView2<'_, f32>,
    points: &[usize],
    truth: &NeighbourLists,
    ef: usize,
    search: impl Fn(&[f32], usize, usize) -> Vec<u32> + Sync,
) -> RecallReport {
    let k = truth.k();
    let found_self = AtomicUsize::new(0);
    let hits: usize = points
        .par_iter()
        .enumerate()
        .map(|(j, &p)| {
            let q = data.row(p);
            let q = q.to_slice().expect("standard layout");
            let ranked = rank_exact(data, q, &search(q, k + 1, ef), k + 1);
            let mut ids: Vec<u32> = ranked.into_iter().map(|(_, id)| id).collect();
            match ids.iter().position(|&id| id as usize == p) {
                Some(at) => {
                    found_self.fetch_add(1, AtomicOrdering::Relaxed);
                    ids.remove(at);
                }
                None => ids.truncate(k),
            }
            let exact = truth.ids(j);
            ids.iter().filter(|id| exact.contains(id)).count()
        })
        .sum();
    let sample = points.len();
    RecallReport {
        sample,
        k,
        ef,
        recall: hits as f64 / (sample * k).max(1) as f64,
        self_found: found_self.into_inner() as f64 / sample.max(1) as f64,
    }
}

/// A graph under construction in hnsw_rs.
pub(crate) struct Builder {
    /// The hnsw_rs index; `'static` because it copies the inserted vectors.
    hnsw: Hnsw<'static, f32, DistL2>,
}

impl Builder {
    /// Builds the graph with `parallel_insert`, in chunks so a progress bar can follow.
    pub(crate) fn build(
        data: ArrayView2<'_, f32>,
        params: &HnswParams,
        progress: Option<&ProgressBar>,
    ) -> Self {
        let hnsw = Hnsw::<f32, DistL2>::new(
            params.max_nb_connection,
            data.nrows(),
            MAX_LAYER,
            params.ef_construction,
            DistL2 {},
        );
        let rows: Vec<(&[f32], usize)> = data
            .outer_iter()
            .enumerate()
            .map(|(i, r)| (r.to_slice().expect("standard layout"), i))
            .collect();
        // Big chunks keep both threads busy; each chunk is one parallel insert.
        for chunk in rows.chunks(4096) {
            hnsw.parallel_insert_slice(&chunk.to_vec());
            if let Some(bar) = progress {
                bar.inc(chunk.len() as u64);
            }
        }
        Self { hnsw }
    }

    /// hnsw_rs's own search, for comparison with [`Graph::search`].
    pub(crate) fn search(&self, query: &[f32], count: usize, ef: usize) -> Vec<u32> {
        self.hnsw
            .search(query, count, ef.max(count))
            .into_iter()
            .map(|n| n.d_id as u32)
            .collect()
    }

    /// Copies the finished graph out of hnsw_rs as neighbour lists per layer.
    pub(crate) fn export(&self) -> Result<Graph, LofError> {
        let indexation = self.hnsw.get_point_indexation();
        let n = self.hnsw.get_nb_point();
        let top = usize::from(indexation.get_max_level_observed());
        // Per layer: (id, links), in hnsw_rs's storage order.
        let mut per_layer: Vec<Vec<(u32, Vec<u32>)>> = vec![Vec::new(); top + 1];
        for point in indexation {
            let id = u32::try_from(point.get_origin_id())
                .map_err(|_| LofError::Graph("point id beyond u32".into()))?;
            let level = usize::from(point.get_point_id().0);
            for (l, links) in point
                .get_neighborhood_id()
                .iter()
                .take(level + 1)
                .enumerate()
            {
                per_layer[l].push((id, links.iter().map(|nb| nb.d_id as u32).collect()));
            }
        }
        let mut layers = Vec::with_capacity(top + 1);
        for (l, mut points) in per_layer.into_iter().enumerate() {
            points.sort_unstable_by_key(|p| p.0);
            let mut members: Vec<u32> = points.iter().map(|p| p.0).collect();
            if l == 0 {
                if members.iter().enumerate().any(|(i, &id)| i as u32 != id) || members.len() != n {
                    return Err(LofError::Graph("layer 0 does not hold ids 0..n".into()));
                }
                members.clear();
            }
            let mut offsets = Vec::with_capacity(points.len() + 1);
            let mut links = Vec::new();
            offsets.push(0);
            for (_, l) in &points {
                links.extend_from_slice(l);
                offsets.push(
                    u32::try_from(links.len())
                        .map_err(|_| LofError::Graph("more than 2^32 links".into()))?,
                );
            }
            layers.push(Layer {
                members,
                offsets,
                links,
            });
        }
        Graph::from_layers(n, layers)
    }
}

/// One layer of the graph: each member's links, nearest first as hnsw_rs kept them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    /// Ids of the points on this layer, ascending. Empty on layer 0, which holds every
    /// point with its id as row.
    pub members: Vec<u32>,
    /// `links[offsets[r]..offsets[r + 1]]` are the neighbours of row r.
    pub offsets: Vec<u32>,
    /// Neighbour ids.
    pub links: Vec<u32>,
}

/// The HNSW graph over training ids `0..n`, as plain neighbour lists per layer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Graph {
    /// Number of points (all on layer 0).
    n: usize,
    /// Layer 0 first; the last layer holds the entry points.
    layers: Vec<Layer>,
    /// Far-apart training points where the layer-0 search also starts (see [`Seeds`]).
    seeds: Seeds,
}

/// Far-apart training points where every layer-0 search also starts, besides the greedy
/// descent's point. The embeddings of a classifier form well-separated clusters, and
/// a few training points sit in small islands between them. An out-of-distribution
/// query whose nearest training points lie in such an island was led by the descent
/// into a cluster that layer-0 links do not leave towards the island: at 1M points, 23
/// of 1,000 Fashion-MNIST queries got the opposite verdict of exact search for that
/// reason, 10 with seeds. Seeds spread over the upper layers and over the sparsest
/// points; a search starts from the [`SEED_STARTS`] nearest.
#[derive(Debug, Clone, Default, PartialEq)]
struct Seeds {
    ids: Vec<u32>,
    /// Their embeddings, contiguous (a few kilobytes, cached across queries).
    rows: Vec<f32>,
}

impl Graph {
    /// Rebuilds a graph from stored layers, checking everything a search relies on.
    pub(crate) fn from_layers(n: usize, layers: Vec<Layer>) -> Result<Self, LofError> {
        let graph = Self {
            n,
            layers,
            seeds: Seeds::default(),
        };
        graph.validate()?;
        Ok(graph)
    }

    /// Picks the search's seeds (see [`Seeds`]) among the training points `data`, whose
    /// k-distances are `kdist`: [`SPREAD_SEEDS`] far apart from the highest layer with
    /// enough members to choose from, and [`SPARSE_SEEDS`] far apart from the sparsest
    /// [`SPARSE_SHARE`] of the points (the largest k-distances). Milliseconds at 1M.
    pub(crate) fn with_seeds(mut self, data: ArrayView2<'_, f32>, kdist: &[f64]) -> Self {
        let all: Vec<u32>;
        let pool: &[u32] = match self.layers[1..]
            .iter()
            .rev()
            .find(|layer| layer.members.len() >= 16 * SPREAD_SEEDS)
            .or(self.layers.get(1))
        {
            Some(layer) => &layer.members,
            None => {
                all = (0..self.n as u32).collect();
                &all
            }
        };
        let mut ids = farthest_points(data, pool, SPREAD_SEEDS);
        let sparse = crate::score::sparsest(kdist, SPARSE_SHARE);
        ids.extend(farthest_points(data, &sparse, SPARSE_SEEDS));
        ids.sort_unstable();
        ids.dedup();
        let rows = ids
            .iter()
            .flat_map(|&id| row(data, id).iter().copied())
            .collect();
        self.seeds = Seeds { ids, rows };
        self
    }

    /// The layers, layer 0 first.
    pub(crate) fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Number of points.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.n
    }

    /// Every id in range, offsets consistent, members sorted and unique, the top layer
    /// non-empty: after this, searching cannot index out of bounds.
    fn validate(&self) -> Result<(), LofError> {
        let bad = |what: String| Err(LofError::Graph(what));
        if self.layers.is_empty() || self.n == 0 || u32::try_from(self.n).is_err() {
            return bad(format!(
                "{} layers over {} points",
                self.layers.len(),
                self.n
            ));
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let rows = if l == 0 { self.n } else { layer.members.len() };
            if l == 0 && !layer.members.is_empty() {
                return bad("layer 0 lists members".into());
            }
            if l > 0 && rows == 0 {
                return bad(format!("layer {l} is empty"));
            }
            if !layer.members.windows(2).all(|w| w[0] < w[1])
                || layer.members.iter().any(|&m| m as usize >= self.n)
            {
                return bad(format!(
                    "layer {l}: members not sorted, unique and in range"
                ));
            }
            if layer.offsets.len() != rows + 1
                || layer.offsets[0] != 0
                || !layer.offsets.windows(2).all(|w| w[0] <= w[1])
                || layer.offsets[rows] as usize != layer.links.len()
            {
                return bad(format!("layer {l}: inconsistent offsets"));
            }
            // hnsw_rs leaves a few upper-layer links to points of a lower level (0.5 % on
            // layer 1 in the tests); they have no links of their own on that layer, so a
            // search simply stops there, as hnsw_rs's does. Only the range matters.
            if layer.links.iter().any(|&id| id as usize >= self.n) {
                return bad(format!("layer {l}: link to a point beyond the index"));
            }
        }
        Ok(())
    }

    /// Neighbours of `id` on layer `l` (empty if `id` is not on that layer).
    fn links(&self, l: usize, id: u32) -> &[u32] {
        let layer = &self.layers[l];
        let row = if l == 0 {
            Some(id as usize)
        } else {
            layer.members.binary_search(&id).ok()
        };
        match row {
            Some(r) => &layer.links[layer.offsets[r] as usize..layer.offsets[r + 1] as usize],
            None => &[],
        }
    }

    /// The (up to) `max(ef, count)` best candidates for `query`, in no particular order.
    pub(crate) fn search(
        &self,
        data: ArrayView2<'_, f32>,
        query: &[f32],
        count: usize,
        ef: usize,
    ) -> Vec<u32> {
        let mut found = self.search_group(data, &[query], count, ef);
        found.pop().expect("one query, one answer")
    }

    /// [`Graph::search`] for training point `id`'s own row, started at the point itself
    /// as well: a point of a small island, which links from the clusters may not lead
    /// to, then still finds its island. A build that takes the training neighbours from
    /// the graph needs them right for the sparsest points above all, since the
    /// threshold comes from those points' scores.
    pub(crate) fn search_training(
        &self,
        data: ArrayView2<'_, f32>,
        id: u32,
        count: usize,
        ef: usize,
    ) -> Vec<u32> {
        let query = row(data, id);
        let mut starts = self.starts(data, query);
        if starts.iter().all(|s| s.1 != id) {
            starts.push(Scored(0.0, id));
        }
        let mut found = self.run_beams(data, &[query], vec![starts], count, ef);
        found.pop().expect("one query, one answer")
    }

    /// [`Graph::search`] for a few queries at once, with the same answers. Their layer-0
    /// searches advance in turns, each turn one memory round trip: while one query
    /// waits for the rows or links it asked for, the others compute, so the cache
    /// misses of a group overlap instead of following one another.
    fn search_group(
        &self,
        data: ArrayView2<'_, f32>,
        queries: &[&[f32]],
        count: usize,
        ef: usize,
    ) -> Vec<Vec<u32>> {
        let starts = queries.iter().map(|q| self.starts(data, q)).collect();
        self.run_beams(data, queries, starts, count, ef)
    }

    /// The layer-0 searches of `queries`, each from its `starts`, in turns.
    fn run_beams(
        &self,
        data: ArrayView2<'_, f32>,
        queries: &[&[f32]],
        starts: Vec<Vec<Scored>>,
        count: usize,
        ef: usize,
    ) -> Vec<Vec<u32>> {
        let ef = ef.max(count).max(1);
        BEAMS.with(|beams| {
            let mut beams = beams.borrow_mut();
            if beams.len() < queries.len() {
                beams.resize_with(queries.len(), Beam::default);
            }
            let beams = &mut beams[..queries.len()];
            for (beam, starts) in beams.iter_mut().zip(&starts) {
                beam.start(starts, ef);
            }
            let mut active = true;
            while active {
                active = false;
                for (beam, query) in beams.iter_mut().zip(queries) {
                    active |= beam.step(self, data, query, ef);
                }
            }
            beams
                .iter_mut()
                .map(|beam| beam.best.drain().map(|s| s.1).collect())
                .collect()
        })
    }

    /// Where a query's layer-0 search starts: the end of the greedy descent through
    /// the upper layers, and the nearest seeds.
    fn starts(&self, data: ArrayView2<'_, f32>, query: &[f32]) -> Vec<Scored> {
        let dist = |id: u32| squared_l2(query, row(data, id));
        // Start from the best of the top layer's points (usually one or two).
        let top = self.layers.len() - 1;
        let starts: &[u32] = if top == 0 {
            &[0]
        } else {
            &self.layers[top].members
        };
        let (mut entry, mut entry_dist) = starts
            .iter()
            .map(|&id| (id, dist(id)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("validated: the top layer is not empty");
        // Greedy descent, to convergence on each upper layer.
        for l in (1..=top).rev() {
            loop {
                let mut moved = false;
                // As on layer 0: all the rows' cache misses at once.
                let links = self.links(l, entry);
                for &nb in links {
                    prefetch(row(data, nb));
                }
                for &nb in links {
                    let d = dist(nb);
                    if d < entry_dist {
                        (entry, entry_dist) = (nb, d);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        let mut starts = vec![Scored(entry_dist, entry)];
        if !self.seeds.ids.is_empty() {
            let mut near: Vec<Scored> = self
                .seeds
                .ids
                .iter()
                .zip(self.seeds.rows.chunks_exact(query.len()))
                .map(|(&id, row)| Scored(squared_l2(query, row), id))
                .collect();
            let m = SEED_STARTS.min(near.len());
            near.select_nth_unstable(m - 1);
            starts.extend(near[..m].iter().filter(|s| s.1 != entry));
        }
        starts
    }

    /// The k neighbours of each query as found by the graph, with exact distances,
    /// sorted by (distance, id). A row for which the graph reached fewer than k points
    /// is `None`; the caller falls back to exact search for it.
    pub(crate) fn search_batch(
        &self,
        data: ArrayView2<'_, f32>,
        queries: ArrayView2<'_, f32>,
        k: usize,
        ef: usize,
    ) -> Vec<Found> {
        let groups: Vec<Vec<Found>> = (0..queries.nrows().div_ceil(GROUP))
            .into_par_iter()
            .map(|g| {
                let rows = g * GROUP..((g + 1) * GROUP).min(queries.nrows());
                let group: Vec<&[f32]> = rows.map(|i| row(queries, i as u32)).collect();
                let found = self.search_group(data, &group, k, ef);
                group
                    .iter()
                    .zip(found)
                    .map(|(q, ids)| (ids.len() >= k).then(|| rank_exact(data, q, &ids, k)))
                    .collect()
            })
            .collect();
        groups.into_iter().flatten().collect()
    }
}

/// Seeds spread over the graph's upper layers.
const SPREAD_SEEDS: usize = 64;
/// Seeds in the sparse regions, where links from the clusters seldom lead.
const SPARSE_SEEDS: usize = 64;
/// Share of the training points, the sparsest, that sparse seeds come from.
const SPARSE_SHARE: f64 = 0.01;
/// How many of the seeds nearest a query it starts from.
const SEED_STARTS: usize = 2;

/// Up to `want` points of `pool` (not empty), each the farthest from those before it,
/// starting from the first: a deterministic spread over the pool.
fn farthest_points(data: ArrayView2<'_, f32>, pool: &[u32], want: usize) -> Vec<u32> {
    let mut ids = vec![pool[0]];
    let mut nearest = vec![f32::INFINITY; pool.len()];
    while ids.len() < want.min(pool.len()) {
        let last = row(data, *ids.last().expect("not empty"));
        let (mut far, mut far_d) = (0, -1.0f32);
        for (i, &id) in pool.iter().enumerate() {
            nearest[i] = nearest[i].min(squared_l2(last, row(data, id)));
            if nearest[i] > far_d {
                (far, far_d) = (i, nearest[i]);
            }
        }
        ids.push(pool[far]);
    }
    ids
}

/// Hints the CPU to load `items` into cache.
#[inline]
fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = items.as_ptr().cast::<u8>();
        for at in (0..std::mem::size_of_val(items)).step_by(64) {
            // SAFETY: SSE is part of x86_64; the address lies within `items`, and a
            // prefetch never faults anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    start.add(at).cast(),
                )
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}

/// Squared Euclidean distance in f32 for graph navigation; eight partial sums so the
/// compiler can vectorise it (the exact re-ranking uses f64).
#[inline(always)]
fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            let t = x[i] - y[i];
            acc[i] += t * t;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A (distance, id) pair ordered by distance, then id.
#[derive(Debug, Clone, Copy)]
struct Scored(f32, u32);

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// A query's k neighbours with exact squared distances, or `None` (see
/// [`Graph::search_batch`]).
type Found = Option<Vec<(f64, u32)>>;

/// Queries whose layer-0 searches [`Graph::search_batch`] interleaves.
const GROUP: usize = 8;

thread_local! {
    /// Per-thread search states, reused across searches so none allocates.
    static BEAMS: RefCell<Vec<Beam>> = const { RefCell::new(Vec::new()) };
}

/// One query's layer-0 beam search of width ef (Malkov & Yashunin, algorithm 2), cut
/// into steps that each end by asking for memory the next step reads.
#[derive(Default)]
struct Beam {
    visited: Visited,
    /// Found points to expand, nearest first.
    candidates: BinaryHeap<Reverse<Scored>>,
    /// The ef nearest found so far, farthest on top.
    best: BinaryHeap<Scored>,
    /// Neighbours whose rows were asked for: the next step computes their distances.
    fresh: Vec<u32>,
    /// The candidate whose links were asked for: the next step reads them.
    expanding: Option<u32>,
    done: bool,
}

impl Beam {
    fn start(&mut self, starts: &[Scored], ef: usize) {
        self.visited.reset();
        self.candidates.clear();
        self.best.clear();
        self.fresh.clear();
        for &s in starts {
            self.visited.insert(s.1);
            self.candidates.push(Reverse(s));
            self.best.push(s);
        }
        while self.best.len() > ef {
            self.best.pop();
        }
        self.expanding = None;
        self.done = false;
    }

    /// Advances the search by one step; false once it has finished.
    fn step(&mut self, graph: &Graph, data: ArrayView2<'_, f32>, query: &[f32], ef: usize) -> bool {
        if self.done {
            return false;
        }
        if let Some(id) = self.expanding.take() {
            // The links asked for: ask for every unvisited neighbour's row.
            for &nb in graph.links(0, id) {
                if self.visited.insert(nb) {
                    prefetch(row(data, nb));
                    self.fresh.push(nb);
                }
            }
            return true;
        }
        // The rows asked for: their distances.
        for &nb in &self.fresh {
            let dn = squared_l2(query, row(data, nb));
            let worst = self.best.peek().map_or(f32::INFINITY, |w| w.0);
            if self.best.len() < ef || dn < worst {
                // A candidate may be expanded later: fetch where its links are.
                let offsets = &graph.layers[0].offsets;
                prefetch(&offsets[nb as usize..nb as usize + 2]);
                self.candidates.push(Reverse(Scored(dn, nb)));
                self.best.push(Scored(dn, nb));
                if self.best.len() > ef {
                    self.best.pop();
                }
            }
        }
        self.fresh.clear();
        // The nearest candidate: ask for its links, unless it is farther than all ef best.
        let worst = self.best.peek().map_or(f32::INFINITY, |w| w.0);
        match self.candidates.pop() {
            Some(Reverse(Scored(d, id))) if !(d > worst && self.best.len() >= ef) => {
                prefetch(graph.links(0, id));
                self.expanding = Some(id);
                true
            }
            _ => {
                self.done = true;
                false
            }
        }
    }
}

/// The ids a search has visited: an open-addressing hash set of 16 KiB, which stays in
/// cache (a search visits a few hundred points). A mark per training point instead
/// made most checks a cache miss at 1M points (about 5 % of the search time).
struct Visited {
    /// `EMPTY` or an id; the length is a power of two.
    slots: Vec<u32>,
    /// Ids held.
    len: usize,
}

const EMPTY: u32 = u32::MAX;
/// Slots a search starts with: 16 KiB.
const VISITED_SLOTS: usize = 4096;

impl Default for Visited {
    fn default() -> Self {
        Self {
            slots: vec![EMPTY; VISITED_SLOTS],
            len: 0,
        }
    }
}

impl Visited {
    fn reset(&mut self) {
        self.slots.fill(EMPTY);
        self.len = 0;
    }

    /// Marks `id` (below `u32::MAX`); returns whether it was new.
    #[inline]
    fn insert(&mut self, id: u32) -> bool {
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        // Fibonacci hashing (the product's top bits): neighbouring ids land far apart.
        let shift = 32 - self.slots.len().trailing_zeros();
        let mut at = (id.wrapping_mul(0x9E37_79B9) >> shift) as usize;
        loop {
            match self.slots[at] {
                EMPTY => {
                    self.slots[at] = id;
                    self.len += 1;
                    return true;
                }
                held if held == id => return false,
                _ => at = (at + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let held: Vec<u32> = self.slots.iter().copied().filter(|&s| s != EMPTY).collect();
        self.slots = vec![EMPTY; 2 * self.slots.len()];
        self.len = 0;
        for id in held {
            self.insert(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squared_l2_matches_plain_sum() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| (i * i) as f32 * 0.1).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((squared_l2(&a, &b) - plain).abs() <= 1e-4 * plain);
    }

    #[test]
    fn visited_clears_between_searches() {
        let mut v = Visited::default();
        v.reset();
        assert!(v.insert(2));
        assert!(!v.insert(2));
        v.reset();
        assert!(v.insert(2));
    }

    #[test]
    fn visited_grows_and_keeps_every_id() {
        let mut v = Visited::default();
        let ids: Vec<u32> = (0..3 * VISITED_SLOTS as u32).map(|i| i * 7919).collect();
        for &id in &ids {
            assert!(v.insert(id));
        }
        assert!(v.slots.len() > VISITED_SLOTS);
        for &id in &ids {
            assert!(!v.insert(id));
        }
        assert!(v.insert(1));
    }

    /// 200 points on a line, chained, then 5 points far away that link out to the line
    /// but that nothing links to: (data, graph, first island id).
    fn line_and_island() -> (ndarray::Array2<f32>, Graph, u32) {
        let (line, island) = (200u32, 5u32);
        let n = (line + island) as usize;
        let mut data = ndarray::Array2::<f32>::zeros((n, 8));
        let mut offsets = vec![0u32];
        let mut links = Vec::new();
        for i in 0..n as u32 {
            if i < line {
                data[[i as usize, 0]] = i as f32 * 0.1;
                links.extend([i.saturating_sub(1), (i + 1).min(line - 1)]);
            } else {
                data[[i as usize, 0]] = 100.0 + (i - line) as f32 * 0.1;
                links.extend((line..line + island).filter(|&j| j != i).chain([line - 1]));
            }
            offsets.push(links.len() as u32);
        }
        let layer = Layer {
            members: vec![],
            offsets,
            links,
        };
        (data, Graph::from_layers(n, vec![layer]).unwrap(), line)
    }

    #[test]
    fn search_reaches_an_island_no_link_leads_to_from_a_seed() {
        // Only a seed can lead a query's search to the island.
        let (data, plain, line) = line_and_island();
        let n = plain.len();
        let mut kdist = vec![0.2; n];
        kdist[n - 1] = 50.0;
        let query = [100.05f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];

        let found = plain.search(data.view(), &query, 3, 3);
        assert!(
            found.iter().all(|&id| id < line),
            "reached without seeds: {found:?}"
        );

        let seeded = plain.with_seeds(data.view(), &kdist);
        assert!(
            seeded.seeds.ids.contains(&(n as u32 - 1)),
            "the sparsest point is a seed"
        );
        let mut found = seeded.search(data.view(), &query, 3, 3);
        found.sort_unstable();
        assert_eq!(found, vec![line, line + 1, line + 2]);
    }

    #[test]
    fn a_training_search_finds_its_own_island() {
        // Without seeds, an island point searched as a query ends on the line; as a
        // training point its search also starts at itself.
        let (data, graph, line) = line_and_island();
        let me = line + 2;
        let as_query = graph.search(data.view(), row(data.view(), me), 3, 3);
        assert!(as_query.iter().all(|&id| id < line), "{as_query:?}");
        let mut found = graph.search_training(data.view(), me, 3, 3);
        found.sort_unstable();
        assert_eq!(found, vec![line + 1, line + 2, line + 3]);
    }

    #[test]
    fn interleaved_searches_answer_as_one_at_a_time() {
        let (n, dim) = (3000, 12);
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let data = ndarray::Array2::from_shape_fn((n, dim), |_| next());
        let queries = ndarray::Array2::from_shape_fn((GROUP + 3, dim), |_| next() * 1.5);
        let graph = Builder::build(data.view(), &HnswParams::default(), None)
            .export()
            .unwrap()
            .with_seeds(data.view(), &vec![1.0; n]);
        let group: Vec<&[f32]> = (0..queries.nrows())
            .map(|i| row(queries.view(), i as u32))
            .collect();
        for ef in [5, 20, 64] {
            let together = graph.search_group(data.view(), &group, 5, ef);
            for (q, found) in group.iter().zip(together) {
                let mut alone = graph.search(data.view(), q, 5, ef);
                let mut found = found;
                alone.sort_unstable();
                found.sort_unstable();
                assert_eq!(found, alone);
                assert_eq!(found.len(), ef.max(5));
            }
        }
    }

    #[test]
    fn validation_rejects_bad_layers() {
        let ok = Layer {
            members: vec![],
            offsets: vec![0, 1, 2],
            links: vec![1, 0],
        };
        assert!(Graph::from_layers(2, vec![ok.clone()]).is_ok());
        let out_of_range = Layer {
            links: vec![1, 2],
            ..ok.clone()
        };
        assert!(Graph::from_layers(2, vec![out_of_range]).is_err());
        let bad_offsets = Layer {
            offsets: vec![0, 3, 2],
            ..ok.clone()
        };
        assert!(Graph::from_layers(2, vec![bad_offsets]).is_err());
        let upper = Layer {
            members: vec![1],
            offsets: vec![0, 1],
            links: vec![0],
        };
        assert!(Graph::from_layers(2, vec![ok.clone(), upper.clone()]).is_ok());
        let upper_out_of_range = Layer {
            links: vec![5],
            ..upper.clone()
        };
        assert!(Graph::from_layers(2, vec![ok.clone(), upper_out_of_range]).is_err());
        let upper_unsorted = Layer {
            members: vec![1, 0],
            offsets: vec![0, 0, 0],
            links: vec![],
        };
        assert!(Graph::from_layers(2, vec![ok.clone(), upper_unsorted]).is_err());
        let empty_top = Layer {
            members: vec![],
            offsets: vec![0],
            links: vec![],
        };
        assert!(Graph::from_layers(2, vec![ok, empty_top]).is_err());
    }
}
