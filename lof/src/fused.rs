//! The screening pass of exact search as one AVX-512 kernel, where the CPU has it.
//!
//! The GEMM route writes every screening key (one per query and training point) to
//! memory and reads it back to test it against the query's threshold; with a 16-wide
//! screening space the multiply-adds are cheap and that round trip cost as much as
//! the GEMM itself. Here the keys of 8 queries x 16 training points live in registers
//! only: built by multiply-adds, compared to the thresholds into bit masks, and only
//! the few lanes below a threshold leave the registers.

use crate::shortlist::{LANES, Shortlist};

/// Queries per register group: eight independent multiply-add chains keep the FMA
/// units busy despite their latency.
const GROUP: usize = 8;

/// Panels per tile: 256 points of a 16-wide screening space are 17 KiB, which stay in
/// L1 while every query of the block passes over them.
const TILE_PANELS: usize = 16;

/// Screening points laid out for the kernel: per panel of 16 training points, `dim`
/// rows of 16 coordinates (one per point), then their 16 squared norms. The last
/// panel is padded with points whose norm is +inf, so their keys never pass a test.
#[derive(Debug, Clone)]
pub(crate) struct Panels {
    dim: usize,
    data: Vec<f32>,
}

impl Panels {
    /// `points` (n x dim, row-major) and their squared norms; `None` where the CPU
    /// lacks AVX-512F (the GEMM route is used then).
    pub(crate) fn new(points: &[f32], sq_norms: &[f32], dim: usize) -> Option<Self> {
        if !available() {
            return None;
        }
        let n = sq_norms.len();
        let panels = n.div_ceil(LANES);
        let mut data = Vec::with_capacity(panels * (dim + 1) * LANES);
        for p in 0..panels {
            for j in 0..dim {
                data.extend((0..LANES).map(|l| {
                    let i = p * LANES + l;
                    if i < n { points[i * dim + j] } else { 0.0 }
                }));
            }
            data.extend((0..LANES).map(|l| {
                sq_norms
                    .get(p * LANES + l)
                    .copied()
                    .unwrap_or(f32::INFINITY)
            }));
        }
        Some(Self { dim, data })
    }

    fn count(&self) -> usize {
        self.data.len() / ((self.dim + 1) * LANES)
    }

    /// Offers every training point to the shortlist of every query row of `screen_q`
    /// (rows x dim, row-major), with key `|s|^2 - 2 s_q.s`; `skip[r]` is the point
    /// row r must not find.
    pub(crate) fn scan(&self, screen_q: &[f32], best: &mut [Shortlist], skip: Option<&[usize]>) {
        let dim = self.dim;
        let rows = best.len();
        assert_eq!(
            screen_q.len(),
            rows * dim,
            "query rows of the screening dimension"
        );
        // -2 s_q: an exact scaling, so each key rounds as |s|^2 + sum (-2 q_j) s_j.
        let neg2q: Vec<f32> = screen_q.iter().map(|v| -2.0 * v).collect();
        let full_groups: Vec<Vec<f32>> = neg2q
            .chunks_exact(GROUP * dim)
            .map(|rows| transposed::<GROUP>(rows, dim))
            .collect();
        let panels = self.count();
        for first in (0..panels).step_by(TILE_PANELS) {
            let end = (first + TILE_PANELS).min(panels);
            let mut r = 0;
            while r < rows {
                let g = GROUP.min(rows - r);
                let lists = &mut best[r..r + g];
                let skips = skip.map(|s| &s[r..r + g]);
                // SAFETY: `Panels` exists only where the CPU has AVX-512F.
                unsafe {
                    if g == GROUP {
                        let q = &full_groups[r / GROUP];
                        self.scan_group::<GROUP>(q, lists, skips, first..end);
                    } else {
                        for (i, list) in lists.iter_mut().enumerate() {
                            let one = std::slice::from_mut(list);
                            let s = skips.map(|s| &s[i..i + 1]);
                            let q = &neg2q[(r + i) * dim..(r + i + 1) * dim];
                            self.scan_group::<1>(q, one, s, first..end);
                        }
                    }
                }
                r += g;
            }
        }
    }

    /// G queries (`q`: dim x G, each coordinate's G values together, already times -2)
    /// against the panels `range`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn scan_group<const G: usize>(
        &self,
        q: &[f32],
        best: &mut [Shortlist],
        skip: Option<&[usize]>,
        range: std::ops::Range<usize>,
    ) {
        use std::arch::x86_64::{
            __m512, _CMP_LT_OQ, _mm512_cmp_ps_mask, _mm512_fmadd_ps, _mm512_loadu_ps,
            _mm512_set1_ps, _mm512_storeu_ps,
        };
        let dim = self.dim;
        let stride = (dim + 1) * LANES;
        assert!(q.len() == G * dim && best.len() == G);
        assert!(range.end * stride <= self.data.len());
        let mut thresholds: [__m512; G] =
            std::array::from_fn(|i| _mm512_set1_ps(best[i].threshold()));
        let mut keys = [0.0f32; LANES];
        for p in range {
            // SAFETY: panel p lies within `data` (asserted above for the whole range);
            // q has G x dim values (asserted above).
            unsafe {
                let base = self.data.as_ptr().add(p * stride);
                let norms = _mm512_loadu_ps(base.add(dim * LANES));
                let mut acc = [norms; G];
                for j in 0..dim {
                    let x = _mm512_loadu_ps(base.add(j * LANES));
                    let qj = q.as_ptr().add(j * G);
                    for (i, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(_mm512_set1_ps(*qj.add(i)), x, *a);
                    }
                }
                for i in 0..G {
                    let mut hits = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(acc[i], thresholds[i]);
                    if hits == 0 {
                        continue;
                    }
                    _mm512_storeu_ps(keys.as_mut_ptr(), acc[i]);
                    let not = skip.map(|s| s[i]);
                    while hits != 0 {
                        let l = hits.trailing_zeros() as usize;
                        hits &= hits - 1;
                        best[i].offer(keys[l], p * LANES + l, not);
                    }
                    thresholds[i] = _mm512_set1_ps(best[i].threshold());
                }
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn scan_group<const G: usize>(
        &self,
        _q: &[f32],
        _best: &mut [Shortlist],
        _skip: Option<&[usize]>,
        _range: std::ops::Range<usize>,
    ) {
        unreachable!("Panels are only built where AVX-512F is available")
    }
}

/// G query rows (G x dim) as dim x G.
fn transposed<const G: usize>(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows.len()];
    for i in 0..G {
        for j in 0..dim {
            out[j * G + i] = rows[i * dim + j];
        }
    }
    out
}

fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
