//! The int8 variant of the default gate (`model.variant = "int8"`): it loads, says so in
//! its model info, classifies MNIST digits, and its LOF index is its own file, built from
//! its own embeddings (another hash than fp32's). A variant whose file is missing stops
//! the start with an error naming the setting and the path. scikit-learn agrees with
//! its index as with fp32's.

use std::time::Duration;

use ndarray::{Array1, Array2};
use oodgate_e2e::{
    InProcessServer, digits_request, export_and_run_sklearn, mnist_test, read_npy, runtime,
    serve_expecting_failure, workspace,
};
use oodgate_lof::{LofIndex, SearchMode};
use oodgate_proto::v1;
use oodgate_server::config::Config;
use oodgate_server::load::index_path;
use oodgate_server::{ModelFiles, ModelVariant};

#[test]
fn the_int8_variant_serves_with_its_own_index() {
    let server = InProcessServer::start(&[("OODGATE_MODEL__VARIANT", "int8")]);
    let mnist = mnist_test();
    let (info, answer) = runtime().block_on(async {
        let mut client = server.client().await;
        let info = client
            .get_model_info(v1::GetModelInfoRequest::default())
            .await
            .expect("GetModelInfo")
            .into_inner();
        let answer = client
            .detect(digits_request(&mnist, "d", 0, 200))
            .await
            .expect("Detect")
            .into_inner();
        (info, answer)
    });

    let config = Config::default();
    let dir = workspace().join(&config.model.dir);
    let fp32 = ModelFiles::load(&dir).unwrap();
    let int8 = ModelFiles::load_variant(&dir, ModelVariant::Int8).unwrap();
    assert_eq!(info.model_variant, "int8");
    let http: serde_json::Value = serde_json::from_str(&server.http_get("/v1/model")).unwrap();
    assert_eq!(http["model_variant"], "int8");
    assert_eq!(info.model_sha256, int8.sha256);
    assert_ne!(int8.sha256, fp32.sha256);
    assert!(int8.onnx_path.ends_with("model.int8.onnx"));

    // Most MNIST test digits are classified (the default threshold rejects a few per
    // cent of them), and those nearly always right.
    use v1::verdict::Outcome;
    assert_eq!(answer.verdicts.len(), 200);
    let classified: Vec<(usize, u32)> = answer
        .verdicts
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match &v.outcome {
            Some(Outcome::Classify(c)) => Some((i, c.class_index)),
            _ => None,
        })
        .collect();
    let right = classified
        .iter()
        .filter(|(i, class)| *class == u32::from(mnist.labels[*i]))
        .count();
    assert!(
        classified.len() >= 185,
        "{} of 200 classified",
        classified.len()
    );
    assert!(
        right + 2 >= classified.len(),
        "{right} of {} classified right",
        classified.len()
    );

    // Its index: another file than fp32's, tied to the int8 model's hash.
    let int8_index = workspace().join(index_path(&config, &int8));
    let fp32_index = workspace().join(index_path(&config, &fp32));
    assert_ne!(int8_index, fp32_index);
    let index = LofIndex::load(&int8_index, &int8.sha256)
        .unwrap_or_else(|e| panic!("{}: {e}", int8_index.display()));
    assert_eq!(index.len() as u64, info.index_size);
    assert!(
        LofIndex::load(&int8_index, &fp32.sha256).is_err(),
        "the int8 index loads for the fp32 model"
    );
    // Built from the int8 model's embeddings: close to fp32's, not a copy of them.
    let fp32_index = LofIndex::load(&fp32_index, &fp32.sha256).unwrap();
    let (a, b) = (index.embeddings(), fp32_index.embeddings());
    assert_eq!(a.dim(), b.dim());
    let largest = (&a - &b).iter().fold(0.0f32, |m, d| m.max(d.abs()));
    assert!(
        largest > 0.0 && largest < 0.5,
        "largest difference {largest}"
    );
}

#[test]
fn a_missing_variant_names_the_setting_and_the_file() {
    // models/mnist-plain has no int8 model.
    let (status, log) = serve_expecting_failure(
        &[],
        &[
            ("OODGATE_GATES__PLAIN__DIR", "models/mnist-plain"),
            ("OODGATE_GATES__PLAIN__VARIANT", "int8"),
        ],
        Duration::from_secs(120),
    );
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{log}");
    assert!(
        log.contains("gates.plain.variant = \"int8\"")
            && log.contains("models/mnist-plain/model.int8.onnx"),
        "{log}"
    );

    let (status, log) = serve_expecting_failure(
        &[],
        &[("OODGATE_MODEL__VARIANT", "int4")],
        Duration::from_secs(60),
    );
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{log}");
    assert!(
        log.contains("model.variant") && log.contains("int4"),
        "{log}"
    );
}

/// scikit-learn's `LocalOutlierFactor(novelty=True)` on the int8 model's own training
/// and test embeddings gives the scores and offset the int8 index gives.
#[test]
fn the_int8_index_matches_scikit_learn() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    export_and_run_sklearn(out, &[("OODGATE_MODEL__VARIANT", "int8")], &["0.01"]);
    let sklearn = out.join("sklearn");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sklearn.join("sklearn.json")).unwrap()).unwrap();

    let config = Config::default();
    let int8 = ModelFiles::load_variant(&root.join(&config.model.dir), ModelVariant::Int8).unwrap();
    let index = LofIndex::load(&root.join(index_path(&config, &int8)), &int8.sha256).unwrap();
    let train: Array2<f32> = read_npy(&out.join("train.npy"));
    assert_eq!(train, index.embeddings(), "export used another index");
    let queries: Array2<f32> = read_npy(&out.join("queries.npy"));
    let expected: Array1<f64> = read_npy(&sklearn.join("scores.npy"));
    assert_eq!(queries.nrows(), 30_000);

    let ours = index.offset(0.01).unwrap();
    let theirs = meta["offsets"]["0.01"].as_f64().unwrap();
    assert!(
        ((ours - theirs) / theirs).abs() <= 1e-6,
        "offset {ours} vs {theirs}"
    );
    let exact = index.query(queries.view(), SearchMode::Exact).unwrap();
    let worst = exact
        .iter()
        .zip(expected.iter())
        .map(|(r, e)| ((r.score - e) / e).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-4,
        "exact scores differ from scikit-learn by up to {worst:e}"
    );
}
