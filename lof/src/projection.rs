//! A low-dimensional space in which distances never exceed the true ones, so exact
//! search can screen candidates there cheaply.
//!
//! The embeddings of a trained classifier concentrate near a few directions (with ten
//! classes, 99 % of the variance lies in about 15 of 64 dimensions). With the principal
//! axes `v_1..v_d` of the training set and its mean `m`, a point `x` maps to its first
//! `p` principal coordinates plus the length of what is left over:
//!
//! `s(x) = ((x - m).v_1, ..., (x - m).v_p, |residual(x)|)`
//!
//! For any two points, `|s(q) - s(x)| <= |q - x|`: the first `p` coordinates are an
//! orthogonal projection, and on the residual subspace `| |a| - |b| | <= |a - b|`. When
//! the residual is small the bound is tight, also for points far from all training data
//! (an outlier's large residual shows in the last coordinate), which is what makes it
//! useful for out-of-distribution queries, where graph search and space partitions fail.

use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Share of the training variance the principal coordinates must hold.
const VARIANCE_KEPT: f64 = 0.99;

/// The principal axes of a training set and how many of them the screening space keeps.
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    /// Training mean, subtracted before projecting.
    mean: Vec<f64>,
    /// The first `p` principal axes, as rows (p x d).
    axes: Array2<f64>,
}

impl Projection {
    /// Fits the principal axes of `data` (n x d). `None` when the screening space would
    /// not be much smaller than `d` (then screening in it saves nothing), or when there
    /// are too few points to estimate a covariance.
    pub(crate) fn fit(data: ArrayView2<'_, f32>) -> Option<Self> {
        let (n, d) = data.dim();
        if n < 2 || d < 8 {
            return None;
        }
        let x = data.mapv(f64::from);
        let mean = x.mean_axis(Axis(0)).expect("n >= 2");
        let centred = &x - &mean;
        let cov = centred.t().dot(&centred) / (n - 1) as f64;
        let eigen = SymmetricEigen::new(DMatrix::from_fn(d, d, |i, j| cov[[i, j]]));
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let total: f64 = eigen.eigenvalues.iter().map(|v| v.max(0.0)).sum();
        if total <= 0.0 {
            return None;
        }
        let mut held = 0.0;
        let mut p = d;
        for (i, &axis) in order.iter().enumerate() {
            held += eigen.eigenvalues[axis].max(0.0);
            if held >= VARIANCE_KEPT * total {
                p = i + 1;
                break;
            }
        }
        // p coordinates plus the residual length; beyond half of d, screening costs
        // about as much as the full product it is meant to spare.
        if 2 * (p + 1) > d {
            return None;
        }
        let axes = Array2::from_shape_fn((p, d), |(r, c)| eigen.eigenvectors[(c, order[r])]);
        Some(Self {
            mean: mean.to_vec(),
            axes,
        })
    }

    /// Dimension of the screening space (`p + 1`).
    #[cfg(test)]
    pub(crate) fn dim(&self) -> usize {
        self.axes.nrows() + 1
    }

    /// The screening coordinates of every row of `points` (b x d), computed in f64 and
    /// stored as f32 (the screening bound accounts for that rounding).
    pub(crate) fn apply(&self, points: ArrayView2<'_, f32>) -> Array2<f32> {
        let (p, d) = self.axes.dim();
        let points = points.as_standard_layout();
        let flat = points.as_slice().expect("standard layout");
        let mut out = vec![0.0f32; points.nrows() * (p + 1)];
        out.par_chunks_mut(p + 1)
            .zip(flat.par_chunks(d))
            .for_each(|(s, x)| {
                let centred: Vec<f64> = x
                    .iter()
                    .zip(&self.mean)
                    .map(|(&v, &m)| f64::from(v) - m)
                    .collect();
                let length_sq: f64 = centred.iter().map(|v| v * v).sum();
                let mut kept_sq = 0.0;
                for (j, axis) in self.axes.outer_iter().enumerate() {
                    let c: f64 = axis.iter().zip(&centred).map(|(a, v)| a * v).sum();
                    kept_sq += c * c;
                    s[j] = c as f32;
                }
                s[p] = (length_sq - kept_sq).max(0.0).sqrt() as f32;
            });
        Array2::from_shape_vec((points.nrows(), p + 1), out).expect("sized above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points near 10 directions in 32 dimensions, plus a little noise everywhere.
    fn clustered(n: usize, d: usize, seed: u64) -> Array2<f32> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        Array2::from_shape_fn((n, d), |(i, j)| {
            let centre = if j == i % 10 { 10.0 } else { 0.0 };
            centre + 0.05 * next()
        })
    }

    #[test]
    fn screening_distances_never_exceed_true_ones_and_are_tight() {
        let x = clustered(500, 32, 1);
        let projection = Projection::fit(x.view()).expect("10 directions in 32 dimensions");
        assert!(projection.dim() <= 16, "screening dim {}", projection.dim());
        let mut q = clustered(50, 32, 2);
        // Far-away queries too: the residual coordinate must carry them.
        for j in 0..32 {
            q[[0, j]] = 7.0;
            q[[1, j]] = if j % 2 == 0 { -5.0 } else { 5.0 };
        }
        let (sx, sq) = (projection.apply(x.view()), projection.apply(q.view()));
        let mut worst_ratio: f64 = 1.0;
        for (qi, qr) in q.outer_iter().enumerate() {
            for (xi, xr) in x.outer_iter().enumerate() {
                let full: f64 = qr
                    .iter()
                    .zip(xr)
                    .map(|(&a, &b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let screen: f64 = sq
                    .row(qi)
                    .iter()
                    .zip(sx.row(xi))
                    .map(|(&a, &b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    .sqrt();
                assert!(screen <= full * (1.0 + 1e-5) + 1e-5, "{screen} > {full}");
                if full > 1.0 {
                    worst_ratio = worst_ratio.min(screen / full);
                }
            }
        }
        assert!(worst_ratio > 0.9, "bound too loose: {worst_ratio}");
    }

    #[test]
    fn no_projection_when_variance_is_spread() {
        let mut s = 7u64;
        let x = Array2::from_shape_fn((400, 16), |_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (s >> 40) as f32 / (1u64 << 24) as f32
        });
        assert!(Projection::fit(x.view()).is_none());
    }
}
