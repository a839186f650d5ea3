//! Save / load round trip and every refusal of a bad file.

mod common;

use std::path::{Path, PathBuf};

use oodgate_lof::ndarray::Array2;
use oodgate_lof::{FORMAT_VERSION, HnswParams, LofError, LofIndex, SearchMode, read_header};
use sha2::{Digest, Sha256};

const MODEL: &str = "0f3c-model-a";
const DIM: usize = 16;

fn small_index() -> LofIndex {
    let (data, labels) = common::clustered(800, DIM, 5, 0.4, 31);
    let params = HnswParams {
        max_nb_connection: 12,
        ef_construction: 100,
        ef_search: 40,
    };
    LofIndex::build(data, labels, DIM, 10, params, false)
        .unwrap()
        .0
}

fn saved(dir: &Path) -> (LofIndex, PathBuf, Vec<u8>) {
    let index = small_index();
    let path = dir.join("index.lof");
    index.save(&path, MODEL).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (index, path, bytes)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// An index built without its graph: same LOF state as a full build, saved and loaded
/// without layers, HNSW search refused until the graph is added, then as good as ever.
#[test]
fn index_without_graph_round_trips_and_gains_one_later() {
    let dir = tempfile::tempdir().unwrap();
    let full = small_index();
    let (data, labels) = common::clustered(800, DIM, 5, 0.4, 31);
    let (exact_only, report) =
        LofIndex::build_exact(data, labels, DIM, 10, full.hnsw_params(), false).unwrap();
    assert!(report.graph.is_none());
    assert!(!exact_only.has_graph());
    assert_eq!(exact_only.recall(), None);
    assert_eq!(exact_only.kdist(), full.kdist());
    assert_eq!(exact_only.lrd(), full.lrd());

    let path = dir.path().join("exact.lof");
    exact_only.save(&path, MODEL).unwrap();
    // Smaller than the file with the graph: no layers stored.
    let full_path = dir.path().join("full.lof");
    full.save(&full_path, MODEL).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < std::fs::metadata(&full_path).unwrap().len());

    let mut loaded = LofIndex::load(&path, MODEL).unwrap();
    assert!(!loaded.has_graph());
    let (qdata, _) = common::clustered(100, DIM, 5, 0.8, 33);
    let q = Array2::from_shape_vec((100, DIM), qdata).unwrap();
    assert_eq!(
        loaded.query(q.view(), SearchMode::Exact).unwrap(),
        full.query(q.view(), SearchMode::Exact).unwrap()
    );
    assert!(matches!(
        loaded.query(q.view(), SearchMode::Hnsw { ef: 40 }),
        Err(LofError::NoGraph)
    ));
    assert!(matches!(
        loaded.measure_recall(50, 40),
        Err(LofError::NoGraph)
    ));

    let graph = loaded.add_graph(false).unwrap();
    assert!(loaded.has_graph());
    assert!(graph.recall.recall >= 0.9, "{graph:?}");
    assert_eq!(loaded.recall(), Some(graph.recall));
    assert!(loaded.query(q.view(), SearchMode::Hnsw { ef: 40 }).is_ok());
}

#[test]
fn round_trip_gives_identical_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (index, path, _) = saved(dir.path());
    let loaded = LofIndex::load(&path, MODEL).unwrap();

    assert_eq!(loaded.len(), index.len());
    assert_eq!(loaded.dim(), DIM);
    assert_eq!(loaded.k(), 10);
    assert_eq!(loaded.embeddings(), index.embeddings());
    assert_eq!(loaded.labels(), index.labels());
    assert_eq!(loaded.kdist(), index.kdist());
    assert_eq!(loaded.lrd(), index.lrd());
    assert_eq!(
        loaded.sorted_training_scores(),
        index.sorted_training_scores()
    );
    assert_eq!(loaded.hnsw_params(), index.hnsw_params());
    assert_eq!(loaded.recall(), index.recall());
    assert_eq!(loaded.offset(0.01).unwrap(), index.offset(0.01).unwrap());

    let (qdata, _) = common::clustered(200, DIM, 5, 0.8, 32);
    let q = Array2::from_shape_vec((200, DIM), qdata).unwrap();
    for mode in [SearchMode::Exact, SearchMode::Hnsw { ef: 40 }] {
        let before = index.query(q.view(), mode).unwrap();
        let after = loaded.query(q.view(), mode).unwrap();
        assert_eq!(before, after, "{mode:?}");
    }
    // The reloaded graph is as good as the built one.
    assert!(loaded.measure_recall(200, 40).unwrap().recall >= 0.9);

    let header = read_header(&path).unwrap();
    assert_eq!(header.model_hash, MODEL);
    assert_eq!((header.count, header.dim, header.k), (800, DIM, 10));
    assert_eq!(header.distance, "euclidean");

    // Saving over an existing file replaces it (atomic rename) and leaves no temp files.
    loaded.save(&path, MODEL).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("index.lof")]);
    LofIndex::load(&path, MODEL).unwrap();
}

#[test]
fn refusals_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path, bytes) = saved(dir.path());

    match LofIndex::load(&path, "another-model") {
        Err(LofError::ModelMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, "another-model");
            assert_eq!(found, MODEL);
        }
        other => panic!("expected ModelMismatch, got {other:?}"),
    }

    let mut v = bytes.clone();
    v[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let p = write(dir.path(), "version", &v);
    match LofIndex::load(&p, MODEL) {
        Err(LofError::UnsupportedVersion {
            found, expected, ..
        }) => {
            assert_eq!((found, expected), (FORMAT_VERSION + 1, FORMAT_VERSION));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert!(matches!(
        read_header(&p),
        Err(LofError::UnsupportedVersion { .. })
    ));

    let mut v = bytes.clone();
    let middle = v.len() / 2;
    v[middle] ^= 0x01;
    let p = write(dir.path(), "flipped", &v);
    assert!(matches!(
        LofIndex::load(&p, MODEL),
        Err(LofError::ChecksumMismatch { .. })
    ));

    // A flip in the header is damage too, not a model mismatch.
    let mut v = bytes.clone();
    let at = 24 + bytes[24..].iter().position(|&b| b == b'0').unwrap();
    v[at] = b'1';
    let p = write(dir.path(), "header-flip", &v);
    assert!(matches!(
        LofIndex::load(&p, MODEL),
        Err(LofError::ChecksumMismatch { .. })
    ));

    for cut in [bytes.len() - 1, bytes.len() / 2, 30, 20, 5] {
        let p = write(dir.path(), "truncated", &bytes[..cut]);
        match LofIndex::load(&p, MODEL) {
            Err(LofError::Truncated {
                actual, expected, ..
            }) => {
                assert_eq!(actual, cut as u64);
                assert!(expected > actual);
            }
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
    }

    let mut v = bytes.clone();
    v[0] = b'X';
    let p = write(dir.path(), "magic", &v);
    assert!(matches!(
        LofIndex::load(&p, MODEL),
        Err(LofError::WrongMagic { .. })
    ));
    for junk in [&b""[..], b"hello", b"{\"not\": \"an index\"}"] {
        let p = write(dir.path(), "junk", junk);
        assert!(matches!(
            LofIndex::load(&p, MODEL),
            Err(LofError::WrongMagic { .. })
        ));
    }

    let mut v = bytes.clone();
    v.extend_from_slice(b"tail");
    let p = write(dir.path(), "trailing", &v);
    assert!(matches!(
        LofIndex::load(&p, MODEL),
        Err(LofError::Corrupt { .. })
    ));

    let missing = dir.path().join("missing");
    assert!(matches!(
        LofIndex::load(&missing, MODEL),
        Err(LofError::Io { .. })
    ));
}

/// A file with a valid checksum but an impossible graph (only a writer other than this
/// crate could produce one) is refused before anything can index out of bounds.
#[test]
fn damaged_graph_with_valid_checksum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _, bytes) = saved(dir.path());
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let n = index.len();
    // layer count, layer 0's (empty) members, its offsets, then its links
    let layers_at = 24 + header_len + n * DIM * 4 + n + 3 * n * 8;
    let first_link = layers_at + 4 + 8 + 8 + 4 * (n + 1) + 8;
    let mut v = bytes.clone();
    v[first_link..first_link + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let end = v.len() - 32;
    let digest = Sha256::digest(&v[..end]);
    v[end..].copy_from_slice(&digest);
    let p = write(dir.path(), "graph", &v);
    match LofIndex::load(&p, MODEL) {
        Err(LofError::Corrupt { reason, .. }) => assert!(reason.contains("link"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn bad_inputs_are_errors() {
    let (data, labels) = common::clustered(50, 4, 2, 0.5, 1);
    let p = HnswParams::default();
    let invalid = |r: Result<_, LofError>| matches!(r, Err(LofError::InvalidInput(_)));
    assert!(invalid(
        LofIndex::build(data.clone(), labels.clone(), 4, 50, p, false).map(|_| ())
    ));
    assert!(invalid(
        LofIndex::build(data.clone(), labels.clone(), 4, 0, p, false).map(|_| ())
    ));
    assert!(invalid(
        LofIndex::build(data.clone(), labels.clone(), 5, 3, p, false).map(|_| ())
    ));
    let mut nan = data.clone();
    nan[7] = f32::NAN;
    assert!(invalid(
        LofIndex::build(nan, labels.clone(), 4, 3, p, false).map(|_| ())
    ));
    let bad = HnswParams {
        max_nb_connection: 300,
        ..p
    };
    assert!(invalid(
        LofIndex::build(data.clone(), labels.clone(), 4, 3, bad, false).map(|_| ())
    ));

    let index = LofIndex::build(data, labels, 4, 3, p, false).unwrap().0;
    let q = Array2::<f32>::zeros((2, 5));
    assert!(invalid(
        index.query(q.view(), SearchMode::Exact).map(|_| ())
    ));
    let q = Array2::<f32>::from_elem((2, 4), f32::INFINITY);
    assert!(invalid(
        index.query(q.view(), SearchMode::Exact).map(|_| ())
    ));
    assert!(
        index
            .query(Array2::<f32>::zeros((0, 4)).view(), SearchMode::Exact)
            .unwrap()
            .is_empty()
    );
    assert!(invalid(index.offset(1.5).map(|_| ())));
}

#[test]
fn provenance_is_stored_and_returned_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let index = small_index();
    let path = dir.path().join("with.lof");
    let provenance = serde_json::json!({"reference": {"kind": "folder", "paths": ["a/1.png"]}});
    index
        .save_with_provenance(&path, "model-a", Some(provenance.clone()))
        .unwrap();
    let (loaded, read) = LofIndex::load_with_provenance(&path, "model-a").unwrap();
    assert_eq!(read, Some(provenance.clone()));
    assert_eq!(loaded.len(), index.len());
    assert_eq!(read_header(&path).unwrap().provenance, Some(provenance));
    // A file written without it (as before the field existed) loads with none.
    let plain = dir.path().join("plain.lof");
    index.save(&plain, "model-a").unwrap();
    assert_eq!(
        LofIndex::load_with_provenance(&plain, "model-a").unwrap().1,
        None
    );
}
