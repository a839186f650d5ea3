//! Local Outlier Factor maths, exactly as scikit-learn's `LocalOutlierFactor` computes it.
//!
//! Plain functions over neighbour lists, no I/O, no search. With `N_k(p)` the k nearest
//! *other* training points of p (p excluded by index, so an exact duplicate of p is a
//! neighbour at distance 0):
//!
//! - `kdist(p)` = distance from p to its k-th neighbour;
//! - `reach(a, o) = max(kdist(o), d(a, o))`;
//! - `lrd(a) = 1 / (mean_{o in N_k(a)} reach(a, o) + 1e-10)` (the `1e-10` keeps the
//!   density finite when more than k points coincide; scikit-learn adds it too);
//! - `score(a) = -mean_{o in N_k(a)} lrd(o) / lrd(a)`, the negated LOF, so that lower
//!   is more anomalous (scikit-learn's `negative_outlier_factor_` / `score_samples`);
//! - the threshold for a contamination c is numpy's default (linear) percentile of the
//!   training scores at `100 c`; a point is rejected when `score < threshold`.
//!
//! Sums are taken left to right in f64; scikit-learn's numpy reductions sum pairwise,
//! so results agree to rounding (about 1e-15 relative), not bit for bit.

use crate::error::LofError;
use crate::neighbours::NeighbourLists;

/// The term scikit-learn adds to the mean reachability distance before inverting it.
pub(crate) const LRD_EPSILON: f64 = 1e-10;

/// `kdist(p)` for every training point: the distance to its k-th (last) neighbour.
pub(crate) fn kdist(training_neighbours: &NeighbourLists) -> Vec<f64> {
    let k = training_neighbours.k();
    (0..training_neighbours.len())
        .map(|p| training_neighbours.dists(p)[k - 1])
        .collect()
}

/// Ids of the `share` of the points with the largest k-distance (at least one),
/// ascending: the sparsest, where graph links lead least.
pub(crate) fn sparsest(kdist: &[f64], share: f64) -> Vec<u32> {
    let n = kdist.len();
    let mut ids: Vec<u32> = (0..n as u32).collect();
    if n == 0 {
        return ids;
    }
    let keep = ((n as f64 * share) as usize).clamp(1, n);
    ids.select_nth_unstable_by(keep - 1, |&a, &b| {
        kdist[b as usize].total_cmp(&kdist[a as usize])
    });
    ids.truncate(keep);
    ids.sort_unstable();
    ids
}

/// Local reachability density of one point from its neighbours' ids and distances and
/// the training k-distances: `1 / (mean max(kdist(o), d) + 1e-10)`.
pub(crate) fn local_reachability_density(ids: &[u32], dists: &[f64], kdist: &[f64]) -> f64 {
    debug_assert_eq!(ids.len(), dists.len());
    let sum: f64 = ids
        .iter()
        .zip(dists)
        .map(|(&o, &d)| kdist[o as usize].max(d))
        .sum();
    1.0 / (sum / ids.len() as f64 + LRD_EPSILON)
}

/// `lrd(p)` for every training point.
pub(crate) fn training_lrd(training_neighbours: &NeighbourLists, kdist: &[f64]) -> Vec<f64> {
    (0..training_neighbours.len())
        .map(|p| {
            local_reachability_density(
                training_neighbours.ids(p),
                training_neighbours.dists(p),
                kdist,
            )
        })
        .collect()
}

/// Score of a point with density `own_lrd` whose neighbours are `ids`:
/// `-mean(lrd(o) / own_lrd)` (the ratio form is scikit-learn's, kept for rounding).
pub(crate) fn score_from_lrd(ids: &[u32], own_lrd: f64, lrd: &[f64]) -> f64 {
    let sum: f64 = ids.iter().map(|&o| lrd[o as usize] / own_lrd).sum();
    -(sum / ids.len() as f64)
}

/// Training scores (scikit-learn's `negative_outlier_factor_`), in training order.
pub(crate) fn training_scores(training_neighbours: &NeighbourLists, lrd: &[f64]) -> Vec<f64> {
    (0..training_neighbours.len())
        .map(|p| score_from_lrd(training_neighbours.ids(p), lrd[p], lrd))
        .collect()
}

/// Score of a query from its k nearest training points (scikit-learn's `score_samples`).
pub(crate) fn query_score(ids: &[u32], dists: &[f64], kdist: &[f64], lrd: &[f64]) -> f64 {
    let own = local_reachability_density(ids, dists, kdist);
    score_from_lrd(ids, own, lrd)
}

/// Sorts scores ascending (total order; scores are finite by construction).
pub(crate) fn sort_scores(mut scores: Vec<f64>) -> Vec<f64> {
    scores.sort_by(f64::total_cmp);
    scores
}

/// numpy's default `percentile(a, q)` (method "linear") of an ascending, non-empty slice.
///
/// Mirrors numpy 2.x step by step so the result is the same float: `q / 100`, virtual
/// index `(n - 1) * q`, and numpy's two-sided lerp (`b - (b - a)(1 - t)` when `t >= 0.5`).
pub fn percentile_linear(sorted: &[f64], percent: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let n = sorted.len();
    let quantile = percent / 100.0;
    let virtual_index = (n - 1) as f64 * quantile;
    if virtual_index >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virtual_index < 0.0 {
        return sorted[0];
    }
    let previous = virtual_index.floor();
    let gamma = virtual_index - previous;
    let lo = previous as usize;
    let (a, b) = (sorted[lo], sorted[lo + 1]);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// The threshold below which a fraction `rate` of the training scores lies: scikit-learn's
/// `offset_` for `contamination = rate`, i.e. `percentile(scores, 100 * rate)`.
///
/// `rate` must lie in `[0, 1]`.
pub fn threshold(sorted_training_scores: &[f64], rate: f64) -> Result<f64, LofError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(LofError::InvalidInput(format!(
            "rate must lie in [0, 1], got {rate}"
        )));
    }
    if sorted_training_scores.is_empty() {
        return Err(LofError::InvalidInput("no training scores".into()));
    }
    // `100.0 * rate` first, as scikit-learn passes that to numpy, which divides by 100.
    Ok(percentile_linear(sorted_training_scores, 100.0 * rate))
}

/// Whether a query is kept (then classified) or rejected as out of distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `score >= threshold`: in distribution.
    Accept,
    /// `score < threshold`: out of distribution.
    Reject,
}

/// The k-distance threshold for a rate r: the training points' own k-distances (each
/// to its k-th *other* training point), numpy's linear percentile at `100 (1 - r)`, so
/// that a share r of the training points lie beyond it.
pub(crate) fn distance_threshold(
    sorted_training_kdist: &[f64],
    rate: f64,
) -> Result<f64, LofError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(LofError::InvalidInput(format!(
            "rate must lie in [0, 1], got {rate}"
        )));
    }
    if sorted_training_kdist.is_empty() {
        return Err(LofError::InvalidInput("no training k-distances".into()));
    }
    Ok(percentile_linear(
        sorted_training_kdist,
        100.0 * (1.0 - rate),
    ))
}

/// Where a verdict's line is drawn: LOF's threshold on the score (scikit-learn's
/// `offset_`) and, when the distance check is on, a threshold on the query's k-distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Scores below this are LOF outliers.
    pub lof: f64,
    /// k-distances above this are too far from the training set; None: no distance check.
    pub distance: Option<f64>,
}

/// A query measured against both lines, and the verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// `score - threshold`: scikit-learn's `decision_function`; negative when LOF
    /// alone rejects (scikit-learn's `predict` returns -1 exactly then).
    pub lof: f64,
    /// `(threshold - kdist) / threshold`: negative when the query's k-th nearest
    /// training point is farther than the threshold. None without the distance check.
    pub distance: Option<f64>,
    pub verdict: Verdict,
}

/// The rule: Reject when LOF rejects (`score < thresholds.lof`, scikit-learn's rule) or
/// the query's distance to its k-th nearest training point exceeds the distance
/// threshold. LOF compares densities only locally, so an image far from every digit
/// whose nearest training points are themselves sparse scores as ordinary; the distance
/// part catches it. Without a distance threshold this is scikit-learn's `predict`.
pub fn decide(score: f64, kth_distance: f64, thresholds: Thresholds) -> Decision {
    let lof = score - thresholds.lof;
    let distance = thresholds.distance.map(|t| (t - kth_distance) / t);
    let verdict = if lof < 0.0 || distance.is_some_and(|d| d < 0.0) {
        Verdict::Reject
    } else {
        Verdict::Accept
    };
    Decision {
        lof,
        distance,
        verdict,
    }
}

/// The inverse of [`percentile_linear`] as a rate: the r in [0, 1] at which the
/// percentile of the ascending `sorted` reaches `value` (0 below the smallest, 1 above
/// the largest). So `value < percentile_linear(sorted, 100 r)` exactly when the tail is
/// below r, up to rounding.
pub(crate) fn lower_tail(sorted: &[f64], value: f64) -> f64 {
    let n = sorted.len();
    if n < 2 || value <= sorted[0] {
        return if n > 0 && value > sorted[0] { 1.0 } else { 0.0 };
    }
    if value >= sorted[n - 1] {
        return 1.0;
    }
    // sorted[lo] <= value < sorted[lo + 1]
    let lo = sorted.partition_point(|&x| x <= value) - 1;
    let (a, b) = (sorted[lo], sorted[lo + 1]);
    (lo as f64 + (value - a) / (b - a)) / (n - 1) as f64
}

/// The share of training points at least as unusual as a query, by the more suspicious
/// of the two parts: the lower tail of its LOF score among the training scores, and the
/// upper tail of its k-distance among the training k-distances (without the distance
/// part, the LOF tail alone). The fused rule rejects about when this is below the
/// contamination; it ranks images for AUROC whatever the threshold.
pub(crate) fn training_tail(
    sorted_scores: &[f64],
    score: f64,
    sorted_kdist: Option<&[f64]>,
    kth_distance: f64,
) -> f64 {
    let lof = lower_tail(sorted_scores, score);
    match sorted_kdist {
        Some(kd) => lof.min(1.0 - lower_tail(kd, kth_distance)),
        None => lof,
    }
}

/// The training points' own LOF scores and k-distances, each ascending: every
/// threshold and every training tail is read from them, for the graph index and for
/// exact LOF alike.
#[derive(Debug, Clone)]
pub struct TrainingDistribution {
    sorted_scores: Vec<f64>,
    sorted_kdist: Vec<f64>,
}

impl TrainingDistribution {
    pub(crate) fn new(sorted_scores: Vec<f64>, kdist: &[f64]) -> Self {
        Self {
            sorted_scores,
            sorted_kdist: sort_scores(kdist.to_vec()),
        }
    }

    /// Training scores, ascending (scikit-learn's `negative_outlier_factor_`, sorted).
    pub(crate) fn sorted_scores(&self) -> &[f64] {
        &self.sorted_scores
    }

    /// scikit-learn's `offset_` for a contamination (or a false-rejection rate).
    pub fn offset(&self, rate: f64) -> Result<f64, LofError> {
        threshold(&self.sorted_scores, rate)
    }

    /// [`distance_threshold`] over these k-distances.
    pub fn distance_threshold(&self, rate: f64) -> Result<f64, LofError> {
        distance_threshold(&self.sorted_kdist, rate)
    }

    /// [`training_tail`] of a query (the distance part only when `distance_check`).
    pub fn training_tail(&self, score: f64, kth_distance: f64, distance_check: bool) -> f64 {
        training_tail(
            &self.sorted_scores,
            score,
            distance_check.then_some(self.sorted_kdist.as_slice()),
            kth_distance,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five points on a line, 0, 1, 2, 4, 10, with k = 2, worked by hand:
    ///
    /// neighbours (self excluded): 0 -> {1 (1), 2 (2)}, 1 -> {0 (1), 2 (1)},
    /// 2 -> {1 (1), 0 (2)}, 4 -> {2 (2), 1 (3)}, 10 -> {4 (6), 2 (8)}.
    /// The tie for point 1 (0 and 2 both at distance 1) is broken by smaller id.
    fn line() -> NeighbourLists {
        NeighbourLists::new(
            2,
            vec![1, 2, 0, 2, 1, 0, 2, 1, 3, 2],
            vec![1., 2., 1., 1., 1., 2., 2., 3., 6., 8.],
        )
    }

    #[test]
    fn kdist_is_the_kth_distance() {
        assert_eq!(kdist(&line()), vec![2., 1., 2., 3., 8.]);
    }

    #[test]
    fn lrd_and_scores_by_hand() {
        let n = line();
        let kd = kdist(&n);
        let lrd = training_lrd(&n, &kd);
        // p0: reach to 1 = max(1, 1) = 1, to 2 = max(2, 2) = 2 -> mean 1.5
        // p1: to 0 max(2, 1) = 2, to 2 max(2, 1) = 2 -> 2
        // p2: to 1 max(1, 1) = 1, to 0 max(2, 2) = 2 -> 1.5
        // p3 (x = 4): to 2 max(2, 2) = 2, to 1 max(1, 3) = 3 -> 2.5
        // p4 (x = 10): to 3 max(3, 6) = 6, to 2 max(2, 8) = 8 -> 7
        let means = [1.5, 2.0, 1.5, 2.5, 7.0];
        for (l, m) in lrd.iter().zip(means) {
            assert_eq!(*l, 1.0 / (m + 1e-10));
        }
        let scores = training_scores(&n, &lrd);
        // score(p) = -mean(lrd(o)) / lrd(p) = -mean(1 / m_o) * m_p (up to the 1e-10)
        let expect = [
            -(1.0 / 2.0 + 1.0 / 1.5) / 2.0 * 1.5,
            -(1.0 / 1.5 + 1.0 / 1.5) / 2.0 * 2.0,
            -(1.0 / 2.0 + 1.0 / 1.5) / 2.0 * 1.5,
            -(1.0 / 1.5 + 1.0 / 2.0) / 2.0 * 2.5,
            -(1.0 / 2.5 + 1.0 / 1.5) / 2.0 * 7.0,
        ];
        for (s, e) in scores.iter().zip(expect) {
            assert!((s - e).abs() < 1e-9, "{s} vs {e}");
        }
        // The far point is by far the most anomalous.
        let worst = scores
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(worst, 4);
    }

    #[test]
    fn query_score_by_hand() {
        let n = line();
        let kd = kdist(&n);
        let lrd = training_lrd(&n, &kd);
        // Query at x = 3: neighbours 2 (1) and 3 (at 4, distance 1); tie -> smaller id first.
        // reach: max(kdist(2)=2, 1) = 2, max(kdist(3)=3, 1) = 3 -> mean 2.5
        let s = query_score(&[2, 3], &[1.0, 1.0], &kd, &lrd);
        let e = -(1.0 / 1.5 + 1.0 / 2.5) / 2.0 * 2.5;
        assert!((s - e).abs() < 1e-9);
        // A query exactly on a training point of a tight cluster is an inlier (score ~ -1).
        let s0 = query_score(&[1, 0], &[0.0, 1.0], &kd, &lrd);
        assert!(s0 > -1.5, "{s0}");
    }

    #[test]
    fn duplicates_keep_density_finite() {
        // Three identical points, k = 2: every reach distance is 0.
        let n = NeighbourLists::new(2, vec![1, 2, 0, 2, 0, 1], vec![0.0; 6]);
        let kd = kdist(&n);
        let lrd = training_lrd(&n, &kd);
        assert!(lrd.iter().all(|&l| l == 1e10));
        assert!(training_scores(&n, &lrd).iter().all(|&s| s == -1.0));
    }

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile([1, 2, 3, 4, 10], q) for q in 0, 1, 10, 50, 62.5, 99, 100
        let a = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(percentile_linear(&a, 0.0), 1.0);
        assert_eq!(percentile_linear(&a, 1.0), 1.04);
        assert_eq!(percentile_linear(&a, 10.0), 1.4);
        assert_eq!(percentile_linear(&a, 50.0), 3.0);
        assert_eq!(percentile_linear(&a, 62.5), 3.5);
        assert_eq!(percentile_linear(&a, 99.0), 9.76);
        assert_eq!(percentile_linear(&a, 100.0), 10.0);
        assert_eq!(percentile_linear(&[7.0], 30.0), 7.0);
    }

    #[test]
    fn threshold_validates_rate() {
        let a = [-3.0, -1.0];
        assert!(threshold(&a, -0.1).is_err());
        assert!(threshold(&a, 1.5).is_err());
        assert!(threshold(&a, f64::NAN).is_err());
        assert!(threshold(&[], 0.1).is_err());
        assert_eq!(threshold(&a, 0.5).unwrap(), -2.0);
    }

    #[test]
    fn decide_rejects_strictly_below() {
        let lof_only = |lof| Thresholds {
            lof,
            distance: None,
        };
        assert_eq!(decide(-1.0, 0.0, lof_only(-1.0)).verdict, Verdict::Accept);
        assert_eq!(
            decide(-1.0001, 0.0, lof_only(-1.0)).verdict,
            Verdict::Reject
        );
        assert!((decide(-0.5, 0.0, lof_only(-1.5)).lof - 1.0).abs() < 1e-12);
    }

    #[test]
    fn distance_threshold_is_the_upper_percentile() {
        let kd = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(distance_threshold(&kd, 0.01).unwrap(), 9.76);
        assert_eq!(distance_threshold(&kd, 0.5).unwrap(), 3.0);
        assert!(distance_threshold(&kd, 1.5).is_err());
        assert!(distance_threshold(&[], 0.1).is_err());
    }

    #[test]
    fn fused_rule_rejects_when_either_part_does() {
        let both = Thresholds {
            lof: -2.0,
            distance: Some(10.0),
        };
        let d = decide(-1.0, 5.0, both);
        assert_eq!(d.verdict, Verdict::Accept);
        assert!((d.distance.unwrap() - 0.5).abs() < 1e-12);
        // LOF calls it ordinary, but it lies beyond the distance threshold.
        let d = decide(-1.0, 12.0, both);
        assert!(d.lof >= 0.0);
        assert_eq!(d.verdict, Verdict::Reject);
        assert!((d.distance.unwrap() + 0.2).abs() < 1e-12);
        // LOF rejects; the distance part accepts.
        let d = decide(-3.0, 1.0, both);
        assert_eq!(d.verdict, Verdict::Reject);
        // Without the distance check, LOF alone decides.
        let lof_only = Thresholds {
            lof: -2.0,
            distance: None,
        };
        let d = decide(-1.0, 1e9, lof_only);
        assert_eq!((d.verdict, d.distance), (Verdict::Accept, None));
    }

    #[test]
    fn lower_tail_inverts_the_percentile() {
        let a = [1.0, 2.0, 3.0, 4.0, 10.0];
        for r in [0.0, 0.01, 0.1, 0.37, 0.5, 0.625, 0.99, 1.0] {
            let v = percentile_linear(&a, 100.0 * r);
            assert!((lower_tail(&a, v) - r).abs() < 1e-12, "rate {r}");
        }
        assert_eq!(lower_tail(&a, 0.5), 0.0);
        assert_eq!(lower_tail(&a, 11.0), 1.0);
        // The fused tail: the LOF score's lower tail, or the k-distance's upper tail.
        let kd = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(training_tail(&a, 3.0, Some(&kd), 2.0), 0.5);
        assert_eq!(training_tail(&a, 3.0, Some(&kd), 5.0), 0.0);
        assert_eq!(training_tail(&a, 3.0, None, 5.0), 0.5);
    }
}
