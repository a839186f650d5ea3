//! `oodgate serve` that cannot start: each failure is ONE clear line on stderr
//! (`oodgate: ...`, naming what is wrong) and a non-zero exit, promptly, whether it
//! happens before the ports are bound (configuration) or after (the model and index
//! load in the background while the ports already listen).

use std::path::Path;
use std::time::{Duration, Instant};

use oodgate_e2e::{default_index, serve_expecting_failure, workspace, write};

/// Longest a failing start may take (loading the runtime and the model included).
const TIMEOUT: Duration = Duration::from_secs(60);

fn ort() -> (&'static str, String) {
    (
        "ORT_DYLIB_PATH",
        std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (make test sets it)"),
    )
}

/// What one failing start showed: the error line, whether the ports were bound first,
/// and every way it fell short of "exit 1, one clear `oodgate: ` line naming the problem".
struct Failure {
    #[allow(dead_code)]
    line: String,
    bound: bool,
    problems: Vec<String>,
}

/// Runs `oodgate [args] serve` with `settings` and checks the failure: exit code 1,
/// exactly one `oodgate: ` line, the last one on stderr, saying every part of `says`,
/// saying nothing twice, no panic.
fn fails(args: &[&str], settings: &[(&str, &str)], says: &[&str]) -> Failure {
    let started = Instant::now();
    let (status, stderr) = serve_expecting_failure(args, settings, TIMEOUT);
    let took = started.elapsed();
    let case = format!("{args:?} {settings:?}");
    let status = status.unwrap_or_else(|| {
        panic!("{case}: still running after {TIMEOUT:?} (killed); expected a start-up failure saying {says:?}:\n{stderr}")
    });
    let mut problems = Vec::new();
    if status.code() != Some(1) {
        problems.push(format!("{case}: exit status {status}"));
    }
    if stderr.contains("panicked") {
        problems.push(format!("{case}: a panic instead of an error:\n{stderr}"));
    }
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("oodgate: "))
        .collect();
    let line = errors.first().copied().unwrap_or("").to_owned();
    if errors.len() != 1 {
        problems.push(format!(
            "{case}: {} `oodgate: ` lines:\n{stderr}",
            errors.len()
        ));
    }
    let at = if stderr.starts_with("oodgate: ") {
        Some(0)
    } else {
        stderr.find("\noodgate: ").map(|at| at + 1)
    };
    if let Some(at) = at {
        let rest = stderr[at..].trim_end();
        if rest.lines().count() > 1 {
            problems.push(format!(
                "{case}: the error spans {} lines:\n{rest}",
                rest.lines().count()
            ));
        }
    }
    for part in says {
        if !line.contains(part) {
            problems.push(format!("{case}: {line:?} does not say {part:?}"));
        }
    }
    // The cause chain printed once: no part of it (paths, messages) repeated.
    let mut seen = std::collections::HashSet::new();
    for part in line.trim_start_matches("oodgate: ").split(": ") {
        if part.len() >= 12 && !seen.insert(part.trim()) {
            problems.push(format!("{case}: {part:?} said twice in {line:?}"));
            break;
        }
    }
    let bound = stderr.contains("gRPC listening");
    println!(
        "{:>6.2} s, ports bound first: {bound:5}: {line}",
        took.as_secs_f64()
    );
    Failure {
        line,
        bound,
        problems,
    }
}

/// Fails the test with every problem of `failures` at once.
fn assert_clear(failures: &[Failure]) {
    let problems: Vec<_> = failures
        .iter()
        .flat_map(|f| f.problems.iter().cloned())
        .collect();
    assert!(
        problems.is_empty(),
        "{} problems:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn missing_or_wrong_onnx_runtime_library() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = vec![fails(
        &[],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
        &[
            "ONNX Runtime library",
            "/nonexistent/libonnxruntime.so",
            "does not exist",
        ],
    )];
    assert!(
        failures[0].bound,
        "the library is checked while loading, after the ports are bound"
    );
    let not_a_library = write(
        dir.path(),
        "libonnxruntime.so",
        b"this is not a shared library\n",
    );
    failures.push(fails(
        &[],
        &[("ORT_DYLIB_PATH", not_a_library.as_str())],
        &[
            "ONNX Runtime library",
            &not_a_library,
            "could not be loaded",
        ],
    ));
    // A real shared library that is not ONNX Runtime.
    let other = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file());
    if let Some(other) = other {
        failures.push(fails(
            &[],
            &[("ORT_DYLIB_PATH", other)],
            &["ONNX Runtime library", other, "could not be loaded"],
        ));
    }
    failures.push(fails(
        &[],
        &[("ORT_DYLIB_PATH", "")],
        &["no ONNX Runtime library configured", "ORT_DYLIB_PATH"],
    ));
    assert_clear(&failures);
}

#[test]
fn missing_or_broken_model_folder() {
    let ort = ort();
    let mut failures = vec![fails(
        &[],
        &[
            (ort.0, ort.1.as_str()),
            ("OODGATE_MODEL__DIR", "/nonexistent"),
        ],
        &["/nonexistent/model.onnx"],
    )];
    // A model folder whose model.onnx is not an ONNX model.
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/mnist-cosface-oe-near-fonts");
    for name in ["classes.json", "card.json"] {
        std::fs::copy(model.join(name), dir.path().join(name)).unwrap();
    }
    write(dir.path(), "model.onnx", b"not an onnx model");
    let index = default_index();
    failures.push(fails(
        &[],
        &[
            (ort.0, ort.1.as_str()),
            ("OODGATE_MODEL__DIR", dir.path().to_str().unwrap()),
            ("OODGATE_INDEX__PATH", index.to_str().unwrap()),
        ],
        &["model.onnx"],
    ));
    // classes.json missing.
    std::fs::remove_file(dir.path().join("classes.json")).unwrap();
    std::fs::copy(model.join("model.onnx"), dir.path().join("model.onnx")).unwrap();
    failures.push(fails(
        &[],
        &[
            (ort.0, ort.1.as_str()),
            ("OODGATE_MODEL__DIR", dir.path().to_str().unwrap()),
            ("OODGATE_INDEX__PATH", index.to_str().unwrap()),
        ],
        &["classes.json"],
    ));
    assert_clear(&failures);
}

#[test]
fn an_index_for_another_model_or_corrupt() {
    let ort = ort();
    let index = std::fs::read(default_index()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve_with = |path: &str, model: &str, says: &[&str]| {
        fails(
            &[],
            &[
                (ort.0, ort.1.as_str()),
                ("OODGATE_MODEL__DIR", model),
                ("OODGATE_INDEX__PATH", path),
            ],
            says,
        )
    };
    let mut failures = Vec::new();
    // The default model's index, served with another model.
    let copy = write(dir.path(), "other-model.lof", &index);
    failures.push(serve_with(
        &copy,
        "models/mnist-seed",
        &[&copy, "built for model", "rebuild the index"],
    ));
    assert!(
        failures[0].bound,
        "the index is checked while loading, after the ports are bound"
    );

    let truncated = write(dir.path(), "truncated.lof", &index[..index.len() / 2]);
    failures.push(serve_with(
        &truncated,
        "models/mnist-cosface-oe-near-fonts",
        &[&truncated, "truncated"],
    ));

    let mut flipped = index.clone();
    let middle = flipped.len() / 2;
    for b in &mut flipped[middle..middle + 64] {
        *b ^= 0x5a;
    }
    let flipped = write(dir.path(), "flipped.lof", &flipped);
    failures.push(serve_with(
        &flipped,
        "models/mnist-cosface-oe-near-fonts",
        &[&flipped, "checksum mismatch"],
    ));

    let mut tail = index.clone();
    *tail.last_mut().unwrap() ^= 1;
    let tail = write(dir.path(), "tail.lof", &tail);
    failures.push(serve_with(
        &tail,
        "models/mnist-cosface-oe-near-fonts",
        &[&tail, "checksum mismatch"],
    ));

    let junk = write(dir.path(), "junk.lof", b"definitely not an index");
    failures.push(serve_with(
        &junk,
        "models/mnist-cosface-oe-near-fonts",
        &[&junk, "not an oodgate LOF index"],
    ));

    let empty = write(dir.path(), "empty.lof", b"");
    failures.push(serve_with(
        &empty,
        "models/mnist-cosface-oe-near-fonts",
        &[&empty],
    ));

    // The right model, an index built with another k.
    let copy = write(dir.path(), "k20.lof", &index);
    failures.push(fails(
        &[],
        &[
            (ort.0, ort.1.as_str()),
            ("OODGATE_INDEX__PATH", copy.as_str()),
            ("OODGATE_INDEX__K", "10"),
        ],
        &["k=20", "k=10"],
    ));
    assert_clear(&failures);
}

#[test]
fn bad_configuration() {
    let ort = ort();
    let ort = (ort.0, ort.1.as_str());
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let unknown = write(
        dir.path(),
        "unknown.toml",
        b"[server]\nmax_imagez_per_request = 8\n",
    );
    failures.push(fails(
        &["--config", &unknown],
        &[ort],
        &["max_imagez_per_request"],
    ));
    assert!(
        !failures[0].bound,
        "the configuration is checked before the ports are bound"
    );
    let section = write(
        dir.path(),
        "section.toml",
        b"[servre]\ngrpc_addr = \"127.0.0.1:0\"\n",
    );
    failures.push(fails(&["--config", &section], &[ort], &["servre"]));
    let unparsable = write(
        dir.path(),
        "unparsable.toml",
        b"[server\nmax_images_per_request = \n",
    );
    failures.push(fails(
        &["--config", &unparsable],
        &[ort],
        &["configuration", "unparsable.toml"],
    ));
    let wrong_type = write(
        dir.path(),
        "type.toml",
        b"[server]\nmax_images_per_request = \"many\"\n",
    );
    failures.push(fails(
        &["--config", &wrong_type],
        &[ort],
        &["max_images_per_request"],
    ));
    failures.push(fails(
        &["--config", "/nonexistent.toml"],
        &[ort],
        &["/nonexistent.toml", "does not exist"],
    ));

    failures.push(fails(
        &[],
        &[ort, ("OODGATE_INDEX__CONTAMINATION", "0.9")],
        &["index.contamination", "0.9"],
    ));
    failures.push(fails(
        &[],
        &[ort, ("OODGATE_INDEX__CONTAMINATION", "-1")],
        &["index.contamination"],
    ));
    failures.push(fails(
        &[],
        &[ort, ("OODGATE_INDEX__CONTAMINATION", "lots")],
        &["contamination"],
    ));
    failures.push(fails(
        &[],
        &[ort, ("OODGATE_SERVER__GRPC_ADDR", "nowhere")],
        &["server.grpc_addr", "nowhere"],
    ));
    failures.push(fails(
        &[],
        &[ort, ("OODGATE_SERVER__HTTP_ADDR", "127.0.0.1:99999")],
        &["server.http_addr"],
    ));
    failures.push(fails(
        &[],
        &[ort, ("OODGATE_BATCHING__QUEUE_CAPACITY", "0")],
        &["batching.queue_capacity"],
    ));
    failures.push(fails(
        &[],
        &[
            ort,
            ("OODGATE_SERVER__MAX_IMAGES_PER_REQUEST", "64"),
            ("OODGATE_BATCHING__QUEUE_CAPACITY", "32"),
        ],
        &["batching.queue_capacity", "server.max_images_per_request"],
    ));
    failures.push(fails(
        &[],
        &[ort, ("OODGATE_INDEX__SEARCH", "fuzzy")],
        &["fuzzy"],
    ));
    assert_clear(&failures);
}

#[test]
fn ports_already_in_use() {
    let ort = ort();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let failures = [
        fails(
            &[],
            &[
                (ort.0, ort.1.as_str()),
                ("OODGATE_SERVER__GRPC_ADDR", addr.as_str()),
            ],
            &["cannot listen on", &addr],
        ),
        fails(
            &[],
            &[
                (ort.0, ort.1.as_str()),
                ("OODGATE_SERVER__HTTP_ADDR", addr.as_str()),
            ],
            &["cannot listen on", &addr],
        ),
    ];
    assert_clear(&failures);
}
