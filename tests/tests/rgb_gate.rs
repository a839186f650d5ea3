//! A user's RGB model served as a gate beside the digits and Fashion-MNIST gates, in
//! one process.
//!
//! The gate folder is `tests/python/make_rgb_model.py`'s (NCHW 3x32x32, ImageNet mean
//! and std, center-crop, `embedding` and `logits` outputs, a reference folder of 40x36
//! PNGs), its index built with `oodgate index build --gate DIR` as a user would. Its
//! classes are renamed `tinted-0` to `tinted-9` (classes.json and the reference class
//! folders alike) so that its verdicts can be told from the digits gate's `0` to `9`.
//!
//! PNG and JPEG images of other sizes than the model's, and a gray one, go to "rgb";
//! MNIST digits to "digits"; garments to "fashion". Each gate answers with its own
//! classes and threshold; the metrics count each gate's images; reloading "rgb" leaves
//! the others' answers as they were; the gate's reference images are served as the
//! files they are.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use image::{DynamicImage, ImageFormat, RgbImage, imageops::FilterType};
use oodgate_datasets::{Dataset, DatasetId, Split};
use oodgate_e2e::{
    InProcessServer, binary, data, detect_request, http_agent, metric_value, mnist_test, python,
    raw_image, run, runtime, workspace,
};
use oodgate_proto::v1;
use oodgate_replay::replay::Target;

/// Images of each kind sent to the RGB gate.
const PER_KIND: usize = 20;

/// The class a verdict names (classified, or what a rejected image would have been).
fn class_name(verdict: &v1::Verdict) -> &str {
    match &verdict.outcome {
        Some(v1::verdict::Outcome::Classify(c)) => &c.class_name,
        Some(v1::verdict::Outcome::Reject(r)) => {
            &r.would_classify_as
                .as_ref()
                .expect("a rejection says what it would have been")
                .class_name
        }
        other => panic!("{}: no verdict: {other:?}", verdict.id),
    }
}

fn lof(verdict: &v1::Verdict) -> &v1::LofEvidence {
    verdict.lof.as_ref().expect("a judged image")
}

/// What a gate answered, as compared before and after a reload.
fn scores(response: &v1::DetectResponse) -> Vec<(String, f64, f64)> {
    response
        .verdicts
        .iter()
        .map(|v| (class_name(v).to_owned(), lof(v).score, lof(v).threshold))
        .collect()
}

/// Digit `i` of `mnist` in a colour ink on a colour paper (as the RGB model was
/// trained), stretched to `width` x `height`.
fn tinted(mnist: &Dataset, i: usize, width: u32, height: u32) -> DynamicImage {
    // Pairs far enough apart to keep the digit visible, as the trainer's are.
    const PAIRS: [([f32; 3], [f32; 3]); 4] = [
        ([20.0, 30.0, 200.0], [240.0, 230.0, 120.0]),
        ([250.0, 250.0, 250.0], [90.0, 20.0, 40.0]),
        ([10.0, 120.0, 30.0], [200.0, 200.0, 255.0]),
        ([230.0, 60.0, 0.0], [10.0, 10.0, 10.0]),
    ];
    let (ink, paper) = PAIRS[i % PAIRS.len()];
    let digit = mnist.image(i);
    let image = RgbImage::from_fn(28, 28, |x, y| {
        let alpha = f32::from(digit[(y * 28 + x) as usize]) / 255.0;
        image::Rgb(std::array::from_fn(|c| {
            (paper[c] + (ink[c] - paper[c]) * alpha).round() as u8
        }))
    });
    DynamicImage::ImageRgb8(image::imageops::resize(
        &image,
        width,
        height,
        FilterType::Triangle,
    ))
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).expect("encode");
    bytes.into_inner()
}

fn encoded(id: String, bytes: Vec<u8>) -> v1::Image {
    v1::Image {
        id,
        data: Some(v1::image::Data::Encoded(bytes)),
    }
}

fn gate_request(images: Vec<v1::Image>, gate: &str) -> v1::DetectRequest {
    let mut request = detect_request(images, None);
    request.gate = gate.into();
    request
}

/// The images sent to the RGB gate and their digits: 57x41 RGB PNGs, 90x70 JPEGs and
/// 45x45 gray PNGs (the model is 32x32 RGB), MNIST test digits from 100 on.
fn rgb_images(mnist: &Dataset) -> (Vec<v1::Image>, Vec<u8>) {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for n in 0..PER_KIND {
        let i = 100 + n;
        images.push(encoded(
            format!("png-57x41-{n}"),
            encode(&tinted(mnist, i, 57, 41), ImageFormat::Png),
        ));
        labels.push(mnist.label(i));
    }
    for n in 0..PER_KIND {
        let i = 200 + n;
        images.push(encoded(
            format!("jpeg-90x70-{n}"),
            encode(&tinted(mnist, i, 90, 70), ImageFormat::Jpeg),
        ));
        labels.push(mnist.label(i));
    }
    for n in 0..PER_KIND {
        let i = 300 + n;
        let gray = DynamicImage::ImageLuma8(tinted(mnist, i, 45, 45).to_luma8());
        images.push(encoded(
            format!("gray-45x45-{n}"),
            encode(&gray, ImageFormat::Png),
        ));
        labels.push(mnist.label(i));
    }
    (images, labels)
}

/// Builds the RGB gate into `dir` with its classes renamed, and its index with the
/// `oodgate` binary; the class names.
fn build_rgb_gate(dir: &Path) -> Vec<String> {
    let script = workspace().join("tests/python/make_rgb_model.py");
    println!(
        "{}",
        run(Command::new(python()).arg(&script).arg("--out").arg(dir)).trim()
    );
    let classes: Vec<String> = (0..10).map(|d| format!("tinted-{d}")).collect();
    std::fs::write(
        dir.join("classes.json"),
        serde_json::to_string(&classes).unwrap(),
    )
    .unwrap();
    let reference = dir.join("reference");
    for (digit, class) in classes.iter().enumerate() {
        std::fs::rename(reference.join(digit.to_string()), reference.join(class)).unwrap();
    }
    let built = run(Command::new(binary("oodgate"))
        .current_dir(workspace())
        .args(["index", "build", "--gate"])
        .arg(dir));
    println!("{}", built.trim());
    assert!(
        built.contains(&format!(
            "reference: folder {} (1000 items",
            dir.join("reference").display()
        )),
        "{built}"
    );
    assert!(dir.join("index.lof").is_file());
    classes
}

/// The sum of `oodgate_images_total` over outcomes and sources for `gate`.
fn images_counted(metrics: &str, gate: &str) -> f64 {
    let prefix = format!("oodgate_images_total{{gate=\"{gate}\",");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn an_rgb_gate_served_beside_the_digits_and_fashion_gates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tinted");
    let rgb_classes = build_rgb_gate(&dir);

    let server = InProcessServer::start(&[
        ("OODGATE_GATES__FASHION__ENABLED", "true"),
        ("OODGATE_GATES__RGB__DIR", dir.to_str().unwrap()),
    ]);
    let mnist = mnist_test();
    // Training garments: the Fashion-MNIST test split is kept for reported figures.
    let garments = data()
        .load(DatasetId::FashionMnist, Split::Train)
        .expect("Fashion-MNIST train");
    let (rgb_images, rgb_labels) = rgb_images(&mnist);
    let digits_request = || {
        let images = (0..20)
            .map(|i| raw_image(&format!("d{i}"), 28, 28, 1, mnist.image(i).to_vec()))
            .collect();
        gate_request(images, "digits")
    };
    let fashion_request = || {
        let images = (0..20)
            .map(|i| raw_image(&format!("f{i}"), 28, 28, 1, garments.image(i).to_vec()))
            .collect();
        gate_request(images, "fashion")
    };

    let rt = runtime();
    let (infos, rgb, digits, fashion, after) = rt.block_on(async {
        let mut client = server.client().await;
        let gates = client
            .list_gates(v1::ListGatesRequest::default())
            .await
            .expect("ListGates")
            .into_inner();
        let infos: BTreeMap<String, v1::ModelInfo> = gates
            .gates
            .into_iter()
            .map(|info| (info.gate.clone(), info))
            .collect();
        let detect = |request: v1::DetectRequest| {
            let mut client = client.clone();
            async move {
                client
                    .detect(request)
                    .await
                    .unwrap_or_else(|e| panic!("Detect: {e}"))
                    .into_inner()
            }
        };
        let rgb = detect(gate_request(rgb_images.clone(), "rgb")).await;
        let digits = detect(digits_request()).await;
        let fashion = detect(fashion_request()).await;

        // Reload "rgb" from its folder while the other gates answer.
        let mut admin = v1::admin_client::AdminClient::new(
            Target::from(server.endpoint.as_str())
                .channel()
                .await
                .unwrap(),
        );
        let reload = admin.reload(v1::ReloadRequest {
            gate: "rgb".into(),
            model_dir: String::new(),
        });
        let (reloaded, digits_during, fashion_during) =
            tokio::join!(reload, detect(digits_request()), detect(fashion_request()));
        let reloaded = reloaded.expect("reload rgb").into_inner();
        assert_eq!(reloaded.model.expect("the reloaded model").gate, "rgb");
        let after = (
            detect(gate_request(rgb_images.clone(), "rgb")).await,
            digits_during,
            fashion_during,
            detect(digits_request()).await,
            detect(fashion_request()).await,
            client
                .list_gates(v1::ListGatesRequest::default())
                .await
                .unwrap()
                .into_inner()
                .gates,
        );
        (infos, rgb, digits, fashion, after)
    });

    // Three gates, each its own model.
    assert_eq!(
        infos.keys().collect::<Vec<_>>(),
        ["digits", "fashion", "rgb"]
    );
    let info = &infos["rgb"];
    assert_eq!(info.model_name, "tinted-digits");
    assert_eq!(
        (
            info.input_layout.as_str(),
            info.input_height,
            info.input_width,
            info.input_channels
        ),
        ("NCHW", 32, 32, 3)
    );
    assert_eq!(info.classes, rgb_classes);
    assert_eq!(info.index_size, 1000);
    assert_eq!(infos["fashion"].classes[9], "Ankle boot");
    assert_eq!(infos["digits"].classes[0], "0");

    // Each gate's verdicts: its own class names and its own default threshold.
    for (gate, response, sent) in [
        ("rgb", &rgb, rgb_images.len()),
        ("digits", &digits, 20),
        ("fashion", &fashion, 20),
    ] {
        let info = &infos[gate];
        assert_eq!(response.verdicts.len(), sent, "{gate}");
        for verdict in &response.verdicts {
            assert!(
                info.classes.iter().any(|c| c == class_name(verdict)),
                "{gate}: {} is not one of {:?}",
                class_name(verdict),
                info.classes
            );
            assert_eq!(lof(verdict).threshold, info.default_threshold, "{gate}");
        }
    }
    let thresholds: Vec<f64> = infos.values().map(|i| i.default_threshold).collect();
    assert!(
        thresholds[0] != thresholds[1] && thresholds[1] != thresholds[2],
        "{thresholds:?}"
    );

    // The RGB gate reads the digits in whatever size and format they come.
    let mut right = BTreeMap::<&str, usize>::new();
    for (verdict, label) in rgb.verdicts.iter().zip(&rgb_labels) {
        let kind = verdict.id.split('-').next().unwrap();
        *right.entry(kind).or_default() +=
            usize::from(class_name(verdict) == format!("tinted-{label}"));
    }
    println!("rgb gate, right of {PER_KIND} per kind: {right:?}");
    // Chance is a tenth. The model learnt colour digits 40x36 (0.85 validation
    // accuracy): other colour sizes and formats are read about as well; gray ones,
    // which it never saw, less so.
    for (kind, right) in &right {
        let least = if *kind == "gray" { 0.3 } else { 0.6 };
        assert!(
            *right as f64 >= least * PER_KIND as f64,
            "{kind}: {right} of {PER_KIND}"
        );
    }
    let accuracy = |response: &v1::DetectResponse, names: &dyn Fn(usize) -> String| {
        response
            .verdicts
            .iter()
            .enumerate()
            .filter(|(i, v)| class_name(v) == names(*i))
            .count()
    };
    let digits_right = accuracy(&digits, &|i| mnist.label(i).to_string());
    let fashion_right = accuracy(&fashion, &|i| {
        garments.class_names[usize::from(garments.label(i))].clone()
    });
    println!("digits right {digits_right} of 20, fashion right {fashion_right} of 20");
    assert!(digits_right >= 18 && fashion_right >= 15);

    // Reloading "rgb" changed no gate's answers, nor its own (the same folder).
    let (rgb_after, digits_during, fashion_during, digits_after, fashion_after, gates_after) =
        after;
    assert_eq!(scores(&digits_during), scores(&digits));
    assert_eq!(scores(&digits_after), scores(&digits));
    assert_eq!(scores(&fashion_during), scores(&fashion));
    assert_eq!(scores(&fashion_after), scores(&fashion));
    assert_eq!(scores(&rgb_after), scores(&rgb));
    for info in &gates_after {
        assert_eq!(info, &infos[&info.gate], "{}", info.gate);
    }

    // Each gate's label on the metrics, with its image counts (this binary's only
    // server, so the counts are exact).
    let metrics = server.metrics();
    for (gate, sent) in [
        ("rgb", 2 * rgb_images.len()),
        ("digits", 60),
        ("fashion", 60),
    ] {
        assert_eq!(images_counted(&metrics, gate), sent as f64, "{gate}");
        assert!(
            metrics.contains(&format!(
                r#"oodgate_model_info{{gate="{gate}",model="{}""#,
                infos[gate].model_name
            )),
            "{gate}:\n{metrics}"
        );
    }
    assert_eq!(
        metric_value(&metrics, r#"oodgate_reloads_total{gate="rgb",result="ok"}"#),
        Some(1.0)
    );
    for gate in ["digits", "fashion"] {
        let series = format!(r#"oodgate_reloads_total{{gate="{gate}",result="ok"}}"#);
        assert!(
            metric_value(&metrics, &series).unwrap_or(0.0) == 0.0,
            "{series}"
        );
    }

    // The reference images: the gate's own files, by the ids verdicts name.
    let agent = http_agent(None);
    for id in [0, 999] {
        let url = format!("http://{}/v1/gates/rgb/training/{id}", server.http);
        let mut response = agent.get(&url).call().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{url}");
        assert_eq!(response.headers()["content-type"], "image/png");
        let source = response.headers()["x-oodgate-source"]
            .to_str()
            .unwrap()
            .to_owned();
        let label: usize = response.headers()["x-oodgate-label"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = response.body_mut().read_to_vec().unwrap();
        let (class, _) = source.split_once('/').expect("class/file");
        assert_eq!(class, rgb_classes[label], "{source}");
        let file = dir.join("reference").join(&source);
        assert_eq!(
            body,
            std::fs::read(&file).unwrap(),
            "{} as it is",
            file.display()
        );
        let image = image::load_from_memory(&body).unwrap();
        assert_eq!((image.width(), image.height()), (40, 36), "{source}");
    }
    let missing = agent
        .get(&format!(
            "http://{}/v1/gates/rgb/training/1000",
            server.http
        ))
        .call()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}
