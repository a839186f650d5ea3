// Included (`include!`) by `tests/sklearn_parity.rs` and by the unit tests of
// `src/fitted.rs`, so the fixture is read one way.

/// scikit-learn's answers on the fixture written by `tests/make_sklearn_fixture.py`.
/// Each includer reads a different subset of the fields.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct Fixture {
    k: usize,
    dim: usize,
    n_train: usize,
    n_queries: usize,
    contamination: f64,
    train: Vec<f32>,
    queries: Vec<f32>,
    negative_outlier_factor: Vec<f64>,
    kdist: Vec<f64>,
    lrd: Vec<f64>,
    offset: f64,
    offsets: Vec<OffsetCase>,
    score_samples: Vec<f64>,
    decision_function: Vec<f64>,
    predict: Vec<i32>,
}

#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct OffsetCase {
    contamination: f64,
    offset: f64,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sklearn_fixture.json");
    let text = std::fs::read_to_string(path).expect("fixture present");
    let f: Fixture = serde_json::from_str(&text).expect("fixture parses");
    assert_eq!(f.train.len(), f.n_train * f.dim);
    assert_eq!(f.queries.len(), f.n_queries * f.dim);
    f
}

/// Largest `|a - b| / |b|` over the pairs, with the index where it occurs.
fn max_rel_diff(a: &[f64], b: &[f64]) -> (f64, usize) {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(f64::MIN_POSITIVE))
        .enumerate()
        .fold((0.0, 0), |acc, (i, d)| if d > acc.0 { (d, i) } else { acc })
}
