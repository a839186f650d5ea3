//! A gate folder that is wrong in some way, through the commands a user runs: `oodgate
//! index build --gate DIR` and `oodgate serve` with the folder as a gate. Each mistake
//! is one `oodgate: ` line on stderr naming the file and the field (or the folder and
//! what is in it), and exit status 1; never a panic.
//!
//! The folders are the Fashion-MNIST gate's model and classes (`models/fashion-cosface`)
//! with a gate.toml of the test's. A request for a gate the server does not have is
//! NOT_FOUND listing the gates: `tests/tests/gates.rs` checks that.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use oodgate_datasets::{DatasetId, Split};
use oodgate_e2e::{binary, data, python, run, serve_expecting_failure, workspace};
use oodgate_proto::v1;

/// The Fashion-MNIST gate, whose model and classes the test folders copy.
const FASHION: &str = "models/fashion-cosface";
/// Longest a failing start may take (loading the runtime, the digits gate and this one).
const TIMEOUT: Duration = Duration::from_secs(90);

/// A gate folder: the Fashion-MNIST model and classes, and `gate_toml`.
fn gate(gate_toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for file in ["model.onnx", "classes.json"] {
        let from = workspace().join(FASHION).join(file);
        std::fs::copy(&from, dir.path().join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    std::fs::write(dir.path().join("gate.toml"), gate_toml).expect("gate.toml");
    dir
}

/// The Fashion-MNIST gate's own gate.toml, each `(from, to)` replaced (each must occur).
fn fashion_toml(replacements: &[(&str, &str)]) -> String {
    let path = workspace().join(FASHION).join("gate.toml");
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    for (from, to) in replacements {
        assert!(text.contains(from), "{} has no {from:?}", path.display());
        text = text.replacen(from, to, 1);
    }
    text
}

/// The gate.toml of a gate whose reference set is its folder `reference/`.
fn folder_reference_toml() -> String {
    fashion_toml(&[("dataset = \"fashion-mnist\"", "folder = \"reference\"")])
}

/// Writes `per_class` Fashion-MNIST *training* garments of each class as PNGs into
/// `dir/<class name>/` (not class 0, "T-shirt/top", which is no folder name); how many.
fn garments(dir: &Path, per_class: usize) -> usize {
    let train = data()
        .load(DatasetId::FashionMnist, Split::Train)
        .expect("Fashion-MNIST train");
    let mut written = 0;
    for class in 1..train.class_names.len() {
        let folder = dir.join(&train.class_names[class]);
        std::fs::create_dir_all(&folder).expect("class folder");
        let items = (0..train.len()).filter(|&i| usize::from(train.label(i)) == class);
        for (n, i) in items.take(per_class).enumerate() {
            let image = image::GrayImage::from_raw(28, 28, train.image(i).to_vec()).unwrap();
            image.save(folder.join(format!("{n:03}.png"))).unwrap();
            written += 1;
        }
    }
    written
}

/// `oodgate index build --gate DIR [args]`, run from the workspace as a user would.
fn index_build(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary("oodgate"))
        .current_dir(workspace())
        .args(["index", "build", "--gate"])
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("start oodgate index build")
}

/// The one error line of a command that failed; panics unless it exited with status 1
/// and printed exactly one `oodgate: ` line, the last, with every part of `says`, and no
/// panic.
fn error_line(case: &str, status: Option<std::process::ExitStatus>, stderr: &str, says: &[&str]) {
    let status = status.unwrap_or_else(|| panic!("{case}: still running (killed):\n{stderr}"));
    assert_eq!(status.code(), Some(1), "{case}: {status}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{case}: a panic:\n{stderr}");
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("oodgate: "))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "{case}: not one `oodgate: ` line:\n{stderr}"
    );
    let line = errors[0];
    assert_eq!(
        stderr.trim_end().lines().last(),
        Some(line),
        "{case}: the error spans lines or is not the last:\n{stderr}"
    );
    for part in says {
        assert!(
            line.contains(part),
            "{case}: {line:?} does not say {part:?}"
        );
    }
    println!("{case}: {line}");
}

/// `oodgate index build --gate DIR` fails saying `says`.
fn build_fails(dir: &Path, says: &[&str]) {
    let output = index_build(dir, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    error_line(
        &format!("index build --gate {}", dir.display()),
        Some(output.status),
        &stderr,
        says,
    );
}

/// `oodgate serve` with the digits gate and DIR as the gate "bad" fails at start-up
/// saying `says` (and which gate).
fn serve_fails(dir: &Path, says: &[&str]) {
    let (status, stderr) = serve_expecting_failure(
        &[],
        &[("OODGATE_GATES__BAD__DIR", dir.to_str().expect("UTF-8"))],
        TIMEOUT,
    );
    let mut says = says.to_vec();
    says.push("gate bad");
    error_line(
        &format!("serve with gate bad = {}", dir.display()),
        status,
        &stderr,
        &says,
    );
}

fn toml_path(dir: &Path) -> String {
    dir.join("gate.toml").display().to_string()
}

#[test]
fn an_unknown_key() {
    let dir = gate(&fashion_toml(&[(
        "height = 28",
        "height = 28\nhieght = 28",
    )]));
    let path = toml_path(dir.path());
    let says = [path.as_str(), "unknown field `hieght`", "line 8"];
    build_fails(dir.path(), &says);
    serve_fails(dir.path(), &says);

    let dir = gate(&fashion_toml(&[("[lof]", "[lofs]")]));
    let path = toml_path(dir.path());
    build_fails(dir.path(), &[&path, "unknown field `lofs`"]);
}

#[test]
fn a_mean_or_std_not_matching_the_channels() {
    // The model's channels (1) from the ONNX file: colour is not given.
    let dir = gate(&fashion_toml(&[
        ("colour = \"gray\"\n", ""),
        ("mean = [0.0]", "mean = [0.485, 0.456, 0.406]"),
        ("std = [1.0]", "std = [0.229, 0.224, 0.225]"),
    ]));
    let path = toml_path(dir.path());
    let says = [path.as_str(), "input.mean", "has 3 values", "1 channels"];
    build_fails(dir.path(), &says);
    serve_fails(dir.path(), &says);

    // The channels from colour: caught before the model is opened.
    let dir = gate(&fashion_toml(&[
        ("mean = [0.0]", "mean = [0.5, 0.5, 0.5]"),
        ("std = [1.0]", "std = [0.5, 0.5, 0.5]"),
    ]));
    let path = toml_path(dir.path());
    build_fails(
        dir.path(),
        &[&path, "input.mean", "has 3 values", "1 channels"],
    );

    // Mean and std of different lengths.
    let dir = gate(&fashion_toml(&[
        ("colour = \"gray\"\n", ""),
        ("std = [1.0]", "std = [1.0, 1.0]"),
    ]));
    let path = toml_path(dir.path());
    build_fails(
        dir.path(),
        &[&path, "input.std", "has 2 values", "input.mean has 1"],
    );
}

#[test]
fn an_output_that_does_not_exist() {
    let dir = gate(&fashion_toml(&[(
        "embedding = \"embedding\"",
        "embedding = \"nope\"",
    )]));
    let path = toml_path(dir.path());
    let model = dir.path().join("model.onnx").display().to_string();
    let says = [
        path.as_str(),
        "outputs.embedding",
        "no output named `nope`",
        "(outputs: embedding, probabilities)",
        model.as_str(),
    ];
    build_fails(dir.path(), &says);
    serve_fails(dir.path(), &says);

    let dir = gate(&fashion_toml(&[(
        "probabilities = \"probabilities\"",
        "logits = \"scores\"",
    )]));
    let path = toml_path(dir.path());
    build_fails(
        dir.path(),
        &[&path, "outputs.logits", "no output named `scores`"],
    );
}

#[test]
fn an_embedding_output_that_is_not_2d() {
    let dir = gate(&fashion_toml(&[]));
    let model = dir.path().join("model.onnx");
    let script = workspace().join("tests/python/make_4d_embedding_model.py");
    run(Command::new(python()).arg(&script).arg(&model));
    let path = toml_path(dir.path());
    let model = model.display().to_string();
    let says = [
        path.as_str(),
        "outputs.embedding",
        "output `embedding` must be a 2-D float32 [N, D]",
        "[-1, 28, 28, 1]",
        model.as_str(),
    ];
    build_fails(dir.path(), &says);
    serve_fails(dir.path(), &says);
}

#[test]
fn a_reference_folder_without_images() {
    let dir = gate(&folder_reference_toml());
    let path = toml_path(dir.path());
    let folder = dir.path().join("reference");
    let shown = folder.display().to_string();
    let field = format!("{path}: reference.folder: {shown}");
    // No folder at all.
    build_fails(dir.path(), &[&field, "No such file or directory"]);

    // Class folders, no images in them.
    for class in ["Trouser", "Bag"] {
        std::fs::create_dir_all(folder.join(class)).unwrap();
    }
    let says = [field.as_str(), "no images found"];
    build_fails(dir.path(), &says);
    serve_fails(dir.path(), &says);

    // Fewer images than LOF's k needs (k = 20 in the gate's [lof]).
    let count = garments(&folder, 2);
    assert_eq!(count, 18);
    build_fails(
        dir.path(),
        &[
            &format!("{path}: reference.folder: 18 items"),
            "k = 20",
            "lof.k",
            "at least 21",
        ],
    );
    // A set given on the command line is named as such.
    let output = index_build(
        dir.path(),
        &[
            "--reference",
            &format!("folder:{}", folder.join("Bag").display()),
        ],
    );
    error_line(
        "index build --reference folder:<a class folder>",
        Some(output.status),
        &String::from_utf8_lossy(&output.stderr),
        &["--reference", "no images found"],
    );
}

/// The index's provenance (JSON) as the artifact records it.
fn provenance(index: &Path, model: &Path) -> serde_json::Value {
    let sha256 = oodgate_server::ModelFiles::load(model)
        .expect("the gate folder")
        .sha256;
    oodgate_lof::LofIndex::load_with_provenance(index, &sha256)
        .unwrap_or_else(|e| panic!("{}: {e}", index.display()))
        .1
        .expect("a provenance")
}

#[test]
fn unreadable_reference_images_are_listed_or_skipped() {
    let dir = gate(&folder_reference_toml());
    let folder = dir.path().join("reference");
    let good = garments(&folder, 3);
    assert_eq!(good, 27);
    // Junk named as a PNG, and a PNG cut in half.
    std::fs::write(folder.join("Trouser/junk.png"), b"not an image at all").unwrap();
    let png = std::fs::read(folder.join("Bag/000.png")).unwrap();
    std::fs::write(folder.join("Bag/truncated.png"), &png[..png.len() / 2]).unwrap();
    let path = toml_path(dir.path());
    let says = [
        path.as_str(),
        "reference.folder",
        "2 of 29 images are unreadable",
        "Trouser/junk.png",
        "Bag/truncated.png",
        "--skip-unreadable",
    ];
    build_fails(dir.path(), &says);
    serve_fails(dir.path(), &says);
    assert!(
        !dir.path().join("index.lof").exists(),
        "a refused build writes no index"
    );

    let output = index_build(dir.path(), &["--skip-unreadable"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    println!("{stdout}");
    assert!(
        stdout.contains("(27 items,") && stdout.contains("; 2 unreadable images skipped"),
        "{stdout}"
    );
    assert!(
        stderr.contains("unreadable reference images left out") && stderr.contains("skipped=2"),
        "{stderr}"
    );
    let index = dir.path().join("index.lof");
    let recorded = &provenance(&index, dir.path())["reference"];
    assert_eq!(recorded["count"], 27, "{recorded}");
    let skipped: Vec<&str> = recorded["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("no skipped list: {recorded}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].starts_with("Bag/truncated.png: "), "{skipped:?}");
    assert!(skipped[1].starts_with("Trouser/junk.png: "), "{skipped:?}");
    let paths = recorded["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 27);
    assert!(!paths.iter().any(|p| p.as_str().unwrap().contains("junk")));

    // The index built without them serves: 27 reference images.
    let server =
        oodgate_e2e::Server::start(&[("OODGATE_GATES__BAD__DIR", dir.path().to_str().unwrap())]);
    let info = oodgate_e2e::runtime().block_on(async {
        server
            .client()
            .await
            .get_model_info(v1::GetModelInfoRequest { gate: "bad".into() })
            .await
            .expect("the gate's model info")
            .into_inner()
    });
    assert_eq!(info.index_size, 27);
    assert_eq!(info.model_name, "fashion");
}
