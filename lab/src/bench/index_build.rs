//! Section 5 of the benchmark: `oodgate index build` timed as a user would run it, with
//! and without the HNSW graph; and the service's first start, with no index cached.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::bail;

use super::Context;
use super::results::{FirstStart, IndexBuild};
use super::service::{start_server, stop_server};

/// Builds the configured index into the work folder (then deletes it), with this
/// binary, without and then with `--graph`, and keeps what the commands printed.
pub(super) fn run(config_file: Option<&Path>, work: &Path) -> anyhow::Result<IndexBuild> {
    let (seconds, output) = build(config_file, work, &[])?;
    let (graph_seconds, graph_output) = build(config_file, work, &["--graph"])?;
    Ok(IndexBuild {
        seconds,
        output,
        graph_seconds: Some(graph_seconds),
        graph_output: Some(graph_output),
    })
}

fn build(config_file: Option<&Path>, work: &Path, args: &[&str]) -> anyhow::Result<(f64, String)> {
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
        .args(args)
        .stderr(Stdio::null())
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("index build {args:?} failed: {}", output.status);
    }
    let _ = std::fs::remove_file(&out);
    Ok((
        seconds,
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    ))
}

/// Process start to SERVING with an empty index cache (every index built at start, as
/// on a fresh machine): the configured gates, then the default gate alone.
pub(super) fn first_start(ctx: &Context, served: &[&str]) -> anyhow::Result<FirstStart> {
    let timed = |name: &str, gates: &[&str]| -> anyhow::Result<f64> {
        let cache = ctx.work.join(format!("first-start-cache-{name}"));
        let _ = std::fs::remove_dir_all(&cache);
        let mut env = ctx.gates_env(gates);
        env.push((
            "OODGATE_INDEX__CACHE_DIR".into(),
            cache.to_string_lossy().into_owned(),
        ));
        let server = start_server(
            ctx.config_file,
            &ctx.work.join(format!("serve-first-start-{name}.log")),
            &env,
        )?;
        let seconds = server.startup.as_secs_f64();
        stop_server(server)?;
        let _ = std::fs::remove_dir_all(&cache);
        eprintln!("  first start, {name}: SERVING after {seconds:.2} s");
        Ok(seconds)
    };
    let all = timed("all-gates", served)?;
    let default = timed("default-gate", &[])?;
    let mut gates = vec![ctx.default_gate.clone()];
    gates.extend(served.iter().map(|g| g.to_string()));
    Ok(FirstStart {
        gates,
        all_gates_seconds: all,
        default_gate_seconds: default,
    })
}
