//! Several gates in one process: the default digits model and `models/mnist-plain` as
//! the gate "plain". Each answers with its own model and index over gRPC and HTTP; an
//! unknown gate is NOT_FOUND (404) naming the gates; one gate's reload leaves the other
//! alone; a gate flooded past its share of the queue does not starve the other; the
//! metrics carry the gate.

use std::time::Duration;

use oodgate_e2e::{
    InProcessServer, Server, digits_request, http_agent, metric, mnist_test, runtime,
};
use oodgate_proto::v1;
use oodgate_replay::replay::Target;
use serde_json::{Value, json};

const PLAIN: (&str, &str) = ("OODGATE_GATES__PLAIN__DIR", "models/mnist-plain");

/// A request of `count` MNIST test digits for `gate` (empty: the default one).
fn request(mnist: &oodgate_datasets::Dataset, gate: &str, count: usize) -> v1::DetectRequest {
    let mut request = digits_request(mnist, gate, 0, count);
    request.gate = gate.into();
    request
}

fn lof_scores(response: &v1::DetectResponse) -> Vec<f64> {
    response
        .verdicts
        .iter()
        .map(|v| v.lof.as_ref().expect("a judged image").score)
        .collect()
}

fn thresholds(response: &v1::DetectResponse) -> Vec<f64> {
    response
        .verdicts
        .iter()
        .map(|v| v.lof.as_ref().expect("a judged image").threshold)
        .collect()
}

/// The answer's status and JSON body.
fn http(server: &InProcessServer, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let agent = http_agent(None);
    let url = format!("http://{}{path}", server.http);
    let response = match body {
        Some(body) => agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string()),
        None if method == "GET" => agent.get(&url).call(),
        None => panic!("{method} without a body"),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

#[test]
fn each_gate_answers_with_its_own_model_and_unknown_gates_are_not_found() {
    let server = InProcessServer::start(&[PLAIN]);
    let mnist = mnist_test();
    let rt = runtime();
    let (gates, digits, plain, old_client, mixed) = rt.block_on(async {
        let mut client = server.client().await;
        let gates = client
            .list_gates(v1::ListGatesRequest::default())
            .await
            .expect("ListGates")
            .into_inner();
        let info = |gate: &str| {
            let mut client = client.clone();
            let gate = gate.to_owned();
            async move {
                client
                    .get_model_info(v1::GetModelInfoRequest { gate })
                    .await
                    .map(tonic::Response::into_inner)
            }
        };
        let digits_info = info("digits").await.expect("digits");
        let plain_info = info("plain").await.expect("plain");
        assert_eq!(info("").await.expect("default"), digits_info);
        let unknown = info("fashion").await.expect_err("unknown gate");
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        assert_eq!(
            unknown.message(),
            r#"no gate "fashion"; the gates are: digits, plain"#
        );

        let detect = |request: v1::DetectRequest| {
            let mut client = client.clone();
            async move {
                client
                    .detect(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        };
        let digits = detect(request(&mnist, "digits", 20)).await.expect("digits");
        let plain = detect(request(&mnist, "plain", 20)).await.expect("plain");
        // A client from before gates: no gate field, so the default gate.
        let old_client = detect(digits_request(&mnist, "digits", 0, 20))
            .await
            .expect("no gate");
        let unknown = detect(request(&mnist, "fashion", 1))
            .await
            .expect_err("unknown gate");
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        assert!(
            unknown.message().contains("digits, plain"),
            "{}",
            unknown.message()
        );

        // One stream, both gates in turn, then an unknown one: that ends the stream.
        let requests = vec![
            request(&mnist, "plain", 5),
            request(&mnist, "", 5),
            request(&mnist, "plain", 5),
            request(&mnist, "nope", 5),
        ];
        let mut answers = client
            .detect_stream(tokio_stream::iter(requests))
            .await
            .expect("DetectStream")
            .into_inner();
        let mut mixed = Vec::new();
        let end = loop {
            match answers.message().await {
                Ok(Some(answer)) => mixed.push(answer),
                Ok(None) => panic!("the stream ended without refusing the unknown gate"),
                Err(status) => break status,
            }
        };
        assert_eq!(end.code(), tonic::Code::NotFound);
        assert!(end.message().contains("\"nope\""), "{}", end.message());
        (
            (gates, digits_info, plain_info),
            digits,
            plain,
            old_client,
            mixed,
        )
    });

    let (gates, digits_info, plain_info) = gates;
    assert_eq!(gates.default_gate, "digits");
    let names: Vec<_> = gates.gates.iter().map(|g| g.gate.as_str()).collect();
    assert_eq!(names, ["digits", "plain"]);
    assert_eq!(gates.gates[0], digits_info);
    assert_eq!(gates.gates[1], plain_info);
    assert_eq!(digits_info.model_name, "mnist-cosface-oe-near-fonts");
    assert_eq!(plain_info.model_name, "mnist-plain");
    assert_ne!(digits_info.model_sha256, plain_info.model_sha256);

    // Each gate judged with its own model and index: its own default threshold, and
    // LOF scores of its own embedding.
    assert!(
        thresholds(&digits)
            .iter()
            .all(|&t| t == digits_info.default_threshold)
    );
    assert!(
        thresholds(&plain)
            .iter()
            .all(|&t| t == plain_info.default_threshold)
    );
    let (d, p) = (lof_scores(&digits), lof_scores(&plain));
    assert!(
        d.iter().zip(&p).all(|(a, b)| a != b),
        "digits {d:?}\nplain {p:?}"
    );
    assert_eq!(lof_scores(&old_client), d);
    // The stream's answers came from the gate each request named.
    assert_eq!(mixed.len(), 3);
    assert_eq!(lof_scores(&mixed[0]), p[..5]);
    assert_eq!(lof_scores(&mixed[1]), d[..5]);
    assert_eq!(lof_scores(&mixed[2]), p[..5]);

    // HTTP: the per-gate routes, the old ones for the default gate, 404 for others.
    let (status, list) = http(&server, "GET", "/v1/gates", None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["default_gate"], "digits");
    assert_eq!(list["gates"][1]["gate"], "plain");
    assert_eq!(list["gates"][1]["model_name"], "mnist-plain");
    let (status, model) = http(&server, "GET", "/v1/gates/plain/model", None);
    assert_eq!(
        (status, model["model_sha256"].as_str()),
        (200, Some(plain_info.model_sha256.as_str()))
    );
    let (status, model) = http(&server, "GET", "/v1/model", None);
    assert_eq!((status, model["gate"].as_str()), (200, Some("digits")));

    let pixels = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, mnist.image(0));
    let body = json!({"images": [{"id": "0", "raw": {"width": 28, "height": 28, "channels": 1, "pixels_base64": pixels}}]});
    let (status, answer) = http(&server, "POST", "/v1/gates/plain/detect", Some(&body));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["gate"], "plain");
    assert_eq!(answer["model"], "mnist-plain");
    assert_eq!(answer["verdicts"][0]["lof"]["score"].as_f64(), Some(p[0]));
    let (status, answer) = http(&server, "POST", "/v1/detect", Some(&body));
    assert_eq!((status, answer["gate"].as_str()), (200, Some("digits")));
    assert_eq!(answer["verdicts"][0]["lof"]["score"].as_f64(), Some(d[0]));
    let (status, answer) = http(&server, "POST", "/v1/gates/digits/detect", Some(&body));
    assert_eq!((status, answer["gate"].as_str()), (200, Some("digits")));

    for (method, path) in [
        ("POST", "/v1/gates/fashion/detect"),
        ("GET", "/v1/gates/fashion/model"),
        ("GET", "/v1/gates/fashion/training/0"),
    ] {
        let body = (method == "POST").then_some(&body);
        let (status, answer) = http(&server, method, path, body);
        assert_eq!(status, 404, "{path}: {answer}");
        assert_eq!(
            answer["error"], r#"no gate "fashion"; the gates are: digits, plain"#,
            "{path}"
        );
    }
    let agent = http_agent(None);
    let training = agent
        .get(&format!("http://{}/v1/gates/plain/training/0", server.http))
        .call()
        .unwrap();
    assert_eq!(training.status().as_u16(), 200);
    assert_eq!(training.headers()["content-type"], "image/png");

    // The metrics say which gate answered.
    let metrics = server.metrics();
    assert!(
        metric(
            &metrics,
            r#"oodgate_images_total{gate="plain",outcome="classified",source="none"}"#
        ) + metric(
            &metrics,
            r#"oodgate_images_total{gate="plain",outcome="rejected",source="none"}"#
        ) >= 31.0,
        "20 by Detect, 10 in the stream and 1 by HTTP (other tests of this process may add more): {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("oodgate_images_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        metric(
            &metrics,
            r#"oodgate_requests_total{gate="plain",method="Detect",code="OK"}"#
        ) >= 1.0
    );
    assert!(
        metric(
            &metrics,
            r#"oodgate_requests_total{gate="none",method="Detect",code="NOT_FOUND"}"#
        ) >= 1.0
    );
    assert!(
        metric(
            &metrics,
            r#"oodgate_requests_total{gate="none",method="http_detect",code="NOT_FOUND"}"#
        ) >= 1.0
    );
    assert!(metric(&metrics, r#"oodgate_batch_images_count{gate="plain"}"#) >= 1.0);
    assert!(
        metrics.contains(&format!(
            r#"oodgate_model_info{{gate="plain",model="mnist-plain",sha256="{}""#,
            plain_info.model_sha256
        )),
        "{metrics}"
    );
}

#[test]
fn reloading_one_gate_leaves_the_other_untouched() {
    let server = InProcessServer::start(&[PLAIN]);
    let mnist = mnist_test();
    let digits_dir = oodgate_e2e::workspace().join(oodgate_server::Config::default().model.dir);
    let plain_before = runtime().block_on(async {
        let client = server.client().await;
        let mut admin = v1::admin_client::AdminClient::new(
            Target::from(server.endpoint.as_str())
                .channel()
                .await
                .unwrap(),
        );
        let info = |gate: &str| {
            let mut client = client.clone();
            let gate = gate.to_owned();
            async move {
                client
                    .get_model_info(v1::GetModelInfoRequest { gate })
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        let (digits_before, plain_before) = (info("digits").await, info("plain").await);
        let digits_scores = lof_scores(
            &client
                .clone()
                .detect(request(&mnist, "", 5))
                .await
                .unwrap()
                .into_inner(),
        );

        // The plain gate now serves the digits model; the digits gate is as it was.
        let reloaded = admin
            .reload(v1::ReloadRequest {
                gate: "plain".into(),
                model_dir: digits_dir.display().to_string(),
            })
            .await
            .expect("reload plain")
            .into_inner();
        let model = reloaded.model.expect("the new model");
        assert_eq!(model.gate, "plain");
        assert_eq!(model.model_sha256, digits_before.model_sha256);
        assert_eq!(info("digits").await, digits_before);
        assert_eq!(info("plain").await.model_sha256, digits_before.model_sha256);
        let plain_now = client
            .clone()
            .detect(request(&mnist, "plain", 5))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(lof_scores(&plain_now), digits_scores);

        // A failing reload keeps the gate's model; an unknown gate is NOT_FOUND.
        let failed = admin
            .reload(v1::ReloadRequest {
                gate: "plain".into(),
                model_dir: "/nonexistent/model".into(),
            })
            .await
            .expect_err("no such folder");
        assert_eq!(failed.code(), tonic::Code::FailedPrecondition);
        assert_eq!(info("plain").await.model_sha256, digits_before.model_sha256);
        let unknown = admin
            .reload(v1::ReloadRequest {
                gate: "fashion".into(),
                model_dir: String::new(),
            })
            .await
            .expect_err("unknown gate");
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        assert!(
            unknown.message().contains("digits, plain"),
            "{}",
            unknown.message()
        );

        // Back to its configured folder.
        admin
            .reload(v1::ReloadRequest {
                gate: "plain".into(),
                model_dir: String::new(),
            })
            .await
            .expect("reload plain from the config");
        assert_eq!(info("plain").await, plain_before);
        assert_eq!(info("digits").await, digits_before);
        plain_before
    });
    let metrics = server.metrics();
    assert!(
        metric(
            &metrics,
            r#"oodgate_reloads_total{gate="plain",result="ok"}"#
        ) >= 2.0
    );
    assert!(
        metric(
            &metrics,
            r#"oodgate_reloads_total{gate="plain",result="error"}"#
        ) >= 1.0
    );
    assert!(
        metrics.contains(&format!(
            r#"oodgate_model_info{{gate="plain",model="mnist-plain",sha256="{}""#,
            plain_before.model_sha256
        )),
        "{metrics}"
    );
}

/// Each gate's share of a 16-image queue is 8: a flood of 8-image requests on "plain"
/// is refused past one in flight, while "digits" requests, one at a time, are all
/// admitted and answered.
#[test]
fn a_gate_flooded_past_its_share_does_not_starve_another() {
    let server = InProcessServer::start(&[
        PLAIN,
        ("OODGATE_BATCHING__QUEUE_CAPACITY", "16"),
        ("OODGATE_SERVER__MAX_IMAGES_PER_REQUEST", "8"),
    ]);
    let mnist = std::sync::Arc::new(mnist_test());
    let (refused, answered, other) = runtime().block_on(async {
        let client = server.client().await;
        let flood = (0..48)
            .map(|i| {
                let mut client = client.clone();
                let request = {
                    let mut r = digits_request(&mnist, "flood", i * 8, 8);
                    r.gate = "plain".into();
                    r
                };
                tokio::spawn(async move { client.detect(request).await })
            })
            .collect::<Vec<_>>();
        let mut other = Vec::new();
        for i in 0..10 {
            let mut request = digits_request(&mnist, "fair", i * 8, 8);
            request.gate = "digits".into();
            other.push(client.clone().detect(request).await);
        }
        let (mut refused, mut answered) = (Vec::new(), 0);
        for call in flood {
            match call.await.unwrap() {
                Ok(_) => answered += 1,
                Err(status) => refused.push(status),
            }
        }
        (refused, answered, other)
    });
    for answer in &other {
        let answer = answer.as_ref().expect("the other gate is admitted");
        assert_eq!(answer.get_ref().verdicts.len(), 8);
    }
    assert!(answered >= 1);
    assert!(!refused.is_empty(), "the flood never went past its share");
    for status in &refused {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("of 8 queue slots free"),
            "{}",
            status.message()
        );
    }
    // Nothing is left admitted once every request is answered.
    let (value, settled) = server.wait_for_metric(
        r#"oodgate_queue_images{gate="plain"}"#,
        |v| v == 0.0,
        Duration::from_secs(5),
    );
    assert!(settled, "plain's queue gauge stays at {value:?}");
}

/// The binary, gates from the environment only: `[gates.plain]` by its dir, a
/// disabled gate left out; SIGHUP reloads every gate.
#[test]
fn gates_come_from_the_environment_and_sighup_reloads_each() {
    let server = Server::start(&[
        PLAIN,
        ("OODGATE_GATES__OFF__DIR", "models/mnist-l2"),
        ("OODGATE_GATES__OFF__ENABLED", "false"),
    ]);
    let gates = runtime().block_on(async {
        server
            .client()
            .await
            .list_gates(v1::ListGatesRequest::default())
            .await
            .expect("ListGates")
            .into_inner()
    });
    let names: Vec<_> = gates.gates.iter().map(|g| g.gate.as_str()).collect();
    assert_eq!(names, ["digits", "plain"]);

    oodgate_e2e::run(std::process::Command::new("kill").args(["-HUP", &server.pid().to_string()]));
    for gate in ["digits", "plain"] {
        let series = format!(r#"oodgate_reloads_total{{gate="{gate}",result="ok"}}"#);
        let (value, reloaded) =
            server.wait_for_metric(&series, |v| v == 1.0, Duration::from_secs(60));
        assert!(reloaded, "{series} = {value:?}\n{}", server.log_text());
    }
}
