//! The crate against scikit-learn's `LocalOutlierFactor(n_neighbors=20, novelty=True)` on
//! the fixture written by `make_sklearn_fixture.py` (2,000 x 8 training points with exact
//! duplicates, 500 queries of which about 200 are outliers). The per-point training
//! values (kdist, lrd, `negative_outlier_factor_`) are compared in the crate's unit tests
//! (`fitted.rs`), where the maths is reachable.

use oodgate_lof::ndarray::Array2;
use oodgate_lof::{HnswParams, LofIndex, SearchMode, Thresholds, Verdict, decide};

// The fixture's fields, its loader and the relative difference, shared with the unit
// tests in `src/fitted.rs`.
include!("common/sklearn_fixture.rs");

fn build(f: &Fixture) -> LofIndex {
    let labels = (0..f.n_train).map(|i| (i % 10) as u8).collect();
    // ef 64: the width these agreement figures were set at.
    let params = HnswParams {
        ef_search: 64,
        ..HnswParams::default()
    };
    let (index, report) =
        LofIndex::build(f.train.clone(), labels, f.dim, f.k, params, false).expect("build");
    println!("build report: {report:?}");
    index
}

#[test]
fn training_scores_match_sklearn() {
    let f = fixture();
    // The index keeps the same scores, sorted.
    let index = build(&f);
    let mut sorted = f.negative_outlier_factor.clone();
    sorted.sort_by(f64::total_cmp);
    let (d, at) = max_rel_diff(index.sorted_training_scores(), &sorted);
    assert!(d < 1e-9, "sorted training scores differ at {at} ({d:e})");
}

/// scikit-learn's rule: LOF's threshold alone, no distance check.
fn lof_only(offset: f64) -> Thresholds {
    Thresholds {
        lof: offset,
        distance: None,
    }
}

/// Distance to the k-th (farthest) neighbour of a query.
fn kth_distance(r: &oodgate_lof::QueryResult) -> f64 {
    r.neighbours.last().expect("k >= 1 neighbours").distance
}

#[test]
fn offsets_match_sklearn() {
    let f = fixture();
    let index = build(&f);
    let ours = index.offset(f.contamination).unwrap();
    assert!(
        (ours - f.offset).abs() <= 1e-9 * f.offset.abs(),
        "{ours} vs {}",
        f.offset
    );
    for case in &f.offsets {
        let ours = index.offset(case.contamination).unwrap();
        let frr = index
            .threshold_for_false_rejection_rate(case.contamination)
            .unwrap();
        println!(
            "contamination {}: ours {ours}, sklearn {}",
            case.contamination, case.offset
        );
        assert!(
            (ours - case.offset).abs() <= 1e-9 * case.offset.abs(),
            "contamination {}: {ours} vs {}",
            case.contamination,
            case.offset
        );
        assert_eq!(ours, frr);
    }
}

#[test]
fn exact_query_scores_match_sklearn() {
    let f = fixture();
    let index = build(&f);
    let queries = Array2::from_shape_vec((f.n_queries, f.dim), f.queries.clone()).unwrap();
    let results = index.query(queries.view(), SearchMode::Exact).unwrap();
    let scores: Vec<f64> = results.iter().map(|r| r.score).collect();
    let (d, at) = max_rel_diff(&scores, &f.score_samples);
    println!("score_samples: max relative difference {d:e} at {at}");
    assert!(
        d < 1e-6,
        "query {at}: {} vs sklearn {}",
        scores[at],
        f.score_samples[at]
    );

    let offset = lof_only(index.offset(f.contamination).unwrap());
    for (i, r) in results.iter().enumerate() {
        let decision = decide(r.score, kth_distance(r), offset);
        assert!(
            (decision.lof - f.decision_function[i]).abs()
                < 1e-6 * (1.0 + f.decision_function[i].abs())
        );
        let sklearn_reject = f.predict[i] == -1;
        assert_eq!(
            decision.verdict == Verdict::Reject,
            sklearn_reject,
            "query {i}"
        );
        // Evidence: k neighbours, nearest first, labels from the training set.
        assert_eq!(r.neighbours.len(), f.k);
        assert!(
            r.neighbours
                .windows(2)
                .all(|w| w[0].distance <= w[1].distance)
        );
        assert!(r.neighbours.iter().all(|n| n.label == (n.id % 10) as u8));
    }
}

#[test]
fn hnsw_verdicts_agree_with_sklearn() {
    let f = fixture();
    let index = build(&f);
    let queries = Array2::from_shape_vec((f.n_queries, f.dim), f.queries.clone()).unwrap();
    let offset = lof_only(index.offset(f.contamination).unwrap());
    let results = index
        .query(queries.view(), index.default_search_mode())
        .unwrap();
    let agree = results
        .iter()
        .zip(&f.predict)
        .filter(|(r, p)| {
            (decide(r.score, kth_distance(r), offset).verdict == Verdict::Reject) == (**p == -1)
        })
        .count();
    let same_score = results
        .iter()
        .zip(&f.score_samples)
        .filter(|(r, s)| (r.score - **s).abs() <= 1e-6 * s.abs())
        .count();
    println!(
        "HNSW: verdicts agree on {agree}/{}, score within 1e-6 on {same_score}",
        f.n_queries
    );
    assert!(agree as f64 >= 0.99 * f.n_queries as f64);
}
