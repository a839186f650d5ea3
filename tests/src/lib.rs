//! Helpers for the end-to-end tests: where the workspace, the built binaries and the
//! project's Python are. The tests themselves are in `tests/tests/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (models/, .venv/, .cache/ are relative to it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A binary of the workspace, built by `make test` (`cargo build --release`) next to
/// this test executable. Fails loudly when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join(name);
    assert!(
        path.is_file(),
        "{} not built: run `cargo build --release --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// The project's Python (`.venv`, made by `scripts/setup.sh test`).
pub fn python() -> PathBuf {
    let path = workspace().join(".venv/bin/python");
    assert!(
        path.is_file(),
        "{} missing: run `scripts/setup.sh test` (make test does)",
        path.display()
    );
    path
}

/// Runs a command to completion; panics with its output when it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
