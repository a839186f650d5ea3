//! The "Gate your own model" walkthrough (docs/gate-your-own-model.md), done as a user
//! would: Fashion-MNIST *training* images written as PNG class folders (reference and
//! held-out calibration set), the project's Fashion-MNIST model copied in as "the user's
//! exported model", the page's own gate.toml, the real `oodgate index build` and
//! `oodgate serve` binaries, then the page's Python client and curl command against the
//! gate. Fashion-MNIST *test* garments and MNIST *test* digits only measure.
//!
//! Everything here is deterministic (exact neighbour search, fixed images), so the
//! bounds below only leave room for a retrained model.

use std::path::{Path, PathBuf};
use std::process::Command;

use oodgate_datasets::{Dataset, Split};
use oodgate_e2e::{Server, data, http_agent, mnist_test, python, run, workspace};
use serde_json::{Value, json};

const DOC: &str = include_str!("../../docs/gate-your-own-model.md");
const GATE: &str = "garments";
const REFERENCE_PER_CLASS: usize = 100;
const HOLDOUT_PER_CLASS: usize = 30;
/// Test images of each set sent through the gate.
const PROBES: usize = 1000;

/// The body of the page's fenced block in `lang` whose first line starts with `first`.
fn doc_block(lang: &str, first: &str) -> String {
    let mut blocks = DOC.split("```").skip(1).step_by(2);
    blocks
        .find_map(|block| {
            let body = block.strip_prefix(lang)?.strip_prefix('\n')?;
            body.starts_with(first).then(|| body.to_owned())
        })
        .unwrap_or_else(|| panic!("no ```{lang} block starting with {first:?} in the page"))
}

/// Writes one 28x28 gray image as a PNG file, creating its folder.
fn write_png(path: &Path, pixels: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("create folder");
    image::GrayImage::from_raw(28, 28, pixels.to_vec())
        .expect("28x28 pixels")
        .save(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The first `REFERENCE_PER_CLASS` training images of each class into `reference/<class>/`,
/// the next `HOLDOUT_PER_CLASS` into `holdout/<class>/`.
fn write_class_folders(gate: &Path, train: &Dataset, classes: &[String]) {
    let mut seen = vec![0usize; classes.len()];
    for i in 0..train.len() {
        let label = usize::from(train.labels[i]);
        let n = seen[label];
        let set = if n < REFERENCE_PER_CLASS {
            "reference"
        } else if n < REFERENCE_PER_CLASS + HOLDOUT_PER_CLASS {
            "holdout"
        } else {
            continue;
        };
        seen[label] += 1;
        let path = gate
            .join(set)
            .join(&classes[label])
            .join(format!("train-{i:05}.png"));
        write_png(&path, train.image(i));
    }
    assert!(
        seen.iter()
            .all(|&n| n == REFERENCE_PER_CLASS + HOLDOUT_PER_CLASS),
        "too few training images of some class: {seen:?}"
    );
}

/// The first `PROBES` images of `set` as `<dir>/<name>/<i>.png`: their paths and labels.
fn write_probes(dir: &Path, name: &str, set: &Dataset) -> Vec<(PathBuf, u8)> {
    (0..PROBES)
        .map(|i| {
            let path = dir.join(name).join(format!("{i:04}.png"));
            write_png(&path, set.image(i));
            (path, set.labels[i])
        })
        .collect()
}

/// The share of `items` for which `ok` holds.
fn share<T>(items: &[T], ok: impl Fn(&T) -> bool) -> f64 {
    items.iter().filter(|item| ok(item)).count() as f64 / items.len() as f64
}

/// POST `body` to the gate's HTTP detect route; the JSON answer (status 200 asserted).
fn http_detect(server: &Server, body: &Value) -> Value {
    let url = format!("http://{}/v1/gates/{GATE}/detect", server.http);
    let mut response = http_agent(None)
        .post(&url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let text = response.body_mut().read_to_string().expect("body");
    assert_eq!(response.status().as_u16(), 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn the_walkthrough_gates_a_users_model_end_to_end() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let gate = tmp.path().join(GATE);
    std::fs::create_dir_all(&gate).expect("gate folder");

    // Step 1, "the user's exported model": the project's Fashion-MNIST model. Its class
    // names become folder names, and "T-shirt/top" cannot be one.
    let fashion = workspace().join("models/fashion-cosface");
    std::fs::copy(fashion.join("model.onnx"), gate.join("model.onnx")).expect("copy model");
    let classes: Vec<String> =
        serde_json::from_slice(&std::fs::read(fashion.join("classes.json")).expect("classes"))
            .expect("a JSON list");
    let classes: Vec<String> = classes.iter().map(|c| c.replace('/', "-")).collect();
    std::fs::write(
        gate.join("classes.json"),
        serde_json::to_string(&classes).unwrap(),
    )
    .expect("classes.json");

    // Step 2: the page's gate.toml and the class folders it names.
    let gate_toml = doc_block("toml", "# garments/gate.toml");
    assert!(
        gate_toml.contains("[calibration]") && gate_toml.contains("folder = \"holdout\""),
        "the page's gate.toml lost its calibration set:\n{gate_toml}"
    );
    std::fs::write(gate.join("gate.toml"), &gate_toml).expect("gate.toml");
    let datasets = data();
    let train = datasets
        .fashion_mnist(Split::Train)
        .expect("Fashion-MNIST train");
    write_class_folders(&gate, &train, &classes);
    let fashion_test = datasets
        .fashion_mnist(Split::Test)
        .expect("Fashion-MNIST test");
    let garments = write_probes(tmp.path(), "fashion-test", &fashion_test);
    let digits = write_probes(tmp.path(), "mnist-test", &mnist_test());

    // Step 3: the index, in the gate folder.
    let built = run(Command::new(oodgate_e2e::binary("oodgate"))
        .current_dir(workspace())
        .args(["index", "build", "--gate"])
        .arg(&gate));
    println!("{built}");
    assert!(gate.join("index.lof").is_file(), "no index.lof:\n{built}");
    let reference_count = REFERENCE_PER_CLASS * classes.len();
    assert!(
        built.contains(&format!("({reference_count} items,")),
        "{built}"
    );
    // "calibration: 300 items; default threshold rejects 0.67 % of them (asked 1.00 %; ...)"
    let calibration = built
        .lines()
        .find(|l| l.starts_with("calibration:"))
        .unwrap_or_else(|| panic!("no calibration line:\n{built}"));
    assert!(
        calibration.starts_with(&format!(
            "calibration: {} items;",
            HOLDOUT_PER_CLASS * classes.len()
        )),
        "{calibration}"
    );
    let rejected: f64 = calibration
        .split("rejects ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no share in {calibration:?}"));
    assert!(rejected <= 1.0, "{calibration}");

    // Step 4: served beside the default gate, from the environment.
    let gate_dir = gate.to_str().expect("a UTF-8 path");
    let server = Server::start(&[("OODGATE_GATES__GARMENTS__DIR", gate_dir)]);

    // The page's stub command, then its client (the page shows the file as it is).
    let client = workspace().join("tests/python/walkthrough_client.py");
    let script = std::fs::read_to_string(&client).expect("the client script");
    assert_eq!(
        doc_block("python", "\"\"\"Send image files"),
        script,
        "the page's Python client differs from {}",
        client.display()
    );
    let stubs = tmp.path().join("stubs");
    std::fs::create_dir_all(&stubs).expect("stubs folder");
    let protoc = doc_block("sh", "pip install grpcio");
    assert!(
        protoc.contains("python -m grpc_tools.protoc -I proto/proto --python_out=stubs --grpc_python_out=stubs oodgate/v1/detector.proto"),
        "{protoc}"
    );
    run(Command::new(python())
        .current_dir(workspace())
        .args(["-m", "grpc_tools.protoc", "-I", "proto/proto"])
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg("oodgate/v1/detector.proto"));
    let addr = server
        .endpoint
        .strip_prefix("http://")
        .expect("an http endpoint");
    let probes: Vec<&(PathBuf, u8)> = garments.iter().chain(&digits).collect();
    let output = run(Command::new(python())
        .env("PYTHONPATH", &stubs)
        .arg(&client)
        .args(["--addr", addr, "--gate", GATE])
        .args(probes.iter().map(|(path, _)| path)));
    let mut lines = output
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}\n{output}")));

    let info = lines.next().expect("the model info line");
    assert_eq!(info["gate"], GATE, "{info}");
    assert_eq!(info["model"], GATE, "the name in gate.toml: {info}");
    assert_eq!(info["classes"], json!(classes), "{info}");
    assert_eq!(info["index_size"], reference_count, "{info}");

    // Every image gets a verdict, in order, and none is an error.
    let verdicts: Vec<Value> = lines.collect();
    assert_eq!(verdicts.len(), probes.len(), "{output}");
    for (verdict, (path, _)) in verdicts.iter().zip(&probes) {
        assert_eq!(verdict["id"], path.to_str().unwrap(), "{verdict}");
        assert!(
            matches!(verdict["outcome"].as_str(), Some("classify" | "reject")),
            "{verdict}"
        );
    }
    let (on_garments, on_digits) = verdicts.split_at(PROBES);
    let judged_garments: Vec<(&Value, u8)> = on_garments
        .iter()
        .zip(garments.iter().map(|(_, label)| *label))
        .collect();
    // Calibrated to reject 1 % of held-out garments: measured 99.3 % accepted. The
    // model's test accuracy is 0.93 (card.json): measured 93.4 % accepted and right.
    // 0.90 and 0.80 leave room for a retrained model and still fail when preprocessing,
    // the class order or the calibration goes wrong.
    let accepted = share(&judged_garments, |(v, _)| v["outcome"] == "classify");
    let right = share(&judged_garments, |(v, label)| {
        v["outcome"] == "classify" && v["class_name"] == classes[usize::from(*label)]
    });
    // The digits are far from every garment: measured 100 % rejected.
    let digits_rejected = share(on_digits, |v| v["outcome"] == "reject");
    println!(
        "Fashion-MNIST test: {:.1} % accepted, {:.1} % accepted and right; MNIST test: {:.1} % rejected",
        100.0 * accepted,
        100.0 * right,
        100.0 * digits_rejected
    );
    assert!(accepted >= 0.90, "garments accepted: {accepted}");
    assert!(right >= 0.80, "garments accepted and right: {right}");
    assert!(
        digits_rejected >= 0.90,
        "digits rejected: {digits_rejected}"
    );

    // The calibration fixed the default threshold: not the one the contamination alone
    // gives (asked for explicitly here).
    let boot = &garments[0];
    assert_eq!(classes[usize::from(boot.1)], "Ankle boot");
    let boot_png = std::fs::read(&boot.0).expect("boot.png");
    let image = json!([{ "id": "boot", "encoded_base64": base64_encode(&boot_png) }]);
    let by_default = http_detect(&server, &json!({ "images": image }));
    let by_contamination = http_detect(
        &server,
        &json!({ "images": image, "contamination": info_contamination(&server) }),
    );
    let default_threshold = &by_default["verdicts"][0]["lof"]["threshold"];
    assert_eq!(default_threshold, &info["default_threshold"]);
    let contamination_threshold = &by_contamination["verdicts"][0]["lof"]["threshold"];
    assert_ne!(default_threshold, contamination_threshold, "{by_default}");
    assert_ne!(
        by_default["verdicts"][0]["distance"]["threshold"],
        by_contamination["verdicts"][0]["distance"]["threshold"],
        "{by_default}"
    );

    // Model info shows the calibration and the reference set.
    let model: Value = serde_json::from_str(&server.http_get(&format!("/v1/gates/{GATE}/model")))
        .expect("model info JSON");
    assert_eq!(model["calibration_size"], 300, "{model}");
    assert_eq!(model["calibration_false_rejection_rate"], 0.01, "{model}");
    let share = model["calibration_rejected"].as_f64().expect("a share");
    assert!(share > 0.0 && share <= 0.01, "{model}");
    assert!(
        model["reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("folder ") && r.ends_with("reference")),
        "{model}"
    );
    assert_eq!(
        model["reference_fingerprint"].as_str().map(str::len),
        Some(64)
    );

    // The page's curl command, as written but for the port.
    let curl = doc_block(
        "sh",
        "curl -s http://127.0.0.1:8080/v1/gates/garments/detect",
    )
    .replace("127.0.0.1:8080", &server.http);
    std::fs::write(tmp.path().join("boot.png"), &boot_png).expect("boot.png");
    let answer = run(Command::new("sh")
        .current_dir(tmp.path())
        .args(["-c", &curl]));
    let answer: Value =
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}\n{curl}"));
    assert_eq!(answer["gate"], GATE, "{answer}");
    assert_eq!(answer["verdicts"][0]["id"], "boot", "{answer}");
    assert_eq!(answer["verdicts"][0]["outcome"], "classify", "{answer}");
    assert_eq!(
        answer["verdicts"][0]["class_name"], "Ankle boot",
        "{answer}"
    );

    // A rejection's neighbours are reference images: each is served back as the very
    // file of reference/ it came from, in the folder of its class.
    let rejections: Vec<&Value> = on_digits
        .iter()
        .filter(|v| v["outcome"] == "reject")
        .take(5)
        .collect();
    assert!(!rejections.is_empty());
    for rejection in rejections {
        let neighbours = rejection["neighbours"].as_array().expect("neighbours");
        assert_eq!(neighbours.len(), 20, "k neighbours: {rejection}");
        let nearest = &neighbours[0];
        let id = nearest["training_id"].as_u64().expect("a training id");
        let url = format!("http://{}/v1/gates/{GATE}/training/{id}", server.http);
        let mut response = http_agent(None)
            .get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status().as_u16(), 200, "{url}");
        let source = response
            .headers()
            .get("x-oodgate-source")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no x-oodgate-source for {url}"))
            .to_owned();
        let bytes = response.body_mut().read_to_vec().expect("the image");
        let (class, _) = source.split_once('/').expect("<class>/<file>");
        assert_eq!(nearest["label_name"], class, "{source}: {nearest}");
        let file = gate.join("reference").join(&source);
        assert_eq!(
            std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
            bytes,
            "{url} is not {}",
            file.display()
        );
    }
    println!("walkthrough: {:.1} s", started.elapsed().as_secs_f64());
}

/// The gate's default contamination (its model info over HTTP).
fn info_contamination(server: &Server) -> f64 {
    let info: Value = serde_json::from_str(&server.http_get(&format!("/v1/gates/{GATE}/model")))
        .expect("model info JSON");
    info["default_contamination"]
        .as_f64()
        .unwrap_or_else(|| panic!("no default_contamination: {info}"))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
