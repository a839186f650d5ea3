//! A user-style RGB model and its gate folder (`tests/python/make_rgb_model.py`): NCHW
//! input, ImageNet normalisation, center-crop, `embedding` and `logits` outputs.
//!
//! The model's signature is checked with ONNX Runtime from Python (the script's
//! build.json), not through `Embedder`, whose outputs are still the fixed
//! `embedding` + `probabilities`. Then the reference PNGs go through the server's float
//! preprocessing with the gate's settings, and the model must recognise them: the
//! settings in gate.toml are the ones it was trained with.

use std::path::Path;
use std::process::Command;

use ndarray::{Array1, Array4};
use ndarray_npy::WriteNpyExt;
use oodgate_e2e::{python, run, workspace};
use oodgate_server::preprocess::{
    Colour, FloatTransform, ImageInput, InputSpec, Layout, Limits, Resize, Transform, prepare,
};

/// What the script's gate.toml says, as the server's input spec.
const GATE_INPUT: InputSpec = InputSpec {
    layout: Layout::Nchw,
    height: 32,
    width: 32,
    channels: 3,
    transform: Transform::Float(FloatTransform {
        colour: Colour::Rgb,
        resize: Resize::CenterCrop {
            crop_fraction: 0.875,
        },
        scale: 255.0,
        mean: [0.485, 0.456, 0.406, 0.0],
        std: [0.229, 0.224, 0.225, 1.0],
    }),
};

fn json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sorted_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

#[test]
fn rgb_model_gate_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let gate = tmp.path().join("tinted-digits");
    let script = workspace().join("tests/python/make_rgb_model.py");
    println!(
        "{}",
        run(Command::new(python()).arg(&script).arg("--out").arg(&gate)).trim()
    );

    // The signature, as ONNX Runtime reads it: a symbolic batch, then NCHW 3x32x32.
    let build = json(&gate.join("build.json"));
    let input = &build["input"]["shape"];
    assert!(input[0].is_string(), "batch must be dynamic: {input}");
    assert_eq!(input.as_array().unwrap()[1..], [3, 32, 32], "{input}");
    assert_eq!(build["input"]["name"], "images");
    assert_eq!(build["outputs"]["embedding"][1], 64);
    assert_eq!(build["outputs"]["logits"][1], 10);
    assert!(build["keras_onnx_max_diff"].as_f64().unwrap() < 1e-4);

    let classes = json(&gate.join("classes.json"));
    let classes: Vec<&str> = classes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(classes, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    let toml = std::fs::read_to_string(gate.join("gate.toml")).unwrap();
    for line in [
        "colour = \"rgb\"",
        "resize = \"center-crop\"",
        "crop_fraction = 0.875",
        "logits = \"logits\"",
        "folder = \"reference\"",
    ] {
        assert!(toml.contains(line), "gate.toml lacks `{line}`:\n{toml}");
    }

    // The reference folder, in sorted class order, through the server's preprocessing.
    let class_dirs = sorted_entries(&gate.join("reference"));
    let names: Vec<String> = class_dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names, classes,
        "class subfolders in sorted order = the model's classes"
    );
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (label, dir) in class_dirs.iter().enumerate() {
        let files = sorted_entries(dir);
        assert_eq!(files.len(), 100, "{}", dir.display());
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let decoded = image::load_from_memory(&bytes).unwrap();
            // Not the model's size, so the center-crop resize is exercised.
            assert_eq!((decoded.width(), decoded.height()), (40, 36));
            let input = prepare(ImageInput::Encoded(&bytes), &GATE_INPUT, &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            pixels.extend(input);
            labels.push(label as i64);
        }
    }
    let n = labels.len();
    let inputs = Array4::from_shape_vec((n, 3, 32, 32), pixels).unwrap();
    let inputs_path = tmp.path().join("inputs.npy");
    let labels_path = tmp.path().join("labels.npy");
    inputs
        .write_npy(std::fs::File::create(&inputs_path).unwrap())
        .unwrap();
    Array1::from(labels)
        .write_npy(std::fs::File::create(&labels_path).unwrap())
        .unwrap();
    let scored = run(Command::new(python())
        .arg(&script)
        .arg("--score")
        .arg(&gate)
        .arg(&inputs_path)
        .arg(&labels_path));
    let scored: serde_json::Value = serde_json::from_str(scored.trim()).unwrap();
    let accuracy = scored["accuracy"].as_f64().unwrap();
    println!(
        "reference accuracy through the server's preprocessing: {accuracy:.3} (validation {:.3})",
        build["val_accuracy"].as_f64().unwrap()
    );
    // Held-out digits the model was never trained on; chance is 0.1.
    assert!(accuracy >= 0.7, "accuracy {accuracy}");
}
