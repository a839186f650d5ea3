//! deploy/ checked with the real tools: promtool on the Prometheus config, alerting
//! rules and their unit tests; yamllint; the Grafana dashboard's queries run by a real
//! Prometheus scraping a running oodgate while the replay client streams two sources.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oodgate_e2e::{Server, data, program, run, workspace};
use oodgate_replay::{ReplayOptions, ReplaySet};

/// A tool from Debian's packages, installed by `scripts/setup.sh test`.
fn tool(name: &str) -> PathBuf {
    program(name, "run `scripts/setup.sh test` (make test does)")
}

fn deploy(path: &str) -> PathBuf {
    let path = workspace().join("deploy").join(path);
    assert!(path.exists(), "{} missing", path.display());
    path
}

#[test]
fn promtool_accepts_the_config_and_the_alert_rules_pass_their_tests() {
    let promtool = tool("promtool");
    run(Command::new(&promtool)
        .args(["check", "config"])
        .arg(deploy("prometheus/prometheus.yml")));
    run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(deploy("prometheus/alerts.yml")));
    let tested = run(Command::new(&promtool)
        .current_dir(deploy("prometheus"))
        .args(["test", "rules", "alerts_test.yml"]));
    println!("{tested}");
}

#[test]
fn yaml_files_are_lint_clean() {
    let mut command = Command::new(tool("yamllint"));
    command.current_dir(workspace()).arg("--strict");
    if workspace().join("deploy/.yamllint").is_file() {
        command.args(["-c", "deploy/.yamllint"]);
    }
    run(command.arg("deploy"));
}

/// Every PromQL expression of the dashboard, with the panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/dashboards/oodgate.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON parses");
    let mut queries = Vec::new();
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    walk(&dashboard["panels"], &mut queries);
    assert!(!queries.is_empty(), "the dashboard has no queries");
    queries
}

/// Grafana's variables, as Prometheus would see them over a 5-minute dashboard.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "5m")
        .replace("${source}", ".*")
        .replace("$source", ".*")
        .replace("${gate}", ".*")
        .replace("$gate", ".*")
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("oodgate_") {
        let start = i + at;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |e| start + e);
        if !preceded {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus on loopback scraping `target` every second, with deploy's rules.
fn start_prometheus(target: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: oodgate\n    static_configs:\n      - targets: ['{target}']\n",
            deploy("prometheus/alerts.yml").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let prometheus = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_for("Prometheus ready", || {
        ureq::get(&format!("{}/-/ready", prometheus.url))
            .call()
            .is_ok()
    });
    prometheus
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An instant query: each result series' labels and value.
fn query(prometheus: &Prometheus, expr: &str) -> Vec<(HashMap<String, String>, f64)> {
    let mut response = ureq::get(&format!("{}/api/v1/query", prometheus.url))
        .query("query", expr)
        .call()
        .unwrap_or_else(|e| panic!("query {expr}: {e}"));
    let body: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["status"], "success", "{expr}: {body}");
    body["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{expr}: {body}"))
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect();
            let value = series["value"][1].as_str().unwrap().parse().unwrap();
            (labels, value)
        })
        .collect()
}

#[test]
fn the_dashboard_rejection_rate_matches_what_the_client_counted() {
    let server = Server::start(&[("OODGATE_SERVER__SOURCES", "mnist,fashion-mnist")]);
    let prometheus = start_prometheus(&server.http);
    // The zero series of both sources are scraped before any traffic.
    wait_for("the first scrape", || {
        query(
            &prometheus,
            r#"oodgate_images_total{source="fashion-mnist"}"#,
        )
        .len()
            == 3
    });

    let data = data();
    let sets: Vec<ReplaySet> = ["mnist", "fashion-mnist"]
        .iter()
        .map(|name| {
            let mut set = ReplaySet::load(name, &data).unwrap();
            set.truncate(3000);
            set
        })
        .collect();
    let sets = Arc::new(sets);
    // Paced to last several scrape intervals, as live traffic would: the panels' rate()
    // then sees counters grow over several samples, not one step between two scrapes.
    let paced = ReplayOptions {
        rate: Some(1500.0),
        ..ReplayOptions::default()
    };
    let summary = server.replay(&sets, paced);
    println!("{}", summary.markdown());
    let counted: HashMap<&str, f64> = summary
        .sets
        .iter()
        .map(|s| (s.name.as_str(), s.rejected_fraction))
        .collect();
    let overall = summary.sets.iter().map(|s| s.rejected).sum::<usize>() as f64
        / summary
            .sets
            .iter()
            .map(|s| s.accepted + s.rejected)
            .sum::<usize>() as f64;
    wait_for("the last scrape", || {
        query(&prometheus, "sum(oodgate_images_total)")
            .first()
            .is_some_and(|(_, v)| *v == 6000.0)
    });

    let exported: BTreeSet<String> = server
        .metrics()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();

    let (mut rejection_panels, mut latency_panels) = (0, 0);
    for (title, expr) in dashboard_queries() {
        for name in metric_names(&expr) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                exported.contains(base) || exported.contains(&name),
                "panel {title:?} uses {name}, which oodgate does not export ({exported:?})"
            );
        }
        let promql = as_promql(&expr);
        let lower = title.to_lowercase();
        if lower.contains("rejection rate") {
            rejection_panels += 1;
            let result = query(&prometheus, &promql);
            println!("{title}: {promql}\n  -> {result:?}");
            assert!(!result.is_empty(), "{title}: no result for {promql}");
            for (labels, value) in result {
                let expected = match labels.get("source") {
                    Some(source) => match counted.get(source.as_str()) {
                        Some(fraction) => *fraction,
                        None => {
                            // Zero-initialised sources with no traffic: 0 / 0.
                            assert!(
                                value.is_nan(),
                                "{title}: {source} = {value} without traffic"
                            );
                            continue;
                        }
                    },
                    None => overall,
                };
                assert!(
                    (value - expected).abs() <= 0.01,
                    "{title} {labels:?}: Prometheus says {value}, the client counted {expected}"
                );
            }
        } else if lower.contains("latency") {
            latency_panels += 1;
            let result = query(&prometheus, &promql);
            assert!(!result.is_empty(), "{title}: no result for {promql}");
            assert!(
                result.iter().any(|(_, v)| v.is_finite() && *v > 0.0),
                "{title}: {promql} -> {result:?}"
            );
        }
    }
    assert!(
        rejection_panels >= 2,
        "overall and per-source rejection-rate panels"
    );
    assert!(latency_panels >= 1, "latency panels");
}

/// The metrics that are the process's, not a gate's: no `gate` label to filter by.
const PROCESS_WIDE: [&str; 4] = [
    "oodgate_ready",
    "oodgate_streams_active",
    "oodgate_streams_total",
    "oodgate_unauthenticated_total",
];

#[test]
fn the_dashboard_has_a_gate_variable_and_its_panels_filter_by_it() {
    let text = std::fs::read_to_string(deploy("grafana/dashboards/oodgate.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let gate = variables
        .iter()
        .find(|v| v["name"] == "gate")
        .expect("a gate variable");
    assert_eq!(
        gate["query"]["query"],
        "label_values(oodgate_model_info, gate)"
    );
    assert_eq!(gate["includeAll"], true);
    let mut filtered = 0;
    for (title, expr) in dashboard_queries() {
        for name in metric_names(&expr) {
            if PROCESS_WIDE.contains(&name.as_str()) {
                continue;
            }
            let uses = expr.matches(name.as_str()).count();
            let by_gate = expr.matches(&format!("{name}{{gate=~\"$gate\"")).count();
            assert_eq!(
                uses, by_gate,
                "panel {title:?}: {name} not filtered by gate in {expr}"
            );
            filtered += 1;
        }
    }
    assert!(filtered >= 20, "{filtered} gated queries");
}

#[test]
fn metric_names_are_read_from_expressions() {
    let expr = "histogram_quantile(0.99, sum by (le) (rate(oodgate_image_duration_seconds_bucket[$__rate_interval]))) / sum(oodgate_ready)";
    let names: Vec<_> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        ["oodgate_image_duration_seconds_bucket", "oodgate_ready"]
    );
    assert!(as_promql(expr).contains("[5m]"));
}
