//! The HTTP side's JSON API: `POST /v1/detect` answers as
//! gRPC `Detect` does (same pipeline), refuses bad bodies with JSON errors naming the
//! field, and `GET /v1/training/{id}`, `GET /v1/model` and the demo page answer.
//!
//! Bad input as in `bad_input.rs` (the same cases, from `oodgate_e2e::bad_images`): each
//! bad image gets its own error verdict in its place while the images around it are
//! judged; the requests gRPC refuses are refused with a JSON error naming the field; the
//! server goes on serving.
//!
//! The tests that count requests in `/metrics` run the real `oodgate serve` (the metrics
//! recorder is global to a process); the one that compares answers runs the server
//! in-process.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use oodgate_datasets::Split;
use oodgate_e2e::bad_images::{bad_images, good_images, json_image, mixed_batch, truncated_jpegs};
use oodgate_e2e::{
    Endpoints, InProcessServer, Server, data, detect_request, http_agent, metric, mnist_test,
    raw_image, runtime,
};
use oodgate_proto::v1;
use serde_json::{Value, json};

/// A client that hands back 4xx and 5xx answers instead of failing on them.
struct Http {
    agent: ureq::Agent,
    base: String,
}

struct Answer {
    status: u16,
    content_type: String,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answered non-JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A refusal: the status, a JSON content type and `{"error": ...}`; the message.
    fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "{status} answered with content type {:?}: {}",
            self.content_type,
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" string in {body}"))
            .to_owned()
    }
}

impl Http {
    fn new(server: &Endpoints) -> Self {
        Self {
            agent: http_agent(None),
            base: format!("http://{}", server.http),
        }
    }

    fn answer(response: ureq::http::Response<ureq::Body>) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .unwrap();
        Answer {
            status,
            content_type,
            headers,
            body,
        }
    }

    fn get(&self, path: &str) -> Answer {
        Self::answer(
            self.agent
                .get(&format!("{}{path}", self.base))
                .call()
                .unwrap_or_else(|e| panic!("GET {path}: {e}")),
        )
    }

    fn post(&self, path: &str, content_type: &str, body: &str) -> Answer {
        self.post_with(path, &[("content-type", content_type)], body)
    }

    fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut request = self.agent.post(&format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::answer(
            request
                .send(body)
                .unwrap_or_else(|e| panic!("POST {path}: {e}")),
        )
    }

    fn detect(&self, body: &Value) -> Answer {
        self.post("/v1/detect", "application/json", &body.to_string())
    }
}

/// The same f64, give or take serde_json's parsing (exact to the last bit or two).
fn close(json: &Value, expected: f64) {
    let got = json
        .as_f64()
        .unwrap_or_else(|| panic!("{json} is not a number"));
    assert!(
        (got - expected).abs() <= 1e-12 * expected.abs().max(1.0),
        "{got} != {expected}"
    );
}

fn raw(id: &str, pixels: &[u8]) -> Value {
    json_image(&raw_image(id, 28, 28, 1, pixels.to_vec()))
}

/// The `images` of a JSON body.
fn images(images: &[v1::Image]) -> Value {
    images.iter().map(json_image).collect()
}

/// Good requests: verdicts as on gRPC, per-image errors, model inputs, PNG input,
/// neighbours that `GET /v1/training/{id}` shows; model info; the demo page.
#[test]
fn json_detect_matches_grpc_and_serves_training_images() {
    let server = InProcessServer::start(&[]);
    let http = Http::new(&server);
    let mnist = mnist_test();
    let fashion = data().fashion_mnist(Split::Test).unwrap();
    let train = data().mnist(Split::Train).unwrap();

    // Training image 0 as the server's PNG, then as an input again.
    let png = http.get("/v1/training/0");
    assert_eq!(png.status, 200);
    assert_eq!(png.content_type, "image/png");
    assert_eq!(&png.body[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(&png.body[16..24], &[0, 0, 0, 28, 0, 0, 0, 28]);
    assert_eq!(
        png.headers["x-oodgate-label"].to_str().unwrap(),
        train.label(0).to_string()
    );

    let mut images: Vec<Value> = (0..8)
        .map(|i| raw(&format!("digit{i}"), mnist.image(i)))
        .collect();
    images.extend((0..8).map(|i| raw(&format!("fashion{i}"), fashion.image(i))));
    images.push(
        json!({"id": "short", "raw": {"width": 28, "height": 28, "channels": 1,
        "pixels_base64": BASE64.encode([0u8; 10])}}),
    );
    images.push(json!({"id": "junk", "encoded_base64": BASE64.encode(b"not an image")}));
    images.push(json!({"id": "empty"}));
    images.push(json!({"id": "png", "png_base64": BASE64.encode(&png.body)}));
    images.push(raw("train0", train.image(0)));
    let count = images.len();
    let answer = http.detect(&json!({
        "images": images, "contamination": 0.05, "source": "test", "return_inputs": true
    }));
    let verdicts = verdicts_of(&answer);
    assert_eq!(verdicts.len(), count);

    // The same images over gRPC: the same verdicts.
    let grpc = runtime().block_on(async {
        let mut client = server.client().await;
        let info = client
            .get_model_info(v1::GetModelInfoRequest::default())
            .await
            .unwrap()
            .into_inner();
        let images = (0..8)
            .map(|i| (format!("digit{i}"), mnist.image(i)))
            .chain((0..8).map(|i| (format!("fashion{i}"), fashion.image(i))))
            .map(|(id, pixels)| raw_image(&id, 28, 28, 1, pixels.to_vec()))
            .collect();
        let response = client
            .detect(v1::DetectRequest {
                source: "test".into(),
                gate: String::new(),
                ..detect_request(images, Some(v1::threshold::Kind::Contamination(0.05)))
            })
            .await
            .unwrap()
            .into_inner();
        (info, response)
    });
    let (info, response) = grpc;
    assert_eq!(answer.json()["model"], info.model_name.as_str());
    let mut rejected = 0;
    for (json, grpc) in verdicts.iter().zip(&response.verdicts) {
        assert_eq!(json["id"], grpc.id.as_str());
        let lof = grpc.lof.as_ref().unwrap();
        close(&json["lof"]["score"], lof.score);
        close(&json["lof"]["threshold"], lof.threshold);
        close(&json["lof"]["decision"], lof.decision);
        let distance = grpc.distance.as_ref().unwrap();
        close(&json["distance"]["kth_distance"], distance.kth_distance);
        close(&json["distance"]["threshold"], distance.threshold);
        close(&json["distance"]["decision"], distance.decision);
        close(&json["training_tail"], grpc.training_tail);
        match grpc.outcome.as_ref().unwrap() {
            v1::verdict::Outcome::Classify(class) => {
                assert_eq!(json["outcome"], "classify", "{json}");
                assert_eq!(json["class_index"], class.class_index);
                assert_eq!(json["class_name"], class.class_name.as_str());
                assert!(json.get("neighbours").is_none(), "{json}");
            }
            v1::verdict::Outcome::Reject(reject) => {
                rejected += 1;
                assert_eq!(json["outcome"], "reject", "{json}");
                let would = reject.would_classify_as.as_ref().unwrap();
                assert_eq!(json["class_index"], would.class_index);
                let neighbours = json["neighbours"].as_array().unwrap();
                assert_eq!(neighbours.len(), reject.neighbours.len());
                for (n, g) in neighbours.iter().zip(&reject.neighbours) {
                    assert_eq!(n["training_id"], g.training_id);
                    assert_eq!(n["label"], g.label);
                    assert_eq!(n["label_name"], g.label_name.as_str());
                    // The neighbour's training image is the index's row.
                    assert_eq!(u32::from(train.label(g.training_id as usize)), g.label);
                }
            }
            other => panic!("gRPC error verdict {other:?}"),
        }
    }
    assert!(rejected > 0, "nothing rejected at contamination 0.05");
    let by_id = |id: &str| verdicts.iter().find(|v| v["id"] == id).unwrap();
    let digits_right = (0..8)
        .filter(|&i| by_id(&format!("digit{i}"))["class_index"] == u32::from(mnist.label(i)))
        .count();
    assert!(digits_right >= 7, "{digits_right} of 8 test digits right");

    // Per-image errors, in place.
    for id in ["short", "junk", "empty"] {
        let v = by_id(id);
        assert_eq!(v["outcome"], "error", "{v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        assert!(
            v.get("lof").is_none() && v.get("model_input").is_none(),
            "{v}"
        );
    }
    // The model inputs: a 28x28 gray image comes back as it went.
    let input = &by_id("digit3")["model_input"];
    assert_eq!(
        (&input["width"], &input["height"], &input["channels"]),
        (&json!(28), &json!(28), &json!(1))
    );
    assert_eq!(
        BASE64
            .decode(input["pixels_base64"].as_str().unwrap())
            .unwrap(),
        mnist.image(3)
    );
    // The PNG and the raw pixels of training image 0 get the same verdict.
    let (from_png, from_raw) = (by_id("png"), by_id("train0"));
    assert_eq!(from_png["lof"], from_raw["lof"]);
    assert_eq!(from_png["model_input"], from_raw["model_input"]);
    assert_eq!(from_png["class_index"], u32::from(train.label(0)));

    // Without return_inputs there are none; the default threshold is the server's.
    let plain = http
        .detect(&json!({"images": [raw("a", mnist.image(0))]}))
        .json();
    let v = &plain["verdicts"][0];
    assert!(v.get("model_input").is_none(), "{v}");
    close(&v["lof"]["threshold"], info.default_threshold);

    // Model info as gRPC's GetModelInfo.
    let model = http.get("/v1/model");
    assert_eq!(model.status, 200);
    let model = model.json();
    assert_eq!(model["model_name"], info.model_name.as_str());
    assert_eq!(model["model_sha256"], info.model_sha256.as_str());
    assert_eq!(model["k"], info.k);
    assert_eq!(model["index_size"], info.index_size);
    assert_eq!(
        model["classes"].as_array().unwrap().len(),
        info.classes.len()
    );
    close(&model["default_threshold"], info.default_threshold);
    assert_eq!(model["distance_check"], info.distance_check);
    close(
        &model["default_distance_threshold"],
        info.default_distance_threshold,
    );
    assert_eq!(model["search_mode"], info.search_mode.as_str());

    // Out-of-range and malformed training ids.
    let last = train.len() - 1;
    assert_eq!(http.get(&format!("/v1/training/{last}")).status, 200);
    let missing = http.get(&format!("/v1/training/{}", train.len()));
    assert!(missing.error(404).contains("training image"));
    http.get("/v1/training/abc").error(404);
    http.get("/v1/nothing-here").error(404);

    // The demo page, self-contained.
    for path in ["/", "/demo"] {
        let page = http.get(path);
        assert_eq!(page.status, 200);
        assert!(page.content_type.starts_with("text/html"));
        let html = String::from_utf8(page.body).unwrap();
        for id in [
            "id=\"canvas\"",
            "id=\"clear\"",
            "id=\"answer\"",
            "id=\"digit\"",
            "id=\"model-input\"",
            "id=\"neighbours\"",
            "id=\"contamination\"",
        ] {
            assert!(html.contains(id), "{path} lacks {id}");
        }
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("src=\"//"),
            "{path} refers to another host"
        );
    }
}

/// Bodies that are no valid request (bad JSON, wrong types, unknown fields, bad base64,
/// two thresholds, another content type): JSON errors naming the field, never axum's
/// plain-text rejections; counted in `oodgate_requests_total{gate="digits",method="http_detect"}`.
/// (The refusals gRPC shares are in `json_detect_refuses_what_grpc_refuses_and_goes_on`.)
#[test]
fn json_detect_refuses_bad_bodies_with_json_errors() {
    let server = Server::start(&[]);
    let http = Http::new(&server);
    let one = || raw("a", &[0u8; 784]);

    let bad_json = http.post("/v1/detect", "application/json", r#"{"images": [ "#);
    assert!(bad_json.error(400).contains("JSON"));

    let wrong_type = http.detect(&json!({"images": "a picture"}));
    assert!(wrong_type.error(400).contains("images"));
    let wrong_field_type = http.detect(&json!({"images": [one()], "contamination": "high"}));
    assert!(wrong_field_type.error(400).contains("contamination"));
    let missing = http.detect(&json!({"contamination": 0.01}));
    assert!(missing.error(400).contains("images"));
    let unknown = http.detect(&json!({"images": [one()], "contamnation": 0.01}));
    assert!(unknown.error(400).contains("contamnation"));
    let raw_missing_width = http.detect(&json!({"images": [
        {"id": "a", "raw": {"height": 28, "channels": 1, "pixels_base64": ""}}]}));
    assert!(raw_missing_width.error(400).contains("width"));

    let bad_base64 = http.detect(&json!({"images": [one(),
        {"id": "b", "raw": {"width": 28, "height": 28, "channels": 1, "pixels_base64": "not base64!"}}]}));
    let message = bad_base64.error(400);
    assert!(message.contains("images[1].raw.pixels_base64"), "{message}");
    let bad_encoded = http.detect(&json!({"images": [{"id": "a", "png_base64": "%%%"}]}));
    assert!(bad_encoded.error(400).contains("images[0].encoded_base64"));
    let both = http.detect(&json!({"images": [{"id": "a", "png_base64": "",
        "raw": {"width": 1, "height": 1, "channels": 1, "pixels_base64": "AA=="}}]}));
    assert!(both.error(400).contains("images[0]"));

    let two = http
        .detect(&json!({"images": [one()], "contamination": 0.01, "false_rejection_rate": 0.01}));
    assert!(two.error(400).contains("not both"));

    let text = http.post(
        "/v1/detect",
        "text/plain",
        &json!({"images": [one()]}).to_string(),
    );
    assert!(text.error(415).contains("Content-Type"));
    http.get("/v1/detect").error(405);

    // Still answering, and every refusal was counted.
    assert_eq!(http.detect(&json!({"images": [one()]})).status, 200);
    let requests = detect_requests(&server);
    assert_eq!(requests("OK"), 1.0);
    assert_eq!(requests("INVALID_ARGUMENT"), 11.0);
}

/// `oodgate_requests_total{gate="digits",method="http_detect"}` by code, as `/metrics` says now.
fn detect_requests(server: &Server) -> impl Fn(&str) -> f64 {
    let metrics = server.metrics();
    move |code| {
        metric(
            &metrics,
            &format!(
                r#"oodgate_requests_total{{gate="digits",method="http_detect",code="{code}"}}"#
            ),
        )
    }
}

/// What one JSON verdict has wrong, if anything, against what its image must get (as
/// `check` in bad_input.rs asks of a gRPC verdict): a judged image has an outcome, a
/// class and LOF evidence; a bad one an error saying every part of `says`, and nothing
/// judged.
fn wrong_verdict(verdict: &Value, id: &str, says: Option<&[&str]>) -> Option<String> {
    if verdict["id"] != id {
        return Some(format!(
            "{id}: the verdict of {} in its place",
            verdict["id"]
        ));
    }
    match (says, verdict["outcome"].as_str()) {
        (None, Some("classify" | "reject")) => (!verdict["lof"]["score"].is_f64()
            || !verdict["class_index"].is_u64())
        .then(|| format!("{id}: judged without class or LOF evidence: {verdict}")),
        (Some(says), Some("error")) => {
            let message = verdict["error"].as_str().unwrap_or("");
            let unsaid: Vec<_> = says
                .iter()
                .filter(|part| !message.contains(*part))
                .collect();
            if !unsaid.is_empty() {
                Some(format!("{id}: error {message:?} does not say {unsaid:?}"))
            } else {
                ["lof", "class_index", "neighbours", "model_input"]
                    .iter()
                    .any(|field| verdict.get(field).is_some())
                    .then(|| format!("{id}: an error with a judgement: {verdict}"))
            }
        }
        (None, _) => Some(format!("{id}: a good image got {verdict}")),
        (Some(says), _) => Some(format!(
            "{id}: a bad image (expected an error saying {says:?}) got {verdict}"
        )),
    }
}

/// The verdicts of a `POST /v1/detect` that must succeed.
fn verdicts_of(answer: &Answer) -> Vec<Value> {
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()["verdicts"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no verdicts in {}", String::from_utf8_lossy(&answer.body)))
}

/// Every kind of bad image the gRPC tests send (bad_input.rs), truncated JPEGs too, in
/// one JSON request between good images: the request succeeds, each bad image gets its
/// own error verdict naming the problem, in its place, and the good ones are judged;
/// each bad image alone in a request gets the same error; the server goes on serving
/// and counts each image.
#[test]
fn json_detect_answers_each_bad_image_with_its_own_error() {
    let server = Server::start(&[]);
    let http = Http::new(&server);
    let mut bad = bad_images();
    bad.extend(truncated_jpegs());
    let batch = mixed_batch(&bad);
    let sent: Vec<_> = batch.iter().map(|(image, _)| image.clone()).collect();
    let mixed = verdicts_of(&http.detect(&json!({ "images": images(&sent) })));
    assert_eq!(mixed.len(), batch.len(), "one verdict per image");
    let mut wrong: Vec<String> = mixed
        .iter()
        .zip(&batch)
        .filter_map(|(verdict, (image, says))| wrong_verdict(verdict, &image.id, says.as_deref()))
        .collect();

    // Each bad image alone in a request: the same error, and the request still succeeds.
    for b in &bad {
        let answer = http.detect(&json!({ "images": images(std::slice::from_ref(&b.image)) }));
        if answer.status != 200 {
            wrong.push(format!(
                "{} alone: {} {}",
                b.image.id,
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
            continue;
        }
        match verdicts_of(&answer).as_slice() {
            [verdict] => wrong.extend(wrong_verdict(verdict, &b.image.id, Some(&b.says))),
            other => wrong.push(format!("{} alone: {} verdicts", b.image.id, other.len())),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers over HTTP to the {} bad-image kinds:\n{}",
        wrong.len(),
        bad.len(),
        wrong.join("\n")
    );

    // Still serving; each bad image counted as an error, twice.
    let after = verdicts_of(&http.detect(&json!({ "images": images(&good_images(8, 0)) })));
    assert_eq!(after.len(), 8);
    for (verdict, n) in after.iter().zip(0..) {
        assert_eq!(wrong_verdict(verdict, &format!("good-{n}"), None), None);
    }
    let metrics = server.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"oodgate_images_total{gate="digits",outcome="error",source="none"}"#
        ),
        2.0 * bad.len() as f64
    );
    assert_eq!(
        metric(
            &metrics,
            r#"oodgate_requests_total{gate="digits",method="http_detect",code="OK"}"#
        ),
        (bad.len() + 2) as f64
    );
}

/// The requests gRPC refuses (bad_input.rs), as JSON: an empty or too large batch and
/// out-of-range thresholds are 400 naming the field; so are the numbers JSON cannot
/// carry (NaN and the infinities, sent as strings, bare words or overflowing literals);
/// the bounds themselves are allowed; duplicate ids are echoed; a body over the limit
/// is 413; the server goes on serving and counts every answer.
#[test]
fn json_detect_refuses_what_grpc_refuses_and_goes_on() {
    let server = Server::start(&[
        ("OODGATE_SERVER__MAX_IMAGES_PER_REQUEST", "8"),
        ("OODGATE_SERVER__MAX_MESSAGE_BYTES", "100000"),
    ]);
    let http = Http::new(&server);
    let good = |n: usize| images(&good_images(n, 0));
    let mut refusals = 0;
    let mut refused = |body: &str, says: &[&str]| {
        refusals += 1;
        let message = http.post("/v1/detect", "application/json", body).error(400);
        for part in says {
            assert!(
                message.contains(part),
                "{body:.120}...: {message:?} does not say {part:?}"
            );
        }
    };
    refused(&json!({"images": []}).to_string(), &["images", "empty"]);
    refused(
        &json!({ "images": good(9) }).to_string(),
        &["images", "9 images", "limit is 8"],
    );
    for (field, value, shown) in [
        ("contamination", 0.0, "got 0"),
        ("contamination", -0.1, "got -0.1"),
        ("contamination", 0.7, "got 0.7"),
        ("false_rejection_rate", 0.0, "got 0"),
        ("false_rejection_rate", 0.51, "got 0.51"),
    ] {
        let field_first = format!("{field}: ");
        refused(
            &json!({ "images": good(1), field: value }).to_string(),
            &[&field_first, "(0, 0.5]", shown],
        );
    }
    // JSON has no NaN or infinity (serde_json writes them as null); what a client may
    // send instead is refused, naming the field.
    for field in ["contamination", "false_rejection_rate"] {
        for value in [
            r#""NaN""#,
            r#""inf""#,
            r#""-Infinity""#,
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999",
            "-1e999",
        ] {
            let body = format!(r#"{{"{field}": {value}, "images": {}}}"#, good(1));
            refused(&body, &[field]);
        }
    }
    // The bounds themselves are allowed.
    for (field, value) in [
        ("contamination", 0.5),
        ("false_rejection_rate", 0.5),
        ("contamination", 1e-9),
    ] {
        let judged = verdicts_of(&http.detect(&json!({ "images": good(8), field: value })));
        assert_eq!(judged.len(), 8, "{field} {value}");
        for (verdict, n) in judged.iter().zip(0..) {
            assert_eq!(wrong_verdict(verdict, &format!("good-{n}"), None), None);
        }
    }

    // Duplicate and empty ids: allowed, echoed in order.
    let mut same = good_images(5, 0);
    for (image, id) in same.iter_mut().zip(["same", "same", "same", "", ""]) {
        image.id = id.into();
    }
    let echoed = verdicts_of(&http.detect(&json!({ "images": images(&same) })));
    let ids: Vec<_> = echoed.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["same", "same", "same", "", ""]);
    assert!(
        echoed.iter().all(|v| v["lof"]["score"].is_f64()),
        "{echoed:?}"
    );

    // A body over `server.max_message_bytes` (100,000 here, ~270 kB sent), refused on
    // its declared length before the upload: with `Expect: 100-continue` the body is
    // never sent, so the answer cannot be lost to a reset connection.
    let big = raw_image("big", 448, 448, 1, vec![0; 448 * 448]);
    let too_big = http.post_with(
        "/v1/detect",
        &[
            ("content-type", "application/json"),
            ("expect", "100-continue"),
        ],
        &json!({ "images": images(&[big]) }).to_string(),
    );
    assert!(too_big.error(413).contains("server.max_message_bytes"));

    // Still serving, and every answer counted.
    assert_eq!(
        verdicts_of(&http.detect(&json!({ "images": good(8) }))).len(),
        8
    );
    let requests = detect_requests(&server);
    assert_eq!(requests("INVALID_ARGUMENT"), f64::from(refusals));
    assert_eq!(requests("RESOURCE_EXHAUSTED"), 1.0);
    assert_eq!(requests("OK"), 5.0);
}
