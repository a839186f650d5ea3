//! Section 5 of the benchmark: `oodgate index build`, timed as a user would run it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::bail;

use super::results::IndexBuild;

/// Builds the configured index into the work folder (then deletes it), with this
/// binary, and keeps what the command printed.
pub(super) fn run(config_file: Option<&Path>, work: &Path) -> anyhow::Result<IndexBuild> {
    let exe = std::env::current_exe()?;
    let out = work.join("index-build.lof");
    let mut command = Command::new(&exe);
    if let Some(file) = config_file {
        command.arg("--config").arg(file);
    }
    let started = Instant::now();
    let output = command
        .args(["index", "build", "--out"])
        .arg(&out)
        .stderr(Stdio::null())
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("index build failed: {}", output.status);
    }
    let _ = std::fs::remove_file(&out);
    Ok(IndexBuild {
        seconds,
        output: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    })
}
