//! The server on a free port, called over gRPC by the replay client, by hand-made
//! requests, and by a Python grpcio client. In-process where only the answers matter;
//! the real `oodgate serve` binary where the test also asserts its exit after SIGTERM
//! or exact metric values (the metrics recorder is global to a process).

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use oodgate_e2e::{
    InProcessServer, Server, binary, data, detect_request, metric, mnist_test, python, raw_image,
    run, runtime, workspace,
};
use oodgate_proto::v1;
use oodgate_replay::{Answer, ReplayOptions, ReplaySet, Threshold};
use tonic::Code;

/// The model `oodgate serve` serves by default.
fn default_model_dir() -> std::path::PathBuf {
    oodgate_server::config::Config::default().model.dir
}

fn default_model_name() -> String {
    default_model_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn three_sets() -> Arc<Vec<ReplaySet>> {
    let data = data();
    Arc::new(
        ["mnist", "fashion-mnist", "cifar10"]
            .iter()
            .map(|name| ReplaySet::load(name, &data).unwrap())
            .collect(),
    )
}

/// Replaying the three test sets through a server in exact-search mode rejects exactly
/// the images `oodgate eval` rejects (same model, same LOF, same preprocessing), at both
/// of the seed's contaminations. The default serving mode (HNSW, ef 256) agrees with
/// exact search on 99.97 % of verdicts (see sklearn_parity), so it is not compared here.
#[test]
fn replay_through_the_server_matches_eval_to_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("eval.json");
    run(Command::new(binary("oodgate"))
        .current_dir(workspace())
        .args([
            "eval",
            "--no-input-space",
            "--model",
            default_model_dir().to_str().unwrap(),
            "--json",
        ])
        .arg(&json));
    let eval: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let space = &eval["spaces"][0];

    let server = Server::start(&[("OODGATE_INDEX__SEARCH", "exact")]);
    let sets = three_sets();
    for at in space["at"].as_array().unwrap() {
        let contamination = at["contamination"].as_f64().unwrap();
        let options = ReplayOptions {
            streams: 3,
            batch_size: 100,
            threshold: Some(Threshold::Contamination(contamination)),
            ..ReplayOptions::default()
        };
        let summary = server.replay(&sets, options);
        println!("contamination {contamination}:\n{}", summary.markdown());
        assert_eq!(summary.search_mode, "exact");
        let by_name: HashMap<_, _> = summary.sets.iter().map(|s| (s.name.as_str(), s)).collect();
        for s in &summary.sets {
            assert_eq!((s.sent, s.errors), (10_000, 0), "{}", s.name);
        }
        // Fractions of 10,000 images: equal counts give bit-identical divisions.
        assert_eq!(
            by_name["mnist"].accepted_fraction,
            at["mnist_accepted"].as_f64().unwrap()
        );
        assert_eq!(
            by_name["fashion-mnist"].rejected_fraction,
            at["fashion_rejected"].as_f64().unwrap()
        );
        assert_eq!(
            by_name["cifar10"].rejected_fraction,
            at["cifar_rejected"].as_f64().unwrap()
        );
        assert_eq!(by_name["mnist"].accuracy, space["test_accuracy"].as_f64());
        let auroc = |set: &str| by_name[set].auroc.unwrap();
        assert!(
            (auroc("fashion-mnist") - space["fashion"]["auroc"].as_f64().unwrap()).abs() < 1e-9
        );
        assert!((auroc("cifar10") - space["cifar"]["auroc"].as_f64().unwrap()).abs() < 1e-9);
    }
    // SIGTERM after the work: a clean exit.
    let log = server.log_text();
    let status = server.terminate();
    assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
}

/// Many streams at once, batches of random sizes with bad images mixed in: every id
/// gets exactly one verdict, in the order sent; bad images get per-image errors and the
/// stream goes on.
#[test]
fn concurrent_streams_answer_every_image_once_in_order() {
    let server = InProcessServer::start(&[]);
    let mnist = mnist_test();
    let mnist = Arc::new(mnist);
    let rt = runtime();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for stream in 0..8u64 {
            let endpoint = server.endpoint.clone();
            let mnist = mnist.clone();
            tasks.push(tokio::spawn(async move {
                // A small deterministic generator per stream: sizes 1..=40, ~1 in 7 bad.
                let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ stream;
                let mut next = move |n: u64| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state % n
                };
                let mut sent = Vec::new();
                let mut requests = Vec::new();
                for r in 0..30 {
                    let size = 1 + next(40) as usize;
                    let images: Vec<v1::Image> = (0..size)
                        .map(|i| {
                            let id = format!("s{stream}-r{r}-i{i}");
                            let k = next(mnist.len() as u64) as usize;
                            let bad = next(7) == 0;
                            let pixels = mnist.image(k).to_vec();
                            let image = if bad {
                                raw_image(&id, 28, 28, 1, pixels[..100].to_vec())
                            } else {
                                raw_image(&id, 28, 28, 1, pixels)
                            };
                            sent.push((id, bad));
                            image
                        })
                        .collect();
                    requests.push(v1::DetectRequest {
                        images,
                        ..Default::default()
                    });
                }
                let mut client = oodgate_replay::replay::connect(&endpoint).await.unwrap();
                let mut answers = client
                    .detect_stream(tokio_stream::iter(requests))
                    .await
                    .unwrap()
                    .into_inner();
                let mut received = Vec::new();
                while let Some(response) = answers.message().await.unwrap() {
                    received.extend(response.verdicts);
                }
                (sent, received)
            }));
        }
        for task in tasks {
            let (sent, received) = task.await.unwrap();
            assert_eq!(received.len(), sent.len(), "one verdict per image");
            for ((id, bad), verdict) in sent.iter().zip(&received) {
                assert_eq!(&verdict.id, id, "verdicts in the order sent");
                let answer = oodgate_replay::replay::answer(verdict).unwrap();
                if *bad {
                    assert!(
                        matches!(&answer, Answer::Error(m) if m.contains("needs 784")),
                        "{answer:?}"
                    );
                } else {
                    assert!(answer.score().is_some(), "{answer:?}");
                }
            }
        }
    });
}

/// The unary call, model information, health, reflection and refused requests.
#[test]
fn unary_info_health_reflection_and_refusals() {
    let server = InProcessServer::start(&[]);
    let mnist = mnist_test();
    runtime().block_on(async {
        let mut client = server.client().await;
        let info = client
            .get_model_info(v1::GetModelInfoRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.model_name, default_model_name());
        assert_eq!(info.model_sha256.len(), 64);
        assert_eq!(
            (info.input_height, info.input_width, info.input_channels),
            (28, 28, 1)
        );
        assert_eq!(info.classes.len(), 10);
        assert_eq!(
            (info.k, info.index_size, info.search_mode.as_str()),
            (20, 60_000, "exact")
        );
        assert_eq!(info.default_contamination, 0.01);

        // Ten test digits, then white noise and Fashion-MNIST images at a threshold that
        // rejects half of the training digits, so some of them are surely rejected.
        let mut images: Vec<v1::Image> = (0..10)
            .map(|i| raw_image(&format!("digit{i}"), 28, 28, 1, mnist.image(i).to_vec()))
            .collect();
        let mut state = 12345u32;
        let noise = (0..28 * 28)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as u8
            })
            .collect();
        images.push(raw_image("noise", 28, 28, 1, noise));
        let fashion = data().fashion_mnist(oodgate_datasets::Split::Test).unwrap();
        for i in 0..9 {
            images.push(raw_image(
                &format!("fashion{i}"),
                28,
                28,
                1,
                fashion.image(i).to_vec(),
            ));
        }
        let response = client
            .detect(v1::DetectRequest {
                source: "test".into(),
                gate: String::new(),
                ..detect_request(images, Some(v1::threshold::Kind::FalseRejectionRate(0.5)))
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.verdicts.len(), 20);
        let mut predicted_right = 0;
        let mut rejected = 0;
        for (i, verdict) in response.verdicts.iter().enumerate() {
            let lof = verdict
                .lof
                .as_ref()
                .expect("LOF evidence on every judged image");
            assert!((lof.score - lof.threshold - lof.decision).abs() < 1e-9);
            // The default rule has two parts; an image is rejected when either rejects.
            let distance = verdict
                .distance
                .as_ref()
                .expect("distance evidence on every judged image");
            assert!(distance.threshold > 0.0);
            let margin = (distance.threshold - distance.kth_distance) / distance.threshold;
            assert!((margin - distance.decision).abs() < 1e-9);
            assert!((0.0..=1.0).contains(&verdict.training_tail));
            let class = match &verdict.outcome {
                Some(v1::verdict::Outcome::Classify(c)) => {
                    assert!(lof.decision >= 0.0 && distance.decision >= 0.0);
                    c
                }
                Some(v1::verdict::Outcome::Reject(r)) => {
                    assert!(lof.decision < 0.0 || distance.decision < 0.0);
                    assert_eq!(r.neighbours.len(), 20);
                    assert!(
                        r.neighbours
                            .windows(2)
                            .all(|w| w[0].distance <= w[1].distance)
                    );
                    assert!(
                        r.neighbours
                            .iter()
                            .all(|n| n.label_name == n.label.to_string())
                    );
                    rejected += usize::from(i >= 10);
                    r.would_classify_as.as_ref().unwrap()
                }
                other => panic!("{}: {other:?}", verdict.id),
            };
            if i < 10 {
                assert_eq!(verdict.id, format!("digit{i}"));
                predicted_right += usize::from(class.class_index == u32::from(mnist.label(i)));
                assert_eq!(class.class_name, class.class_index.to_string());
            }
        }
        assert!(
            predicted_right >= 9,
            "{predicted_right} of 10 digits classified right"
        );
        assert!(
            rejected >= 5,
            "only {rejected} of 10 non-digits rejected at FRR 0.5"
        );

        let refused = |request: v1::DetectRequest| {
            let mut client = client.clone();
            async move { client.detect(request).await.unwrap_err() }
        };
        let empty = refused(v1::DetectRequest::default()).await;
        assert_eq!(empty.code(), Code::InvalidArgument);
        assert!(empty.message().contains("images"), "{}", empty.message());
        let bad_threshold = refused(detect_request(
            vec![raw_image("a", 28, 28, 1, mnist.image(0).to_vec())],
            Some(v1::threshold::Kind::Contamination(0.7)),
        ))
        .await;
        assert_eq!(bad_threshold.code(), Code::InvalidArgument);
        assert!(
            bad_threshold.message().contains("threshold.contamination"),
            "{}",
            bad_threshold.message()
        );

        // Health: SERVING for the server and the detector service.
        let channel = tonic::transport::Channel::from_shared(server.endpoint.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        for service in ["", "oodgate.v1.Detector"] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status();
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving
            );
        }

        // Reflection lists the services.
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(channel);
        let request = tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("no service list: {response:?}");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"oodgate.v1.Detector"), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    });
}

/// A full queue answers RESOURCE_EXHAUSTED at once, and the server serves again after.
#[test]
fn a_full_queue_answers_resource_exhausted_then_recovers() {
    let server = InProcessServer::start(&[
        ("OODGATE_BATCHING__QUEUE_CAPACITY", "64"),
        ("OODGATE_SERVER__MAX_IMAGES_PER_REQUEST", "64"),
    ]);
    let mnist = mnist_test();
    let request = v1::DetectRequest {
        images: (0..64)
            .map(|i| raw_image(&i.to_string(), 28, 28, 1, mnist.image(i).to_vec()))
            .collect(),
        ..Default::default()
    };
    runtime().block_on(async {
        let client = server.client().await;
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let mut client = client.clone();
                let request = request.clone();
                tokio::spawn(async move { client.detect(request).await })
            })
            .collect();
        let mut codes = HashMap::new();
        for call in calls {
            let code = match call.await.unwrap() {
                Ok(response) => {
                    assert_eq!(response.into_inner().verdicts.len(), 64);
                    Code::Ok
                }
                Err(status) => {
                    assert!(status.message().contains("busy"), "{status:?}");
                    status.code()
                }
            };
            *codes.entry(code).or_insert(0) += 1;
        }
        assert!(codes.get(&Code::Ok).is_some_and(|&n| n >= 1), "{codes:?}");
        assert!(
            codes.get(&Code::ResourceExhausted).is_some_and(|&n| n >= 1),
            "{codes:?}"
        );
        assert_eq!(codes.len(), 2, "{codes:?}");

        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut client = client.clone();
        let again = client.detect(request.clone()).await.unwrap();
        assert_eq!(again.into_inner().verdicts.len(), 64);
    });
}

/// Another language: a Python grpcio client generated from proto/ by grpcio-tools.
#[test]
fn python_grpcio_client_gets_verdicts() {
    let server = InProcessServer::start(&[]);
    let printed = run(Command::new(python())
        .current_dir(workspace())
        .arg("tests/python/grpc_client.py")
        .arg("--addr")
        .arg(server.endpoint.trim_start_matches("http://")));
    println!("{printed}");
    assert!(printed.contains("python client: ok"), "{printed}");
}

/// The HTTP side: liveness, readiness and Prometheus metrics that count what was sent.
#[test]
fn http_side_serves_health_and_metrics() {
    let server = Server::start(&[("OODGATE_SERVER__SOURCES", "mnist,fashion-mnist")]);
    assert_eq!(server.http_get("/healthz").trim(), "ok");
    assert_eq!(server.http_get("/readyz").trim(), "ready");
    let before = server.metrics();
    // Zero series for configured sources exist before any traffic (exact rate() later).
    assert!(
        before.contains(
            r#"oodgate_images_total{gate="digits",outcome="rejected",source="fashion-mnist"} 0"#
        ),
        "{before}"
    );
    // So do the histograms: the latency panels' rate() works from the first request.
    for series in [
        r#"oodgate_image_duration_seconds_count{gate="digits"} 0"#,
        r#"oodgate_image_duration_seconds_bucket{gate="digits",le="0.01"} 0"#,
        r#"oodgate_stage_duration_seconds_count{gate="digits",stage="lof"} 0"#,
        r#"oodgate_batch_images_count{gate="digits"} 0"#,
        r#"oodgate_lof_decision_count{gate="digits"} 0"#,
    ] {
        assert!(
            before.contains(series),
            "{series} missing before traffic: {before}"
        );
    }

    let mut mnist = ReplaySet::load("mnist", &data()).unwrap();
    mnist.truncate(300);
    let sets = Arc::new(vec![mnist]);
    let summary = server.replay(&sets, ReplayOptions::default());
    let metrics = server.metrics();
    let value = |series: &str| metric(&metrics, series);
    let accepted = summary.sets[0].accepted as f64;
    assert_eq!(
        value(r#"oodgate_images_total{gate="digits",outcome="classified",source="mnist"}"#),
        accepted
    );
    assert_eq!(
        value(r#"oodgate_images_total{gate="digits",outcome="rejected",source="mnist"}"#),
        300.0 - accepted
    );
    assert_eq!(
        value(r#"oodgate_image_duration_seconds_count{gate="digits"}"#),
        300.0
    );
    assert_eq!(value(r#"oodgate_batch_images_sum{gate="digits"}"#), 300.0);
    assert_eq!(value("oodgate_ready"), 1.0);
    assert_eq!(value("oodgate_streams_active"), 0.0);
    assert!(
        value(r#"oodgate_requests_total{gate="digits",method="DetectStream",code="OK"}"#) >= 5.0
    );
    for stage in ["preprocess", "queue", "embed", "lof"] {
        assert!(
            value(&format!(
                r#"oodgate_stage_duration_seconds_count{{gate="digits",stage="{stage}"}}"#
            )) >= 5.0
        );
    }
    assert!(
        metrics.contains(&format!(
            "oodgate_model_info{{gate=\"digits\",model=\"{}\"",
            default_model_name()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE oodgate_lof_decision histogram"),
        "{metrics}"
    );
}
