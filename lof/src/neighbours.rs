//! k-nearest-neighbour lists, as produced by the exact and the HNSW searches.
//!
//! Stored flat (row-major, `k` entries per row) rather than as a `Vec<Vec<_>>`: the
//! offline pass holds 60,000 x 20 of them and the maths only ever walks rows.

/// The k nearest training points of each of a batch of points.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourLists {
    /// Neighbours per row.
    k: usize,
    /// Training ids, `k` per row, nearest first (ties broken by smaller id).
    ids: Vec<u32>,
    /// Euclidean distances matching `ids`, computed in f64 from the f32 embeddings.
    dists: Vec<f64>,
}

impl NeighbourLists {
    /// Wraps flat lists; `ids` and `dists` must have the same length, a multiple of `k`.
    ///
    /// # Panics
    /// If the lengths do not fit `k` (a programming error, never data-dependent).
    pub fn new(k: usize, ids: Vec<u32>, dists: Vec<f64>) -> Self {
        assert!(k > 0, "k must be positive");
        assert_eq!(ids.len(), dists.len(), "ids and dists differ in length");
        assert_eq!(ids.len() % k, 0, "length is not a multiple of k");
        Self { k, ids, dists }
    }

    /// Neighbours per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of rows (points whose neighbours these are).
    pub fn len(&self) -> usize {
        self.ids.len() / self.k
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Ids of row `i`, nearest first.
    pub fn ids(&self, i: usize) -> &[u32] {
        &self.ids[i * self.k..(i + 1) * self.k]
    }

    /// Distances of row `i`, ascending.
    pub fn dists(&self, i: usize) -> &[f64] {
        &self.dists[i * self.k..(i + 1) * self.k]
    }

    /// All ids, row-major.
    pub(crate) fn all_ids(&self) -> &[u32] {
        &self.ids
    }

    /// All distances, row-major.
    pub(crate) fn all_dists(&self) -> &[f64] {
        &self.dists
    }
}
