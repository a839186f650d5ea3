//! The Unix-socket listeners (`server.grpc_uds`, `server.http_uds`): the same answers as
//! over TCP, a stale socket file replaced, anything else at the path refused, the files
//! removed at shutdown.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use oodgate_e2e::{InProcessServer, data, digits_request, mnist_test, raw_image, runtime};
use oodgate_proto::v1;
use oodgate_replay::replay::{Answer, UNIX_SCHEME, answer};
use oodgate_server::config::Config;
use oodgate_server::serve::Listeners;
use serde_json::{Value, json};

/// Eight digits and eight Fashion-MNIST images: accepted and rejected verdicts both.
fn mixed_request() -> v1::DetectRequest {
    let mut request = digits_request(&mnist_test(), "digit", 0, 8);
    let fashion = data()
        .fashion_mnist(oodgate_datasets::Split::Test)
        .expect("Fashion-MNIST test set");
    request.images.extend((0..8).map(|i| {
        raw_image(
            &format!("fashion-{i}"),
            28,
            28,
            1,
            fashion.image(i).to_vec(),
        )
    }));
    request
}

fn answers(verdicts: &[v1::Verdict]) -> Vec<(String, Answer)> {
    verdicts
        .iter()
        .map(|v| (v.id.clone(), answer(v).expect("a well-formed verdict")))
        .collect()
}

/// The same outcome and class, scores equal to 1e-9 relative (another batch
/// composition may round the model's last bits differently).
fn assert_same(over: &str, got: &[(String, Answer)], expected: &[(String, Answer)]) {
    assert_eq!(got.len(), expected.len(), "{over}: verdict count");
    for ((id, a), (expected_id, b)) in got.iter().zip(expected) {
        assert_eq!(id, expected_id, "{over}: order");
        let same_kind = matches!(
            (a, b),
            (Answer::Accepted { .. }, Answer::Accepted { .. })
                | (Answer::Rejected { .. }, Answer::Rejected { .. })
        );
        assert!(
            same_kind && a.class() == b.class(),
            "{over}: {id}: {a:?} vs {b:?}"
        );
        let (x, y) = (a.lof_score().unwrap(), b.lof_score().unwrap());
        assert!((x - y).abs() <= 1e-9 * y.abs(), "{over}: {id}: {x} vs {y}");
    }
}

/// One HTTP/1.1 request over the Unix socket at `path`: the status and the body.
async fn http_over_socket(path: &Path, method: &str, uri: &str, body: String) -> (u16, Value) {
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(uri)
        // HTTP/1.1 requires a host; the socket is the address.
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("a request");
    let response = sender.send_request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// The JSON body of `request` for `POST /v1/detect`.
fn json_body(request: &v1::DetectRequest) -> String {
    let images: Vec<Value> = request
        .images
        .iter()
        .map(|image| match &image.data {
            Some(v1::image::Data::Raw(raw)) => json!({
                "id": image.id,
                "raw": {"width": raw.width, "height": raw.height, "channels": raw.channels,
                        "pixels_base64": BASE64.encode(&raw.pixels)},
            }),
            other => panic!("raw images only, got {other:?}"),
        })
        .collect();
    json!({ "images": images }).to_string()
}

/// The same requests over TCP and over both sockets: the same verdicts; a stale socket
/// file from an earlier run replaced; the socket files gone after shutdown.
#[test]
fn the_sockets_answer_as_tcp_does_and_are_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let grpc_path = dir.path().join("grpc.sock");
    let http_path = dir.path().join("http.sock");
    // What a killed server leaves: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&grpc_path).unwrap());
    assert!(grpc_path.exists());

    let server = InProcessServer::start(&[
        ("OODGATE_SERVER__GRPC_UDS", grpc_path.to_str().unwrap()),
        ("OODGATE_SERVER__HTTP_UDS", http_path.to_str().unwrap()),
    ]);
    let log = server.log_text();
    for line in ["gRPC Unix socket listening", "HTTP Unix socket listening"] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    let request = mixed_request();
    let unix = format!("{UNIX_SCHEME}{}", grpc_path.display());
    runtime().block_on(async {
        let mut tcp = server.client().await;
        let expected = answers(
            &tcp.detect(request.clone())
                .await
                .unwrap()
                .into_inner()
                .verdicts,
        );
        assert!(
            expected
                .iter()
                .any(|(_, a)| matches!(a, Answer::Accepted { .. }))
                && expected
                    .iter()
                    .any(|(_, a)| matches!(a, Answer::Rejected { .. })),
            "the request should get both verdicts: {expected:?}"
        );

        let mut client = oodgate_replay::replay::connect(unix.as_str())
            .await
            .expect("connect over the gRPC socket");
        let unary = client.detect(request.clone()).await.unwrap().into_inner();
        assert_same("gRPC socket, unary", &answers(&unary.verdicts), &expected);

        // Streaming: the images two per request.
        let requests: Vec<v1::DetectRequest> = request
            .images
            .chunks(2)
            .map(|images| v1::DetectRequest {
                images: images.to_vec(),
                ..Default::default()
            })
            .collect();
        let mut stream = client
            .detect_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut streamed = Vec::new();
        while let Some(response) = stream.message().await.unwrap() {
            streamed.extend(response.verdicts);
        }
        assert_same("gRPC socket, stream", &answers(&streamed), &expected);

        let (status, ready) = http_over_socket(&http_path, "GET", "/readyz", String::new()).await;
        assert_eq!(status, 200, "{ready}");
        let (status, detected) =
            http_over_socket(&http_path, "POST", "/v1/detect", json_body(&request)).await;
        assert_eq!(status, 200, "{detected}");
        let verdicts = detected["verdicts"].as_array().expect("verdicts");
        assert_eq!(verdicts.len(), expected.len());
        for (verdict, (id, want)) in verdicts.iter().zip(&expected) {
            assert_eq!(verdict["id"], json!(id));
            let outcome = match want {
                Answer::Accepted { .. } => "classify",
                Answer::Rejected { .. } => "reject",
                Answer::Error(_) => "error",
            };
            assert_eq!(
                verdict["outcome"],
                json!(outcome),
                "HTTP socket: {id}: {verdict}"
            );
            assert_eq!(
                verdict["class_index"],
                json!(want.class()),
                "HTTP socket: {id}"
            );
            let lof = verdict["lof"]["score"].as_f64().expect("a LOF score");
            let expected_lof = want.lof_score().unwrap();
            assert!(
                (lof - expected_lof).abs() <= 1e-9 * expected_lof.abs(),
                "HTTP socket: {id}: {lof} vs {expected_lof}"
            );
        }
    });

    drop(server);
    assert!(
        !grpc_path.exists(),
        "the gRPC socket file outlived the server"
    );
    assert!(
        !http_path.exists(),
        "the HTTP socket file outlived the server"
    );
}

/// Anything but a socket at a configured path stays as it is, and the error names the
/// setting.
#[test]
fn a_file_at_the_socket_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("http.sock");
    std::fs::write(&path, "not a socket").unwrap();
    let mut config = Config::default();
    config.server.grpc_addr = "127.0.0.1:0".into();
    config.server.http_addr = "127.0.0.1:0".into();
    config.server.http_uds = path.clone();
    let err = runtime()
        .block_on(Listeners::bind(&config))
        .err()
        .expect("a regular file at server.http_uds is refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("server.http_uds") && message.contains("not a socket"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}
