//! oodgate's LOF against scikit-learn's `LocalOutlierFactor(novelty=True)` on the same
//! embeddings: the committed L2 model's MNIST training embeddings (exactly what the
//! index holds) and 30,000 queries (MNIST, Fashion-MNIST and CIFAR-10 test).
//!
//! Exact mode must match scikit-learn's scores within 1e-4 relative and its offset_;
//! HNSW mode must give the same Classify/Reject verdict on at least 99.9 % of queries.

use ndarray::{Array1, Array2};
use oodgate_e2e::{export_and_run_sklearn, read_npy, workspace};
use oodgate_lof::{LofIndex, SearchMode};
use oodgate_server::ModelFiles;
use oodgate_server::config::Config;
use oodgate_server::load::index_path;

#[test]
fn lof_matches_scikit_learn() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    // Builds (or loads the cached) index of the default model, then exports.
    let printed = export_and_run_sklearn(out, &[], &["0.001", "0.01"]);
    let sklearn = out.join("sklearn");
    println!("scikit-learn: {}", printed.trim());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sklearn.join("sklearn.json")).unwrap()).unwrap();

    let config = Config::default();
    let model = ModelFiles::load(&root.join(&config.model.dir)).unwrap();
    let mut index = LofIndex::load(&root.join(index_path(&config, &model)), &model.sha256).unwrap();
    // The served index has no graph when the configuration searches exactly; the HNSW
    // rows below need one.
    if !index.has_graph() {
        index.add_graph(false).unwrap();
    }
    let queries: Array2<f32> = read_npy(&out.join("queries.npy"));
    let expected: Array1<f64> = read_npy(&sklearn.join("scores.npy"));
    assert_eq!(queries.nrows(), 30_000);

    // Training scores and offsets.
    let mut sk_training: Vec<f64> =
        read_npy::<Array1<f64>>(&sklearn.join("training_scores.npy")).to_vec();
    sk_training.sort_by(f64::total_cmp);
    let worst_training = index
        .sorted_training_scores()
        .iter()
        .zip(&sk_training)
        .map(|(a, b)| ((a - b) / b).abs())
        .fold(0.0, f64::max);
    println!("training scores: max relative difference {worst_training:.2e}");
    assert!(worst_training <= 1e-4);
    for c in ["0.001", "0.01"] {
        let ours = index.offset(c.parse().unwrap()).unwrap();
        let theirs = meta["offsets"][c].as_f64().unwrap();
        println!("contamination {c}: offset {ours:.9} (scikit-learn {theirs:.9})");
        assert!(
            ((ours - theirs) / theirs).abs() <= 1e-6,
            "offset at {c}: {ours} vs {theirs}"
        );
    }

    // Exact mode: the scores themselves.
    let exact = index.query(queries.view(), SearchMode::Exact).unwrap();
    let worst = exact
        .iter()
        .zip(expected.iter())
        .map(|(r, e)| ((r.score - e) / e).abs())
        .fold(0.0, f64::max);
    println!(
        "exact mode: max relative score difference {worst:.2e} over {} queries",
        exact.len()
    );
    assert!(
        worst <= 1e-4,
        "exact scores differ from scikit-learn by up to {worst:e} (relative)"
    );

    // The verdicts at the default threshold (and at 0.01 for information), exact and
    // with HNSW at a few ef values so the trade-off is visible; the configured search
    // mode must agree with scikit-learn on at least 99.9 % of them.
    let offsets = ["0.001", "0.01"].map(|c| (c, meta["offsets"][c].as_f64().unwrap()));
    let agreement = |results: &[oodgate_lof::QueryResult], offset: f64| {
        results
            .iter()
            .zip(expected.iter())
            .filter(|(r, e)| (r.score < offset) == (**e < offset))
            .count() as f64
            / results.len() as f64
    };
    let exact_agreement = agreement(&exact, offsets[0].1);
    println!(
        "exact mode: verdicts agree with scikit-learn on {:.3} % of queries at contamination 0.001",
        100.0 * exact_agreement
    );
    let mut default_agreement = match config.index.search {
        oodgate_server::config::SearchMode::Exact => exact_agreement,
        oodgate_server::config::SearchMode::Hnsw => 0.0,
    };
    for ef in [32, 64, 128, 256] {
        let started = std::time::Instant::now();
        let hnsw = index
            .query(queries.view(), SearchMode::Hnsw { ef })
            .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        for (c, offset) in offsets {
            let agree = agreement(&hnsw, offset);
            println!(
                "HNSW mode (ef {ef}, {seconds:.2} s): verdicts agree with scikit-learn on {:.3} % of queries at contamination {c}",
                100.0 * agree
            );
            if config.index.search == oodgate_server::config::SearchMode::Hnsw
                && ef == config.index.ef
                && c == "0.001"
            {
                default_agreement = agree;
            }
        }
    }
    assert!(
        default_agreement >= 0.999,
        "verdict agreement of the default search ({:?}, ef {}): {default_agreement} < 0.999",
        config.index.search,
        config.index.ef
    );
}
