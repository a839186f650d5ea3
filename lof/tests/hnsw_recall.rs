//! HNSW recall on clustered data, at build time and on held-out queries.

mod common;

use std::collections::HashSet;

use oodgate_lof::ndarray::Array2;
use oodgate_lof::{HnswParams, LofIndex, SearchMode};

/// The graph parameters these recall bounds were set at: search width 64.
fn params() -> HnswParams {
    HnswParams {
        ef_search: 64,
        ..HnswParams::default()
    }
}

#[test]
fn recall_is_high_on_clustered_data() {
    let (n, d, k) = (6000, 32, 10);
    // Training points and held-out queries from the same clusters.
    let (mut data, mut labels) = common::clustered(n + 500, d, 20, 0.35, 21);
    let qdata = data.split_off(n * d);
    labels.truncate(n);
    let (index, report) = LofIndex::build(data, labels, d, k, params(), false).unwrap();
    println!("{report:?}");
    let recall = report.graph.expect("build() makes the graph").recall;
    assert_eq!(recall.sample, 1000);
    assert!(recall.recall >= 0.9, "build recall {recall:?}");
    assert!(recall.self_found >= 0.99, "unreachable points: {recall:?}");

    let again = index.measure_recall(300, 64).unwrap();
    assert!(again.recall >= 0.9, "{again:?}");

    // Held-out queries: HNSW neighbours vs exact neighbours.
    let q = Array2::from_shape_vec((500, d), qdata).unwrap();
    let exact = index.query(q.view(), SearchMode::Exact).unwrap();
    let approx = index.query(q.view(), SearchMode::Hnsw { ef: 64 }).unwrap();
    let mut hits = 0;
    let mut same_score = 0;
    for (e, a) in exact.iter().zip(&approx) {
        let truth: HashSet<u32> = e.neighbours.iter().map(|n| n.id).collect();
        hits += a
            .neighbours
            .iter()
            .filter(|n| truth.contains(&n.id))
            .count();
        if e.score == a.score {
            same_score += 1;
        }
    }
    let recall = hits as f64 / (500 * k) as f64;
    println!("held-out recall@{k} at ef 64: {recall:.4}; identical scores: {same_score}/500");
    assert!(recall >= 0.9);
}

#[test]
fn training_neighbours_from_the_graph_agree_with_exact_ones() {
    use oodgate_lof::TrainingNeighbours;
    let (d, k) = (32, 10);
    let (mut data, mut labels) = common::clustered(4000, d, 20, 0.35, 22);
    // Small tight groups between the clusters, like a few odd training images and
    // their near-copies: the graph seldom links to them.
    let mut rng = common::Rng::new(5);
    for _ in 0..60 {
        let centre: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        for _ in 0..4 {
            data.extend(centre.iter().map(|&m| (m + 0.01 * rng.normal()) as f32));
        }
    }
    let n = data.len() / d;
    labels.resize(n, 0);
    let params = params();
    let (exact, _) = LofIndex::build(data.clone(), labels.clone(), d, k, params, false).unwrap();
    let (graph, report) = LofIndex::build_with(
        data,
        labels,
        d,
        k,
        params,
        TrainingNeighbours::Graph { ef: 64 },
        false,
    )
    .unwrap();
    let recall = report.graph.expect("a graph build makes the graph").recall;
    assert!(recall.recall >= 0.9, "{recall:?}");
    let same = exact
        .kdist()
        .iter()
        .zip(graph.kdist())
        .filter(|(a, b)| a == b)
        .count();
    assert!(same as f64 >= 0.95 * n as f64, "{same} of {n} kdist equal");
    // Where the graph missed a neighbour, the k-th distance can only grow.
    assert!(exact.kdist().iter().zip(graph.kdist()).all(|(e, g)| g >= e));
    // The sparsest 2 %, whose scores set the threshold, are searched exactly.
    let mut sparsest: Vec<usize> = (0..n).collect();
    sparsest.sort_by(|&a, &b| graph.kdist()[b].total_cmp(&graph.kdist()[a]));
    let wrong: Vec<usize> = sparsest[..n / 50]
        .iter()
        .copied()
        .filter(|&p| graph.kdist()[p] != exact.kdist()[p])
        .collect();
    assert!(
        wrong.is_empty(),
        "inexact k-distances among the sparsest: {wrong:?}"
    );
}
