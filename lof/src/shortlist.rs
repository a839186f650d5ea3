//! The shortlist both screening routes of exact search fill: the GEMM tiles
//! (`exact.rs`) and the fused AVX-512 kernel (`fused.rs`). A leaf of its own so that
//! neither route imports the other for it.

/// Training points per screening chunk: one AVX-512 register of f32 in the fused
/// kernel, and the chunk the GEMM route tests against the threshold at once.
pub(crate) const LANES: usize = 16;

/// The best screening candidates of one query row so far: every key below `threshold`
/// is kept; when the list fills up it is cut back to the `keep` smallest keys and the
/// threshold drops to the largest key kept. Everything ever left out has a key at or
/// above the final threshold, which is what the screening bound needs.
pub(crate) struct Shortlist {
    /// (key, id) with key = `|x|^2 - 2 q.x`, which orders points like `|q - x|^2`,
    /// packed into one integer that orders like (key, id) (see [`Shortlist::pack`]):
    /// selecting and sorting plain integers costs a fraction of comparing pairs.
    items: Vec<u64>,
    /// Candidates to keep.
    keep: usize,
    /// Keys at or above this cannot be among the best `keep`.
    threshold: f32,
    /// Whether anything was ever left out (if not, the search saw every point).
    cut: bool,
}

impl Shortlist {
    /// Room for this many candidates before a cut. Cuts are O(len), but each one also
    /// lowers the threshold, so fewer keys are pushed after it: 2x keep measured
    /// faster than 3x, 4x and 8x.
    fn capacity(keep: usize) -> usize {
        (2 * keep).max(64)
    }

    pub(crate) fn new(keep: usize) -> Self {
        Self {
            items: Vec::with_capacity(Self::capacity(keep)),
            keep,
            threshold: f32::INFINITY,
            cut: false,
        }
    }

    /// Offers one tile: `neg2dot[c] = -2 q.x_c`, `norms[c] = |x_c|^2`, ids from `first_id`.
    /// (The GEMM route: where the CPU has AVX-512 the fused kernel screens instead.)
    pub(crate) fn offer_tile(
        &mut self,
        neg2dot: &[f32],
        norms: &[f32],
        first_id: usize,
        skip: Option<usize>,
    ) {
        let full = neg2dot.len() / LANES * LANES;
        let chunks = neg2dot[..full]
            .chunks_exact(LANES)
            .zip(norms[..full].chunks_exact(LANES));
        for (chunk, (g, xn)) in chunks.enumerate() {
            // Once the list has settled, almost no chunk holds a key below the
            // threshold: only the lanes that hit take the slow path.
            let mut keys = [0.0f32; LANES];
            let mut hits = 0u32;
            for i in 0..LANES {
                keys[i] = g[i] + xn[i];
                hits |= u32::from(keys[i] < self.threshold) << i;
            }
            while hits != 0 {
                let i = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                self.offer(keys[i], first_id + chunk * LANES + i, skip);
            }
        }
        for (i, (g, n)) in neg2dot[full..].iter().zip(&norms[full..]).enumerate() {
            self.offer(g + n, first_id + full + i, skip);
        }
    }

    pub(crate) fn threshold(&self) -> f32 {
        self.threshold
    }

    pub(crate) fn offer(&mut self, key: f32, id: usize, skip: Option<usize>) {
        if key < self.threshold && Some(id) != skip {
            self.items.push(Self::pack(key, id as u32));
            if self.items.len() == Self::capacity(self.keep) {
                self.cut_back();
            }
        }
    }

    /// Keeps the `keep` smallest (key, id) and lowers the threshold to the largest kept.
    fn cut_back(&mut self) {
        if self.items.len() > self.keep {
            self.items.select_nth_unstable(self.keep - 1);
            self.items.truncate(self.keep);
            self.cut = true;
            let largest = self.items.iter().copied().max().expect("keep >= 1");
            self.threshold = Self::unpack(largest).0;
        }
    }

    /// (candidates packed, largest kept key, whether every point was kept).
    pub(crate) fn finish(mut self) -> (Vec<u64>, f32, bool) {
        self.cut_back();
        let worst = self
            .items
            .iter()
            .copied()
            .max()
            .map_or(f32::NEG_INFINITY, |p| Self::unpack(p).0);
        (self.items, worst, !self.cut)
    }

    /// `(key, id)` as one u64 whose integer order is `key.total_cmp` then `id`: the
    /// key's bits mapped to an order-preserving u32 in the high half.
    fn pack(key: f32, id: u32) -> u64 {
        let bits = key.to_bits();
        let ordered = if bits >> 31 == 1 {
            !bits
        } else {
            bits | 1 << 31
        };
        (u64::from(ordered) << 32) | u64::from(id)
    }

    pub(crate) fn unpack(packed: u64) -> (f32, u32) {
        let ordered = (packed >> 32) as u32;
        let bits = if ordered >> 31 == 1 {
            ordered & !(1 << 31)
        } else {
            !ordered
        };
        (f32::from_bits(bits), packed as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_candidates_order_like_key_then_id_and_round_trip() {
        let keys = [
            f32::NEG_INFINITY,
            -3.5e30,
            -2.0,
            -1e-40,
            -0.0,
            0.0,
            1e-40,
            0.5,
            7.25e20,
            f32::INFINITY,
        ];
        let mut pairs = Vec::new();
        for &key in &keys {
            for id in [0, 1, 77, u32::MAX] {
                pairs.push((key, id));
            }
        }
        let mut packed: Vec<u64> = pairs.iter().map(|&(k, i)| Shortlist::pack(k, i)).collect();
        packed.reverse();
        packed.sort_unstable();
        let back: Vec<(f32, u32)> = packed.into_iter().map(Shortlist::unpack).collect();
        let mut expected = pairs.clone();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        assert_eq!(
            back.iter()
                .map(|p| (p.0.to_bits(), p.1))
                .collect::<Vec<_>>(),
            expected
                .iter()
                .map(|p| (p.0.to_bits(), p.1))
                .collect::<Vec<_>>()
        );
    }
}
