//! How well a score separates inliers from outliers: the figures of the evaluation
//! tables and of the replay client.
//!
//! Scores follow scikit-learn's `score_samples`: higher means more normal. An image is
//! accepted when its score is at or above the threshold (decision >= 0).

/// Area under the ROC curve for "inlier scores above outlier scores" (ties count half).
///
/// The Mann-Whitney U statistic over the pooled, sorted scores: O((n + m) log(n + m)).
pub fn auroc(inliers: &[f64], outliers: &[f64]) -> f64 {
    if inliers.is_empty() || outliers.is_empty() {
        return f64::NAN;
    }
    let mut pooled: Vec<(f64, bool)> = inliers
        .iter()
        .map(|s| (*s, true))
        .chain(outliers.iter().map(|s| (*s, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the inliers' ranks (1-based, ties get their average rank).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pooled.len() {
        let mut j = i;
        while j + 1 < pooled.len() && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        let tied_inliers = pooled[i..=j].iter().filter(|p| p.1).count();
        rank_sum += average_rank * tied_inliers as f64;
        i = j + 1;
    }
    let n = inliers.len() as f64;
    let m = outliers.len() as f64;
    (rank_sum - n * (n + 1.0) / 2.0) / (n * m)
}

/// Fraction of scores below the threshold (rejected).
pub fn rejected_fraction(scores: &[f64], threshold: f64) -> f64 {
    if scores.is_empty() {
        return f64::NAN;
    }
    scores.iter().filter(|s| **s < threshold).count() as f64 / scores.len() as f64
}

/// The threshold that accepts the given fraction of the inliers: the (1 - fraction)
/// quantile of their scores, numpy's linear interpolation.
pub fn threshold_accepting(inliers: &[f64], fraction: f64) -> f64 {
    let mut sorted = inliers.to_vec();
    sorted.sort_by(f64::total_cmp);
    // `100 - 100 f`, not `100 (1 - f)`: 1 - 0.99 is not exactly 0.01 in floating point.
    crate::score::percentile_linear(&sorted, 100.0 - 100.0 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_of_separated_overlapping_and_tied_scores() {
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(auroc(&[1.0, 1.0], &[1.0]), 0.5);
        // 3 of 4 pairs ordered: (2>1), (4>1), (4>3); (2<3).
        assert_eq!(auroc(&[2.0, 4.0], &[1.0, 3.0]), 0.75);
    }

    #[test]
    fn rates_and_thresholds() {
        assert_eq!(rejected_fraction(&[1.0, 2.0, 3.0, 4.0], 2.5), 0.5);
        let inliers: Vec<f64> = (0..=100).map(f64::from).collect();
        // 99 % accepted: the 1st percentile, 1.0 with numpy's interpolation.
        assert!((threshold_accepting(&inliers, 0.99) - 1.0).abs() < 1e-12);
        assert!(
            (rejected_fraction(&inliers, threshold_accepting(&inliers, 0.99)) - 1.0 / 101.0).abs()
                < 1e-12
        );
    }
}
