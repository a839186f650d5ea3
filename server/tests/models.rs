//! Every committed model loads through ONNX Runtime (load-dynamic) and meets the
//! test accuracy its card promises, on MNIST test read and preprocessed in Rust.

use std::path::{Path, PathBuf};

use oodgate_datasets::{DataDir, Split};
use oodgate_server::ModelFiles;
use oodgate_server::runtime;
use oodgate_server::{Embedder, SessionOptions, embed_dataset};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn each_committed_model_meets_its_card_accuracy() {
    let env =
        runtime::environment(None).expect("ONNX Runtime: set ORT_DYLIB_PATH (make test does)");
    let data = DataDir::from_env().expect("dataset folder");
    let test = data
        .mnist(Split::Test)
        .expect("MNIST test set: run `make data` or set OODGATE_DATA_DIR");
    let models = oodgate_server::model_dirs(&workspace().join("models")).expect("models/ folder");
    assert!(
        models.len() >= 2,
        "expected the L2 and plain models under models/, found {models:?}"
    );

    for dir in models {
        let files = ModelFiles::load(&dir).unwrap();
        let embedder = Embedder::load(env, &files.onnx_path, SessionOptions::default()).unwrap();
        assert_eq!(
            files.classes.len(),
            embedder.classes,
            "{}: classes.json vs model",
            files.name
        );

        let out = embed_dataset(&embedder, &test, false).unwrap();
        let correct = out
            .probabilities
            .chunks(embedder.classes)
            .zip(&test.labels)
            .filter(|(p, label)| oodgate_server::argmax(p).0 == usize::from(**label))
            .count();
        let accuracy = correct as f64 / test.len() as f64;
        let target = files
            .card_number("accuracy_target")
            .expect("card.accuracy_target");
        let keras = files
            .card_number("test_accuracy")
            .expect("card.test_accuracy");
        println!(
            "{}: accuracy {accuracy:.4} in Rust, {keras:.4} in Keras, target {target}",
            files.name
        );
        assert!(
            accuracy >= target,
            "{}: accuracy {accuracy} below the card's target {target}",
            files.name
        );
        // ONNX Runtime and TensorFlow round differently; a handful of borderline digits may flip.
        assert!(
            (accuracy - keras).abs() <= 0.0005,
            "{}: Rust {accuracy} vs Keras {keras}",
            files.name
        );
    }
}
