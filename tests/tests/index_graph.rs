//! The HNSW graph is built only when something searches with it: an index built for
//! exact search has none (and starts fast); `oodgate index build --graph` adds it; a
//! server configured with `index.search = "hnsw"` builds a missing graph at load, and
//! keeps it in its own cache file but never rewrites a file the operator named.
//!
//! The gate: the Fashion-MNIST model and classes with a reference set of precomputed
//! embeddings (`.npy`), so no image is embedded and the builds take a moment.

use std::path::Path;
use std::process::Command;

use ndarray::{Array1, Array2};
use ndarray_npy::WriteNpyExt;
use oodgate_e2e::{binary, run, workspace};
use oodgate_lof::read_header;
use oodgate_server::config::{Config, GateSpec, SearchMode};

const FASHION: &str = "models/fashion-cosface";
const POINTS: usize = 3000;

/// A gate folder whose reference set is `POINTS` unit vectors of the model's embedding
/// dimension in ten clusters, labelled by cluster.
fn npy_gate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for file in ["model.onnx", "classes.json"] {
        let from = workspace().join(FASHION).join(file);
        std::fs::copy(&from, dir.path().join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    let toml = std::fs::read_to_string(workspace().join(FASHION).join("gate.toml")).unwrap();
    assert!(toml.contains("dataset = \"fashion-mnist\""));
    let toml = toml.replacen(
        "dataset = \"fashion-mnist\"",
        "npy = { embeddings = \"reference.npy\", labels = \"labels.npy\" }",
        1,
    );
    std::fs::write(dir.path().join("gate.toml"), toml).unwrap();

    let dim = 64;
    // A small deterministic generator: the test needs spread, not randomness.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..10)
        .map(|_| (0..dim).map(|_| next()).collect())
        .collect();
    let mut points = Array2::<f32>::zeros((POINTS, dim));
    let mut labels = Array1::<u8>::zeros(POINTS);
    for i in 0..POINTS {
        let class = i % 10;
        labels[i] = class as u8;
        let mut row: Vec<f32> = centres[class].iter().map(|c| c + 0.3 * next()).collect();
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
        points.row_mut(i).assign(&Array1::from(row));
    }
    points
        .write_npy(std::fs::File::create(dir.path().join("reference.npy")).unwrap())
        .unwrap();
    labels
        .write_npy(std::fs::File::create(dir.path().join("labels.npy")).unwrap())
        .unwrap();
    dir
}

fn index_build(gate: &Path, args: &[&str]) -> String {
    run(Command::new(binary("oodgate"))
        .current_dir(workspace())
        .args(["index", "build", "--gate"])
        .arg(gate)
        .args(args))
}

fn has_graph(index: &Path) -> bool {
    let header = read_header(index).unwrap_or_else(|e| panic!("{}: {e}", index.display()));
    header.recall.is_some()
}

fn config(search: SearchMode, cache: &Path) -> Config {
    let mut config = Config::default();
    config.index.search = search;
    config.index.cache_dir = cache.to_path_buf();
    config
}

fn gate(dir: &Path) -> GateSpec {
    GateSpec {
        name: "garments".into(),
        dir: dir.to_path_buf(),
        index_path: Default::default(),
        variant: Default::default(),
    }
}

#[test]
fn index_build_makes_the_graph_only_when_asked() {
    let gate = npy_gate();
    let exact = gate.path().join("index.lof");
    let printed = index_build(gate.path(), &[]);
    assert!(printed.contains("no graph"), "{printed}");
    assert!(!has_graph(&exact));

    let with_graph = gate.path().join("with-graph.lof");
    let printed = index_build(
        gate.path(),
        &["--graph", "--out", with_graph.to_str().unwrap()],
    );
    assert!(
        printed.contains("HNSW graph recall@k ") && !printed.contains("no graph"),
        "{printed}"
    );
    assert!(has_graph(&with_graph));
    // Same LOF state either way; the graph only adds layers.
    assert!(
        std::fs::metadata(&exact).unwrap().len() < std::fs::metadata(&with_graph).unwrap().len()
    );
}

#[test]
fn a_server_searching_with_hnsw_builds_a_missing_graph_at_load() {
    let cache = tempfile::tempdir().unwrap();
    let gate_dir = npy_gate();

    // First start in exact mode: the cached index has no graph.
    let exact = oodgate_server::load::detector(
        &config(SearchMode::Exact, cache.path()),
        &gate(gate_dir.path()),
    )
    .unwrap();
    assert!(!exact.index.has_graph());
    let cached: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(!has_graph(&cached[0]));

    // HNSW mode on the same cache: built at load and written back for the next start.
    let hnsw = oodgate_server::load::detector(
        &config(SearchMode::Hnsw, cache.path()),
        &gate(gate_dir.path()),
    )
    .unwrap();
    assert!(hnsw.index.has_graph());
    assert!(has_graph(&cached[0]));
    assert_eq!(hnsw.index.kdist(), exact.index.kdist());

    // A file the gate folder holds is used as it is: the graph is built in memory only.
    index_build(gate_dir.path(), &[]);
    let own = gate_dir.path().join("index.lof");
    let before = std::fs::read(&own).unwrap();
    let served = oodgate_server::load::detector(
        &config(SearchMode::Hnsw, cache.path()),
        &gate(gate_dir.path()),
    )
    .unwrap();
    assert!(served.index.has_graph());
    assert_eq!(std::fs::read(&own).unwrap(), before);
}
