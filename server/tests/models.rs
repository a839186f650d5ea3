//! Every committed model loads through ONNX Runtime (load-dynamic) and meets the
//! test accuracy its card promises, on the test set of the card's dataset (MNIST when
//! the card names none), read and preprocessed in Rust.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oodgate_datasets::{DataDir, Dataset, DatasetId, FASHION_MNIST_CLASSES, MNIST_CLASSES, Split};
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
    let mut tests: HashMap<DatasetId, Dataset> = HashMap::new();
    let models = oodgate_server::model_dirs(&workspace().join("models")).expect("models/ folder");
    assert!(
        models.len() >= 2,
        "expected the L2 and plain models under models/, found {models:?}"
    );

    for dir in models {
        let files = ModelFiles::load(&dir).unwrap();
        let (id, classes) = match files.card.get("dataset").map(|d| d.as_str()) {
            None | Some(Some("mnist")) => (DatasetId::Mnist, MNIST_CLASSES),
            Some(Some("fashion-mnist")) => (DatasetId::FashionMnist, FASHION_MNIST_CLASSES),
            Some(other) => panic!("{}: card dataset {other:?}", files.name),
        };
        assert_eq!(
            files.classes, classes,
            "{}: classes.json vs the dataset's classes",
            files.name
        );
        let test = tests.entry(id).or_insert_with(|| {
            data.load(id, Split::Test)
                .expect("test set: run `make data` or set OODGATE_DATA_DIR")
        });
        let embedder = Embedder::load(env, &files.onnx_path, SessionOptions::default()).unwrap();
        assert_eq!(
            files.classes.len(),
            embedder.classes,
            "{}: classes.json vs model",
            files.name
        );

        let out = embed_dataset(&embedder, test, false).unwrap();
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
        // ONNX Runtime and TensorFlow round differently; a handful of borderline images may flip.
        assert!(
            (accuracy - keras).abs() <= 0.0005,
            "{}: Rust {accuracy} vs Keras {keras}",
            files.name
        );
    }
}
