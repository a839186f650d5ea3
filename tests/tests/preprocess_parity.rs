//! The float preprocessing path (`Transform::Float`) against its PIL + numpy reference
//! (`tests/python/preprocess_reference.py`), on generated PNGs of odd sizes: gray, gray
//! with alpha, RGB and RGBA, downscaled, upscaled and of the model's own size.
//!
//! Every resize policy, every colour conversion (gray->gray, gray->RGB, RGB->RGB,
//! RGB->BGR, RGB->gray, alpha dropped), NHWC and NCHW, ImageNet mean/std and a plain
//! scale of 255: the model inputs must agree within 1e-5.
//!
//! JPEG is compared loosely, on one photo-like image: Pillow (libjpeg-turbo) and the
//! `image` crate (zune-jpeg) decode to slightly different pixels, so only the decoded
//! pixels' closeness is asserted, not the strict bound.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageFormat, RgbImage, RgbaImage};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use oodgate_e2e::{python, run, workspace};
use oodgate_server::preprocess::{
    Colour, FloatTransform, ImageInput, InputSpec, Layout, Limits, Resize, Transform, prepare,
};
use serde_json::json;

const TOLERANCE: f32 = 1e-5;

/// A value for pixel (x, y) of channel c: a smooth ramp plus hashed texture, so a
/// resize has edges to blur and every channel differs.
fn value(x: u32, y: u32, c: u32, w: u32, h: u32) -> u8 {
    let ramp = (x * 160 / w + y * 95 / h + c * 40) % 256;
    let mut hash = x.wrapping_mul(0x9E37_79B1)
        ^ y.wrapping_mul(0x85EB_CA77)
        ^ (c + 1).wrapping_mul(0xC2B2_AE3D);
    hash ^= hash >> 15;
    hash = hash.wrapping_mul(0x2C1B_3C6D);
    hash ^= hash >> 12;
    let noise = hash % 96;
    // Some pixels at the extremes, where clamping or rounding would show.
    match hash % 23 {
        0 => 0,
        1 => 255,
        _ => ((ramp * 5 + noise * 3) / 6).min(255) as u8,
    }
}

fn image(kind: &str, w: u32, h: u32) -> DynamicImage {
    match kind {
        "gray" => GrayImage::from_fn(w, h, |x, y| image::Luma([value(x, y, 0, w, h)])).into(),
        "gray+alpha" => GrayAlphaImage::from_fn(w, h, |x, y| {
            image::LumaA([value(x, y, 0, w, h), value(x, y, 3, w, h)])
        })
        .into(),
        "rgb" => RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([0, 1, 2].map(|c| value(x, y, c, w, h)))
        })
        .into(),
        "rgba" => RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([0, 1, 2, 3].map(|c| value(x, y, c, w, h)))
        })
        .into(),
        other => panic!("no image kind {other}"),
    }
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    match format {
        ImageFormat::Jpeg => image
            .write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, 90))
            .unwrap(),
        _ => image
            .write_to(&mut Cursor::new(&mut bytes), format)
            .unwrap(),
    }
    bytes
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A normalisation by name: ImageNet's (for gray, the mean of its channels') or
/// plain `/ 255`.
fn normalisation(name: &str, colour: Colour) -> (f32, [f32; 4], [f32; 4]) {
    let (mean, std) = match (name, colour) {
        ("scale255", _) => ([0.0; 3], [1.0; 3]),
        ("imagenet", Colour::Gray) => ([0.449; 3], [0.226; 3]),
        ("imagenet", Colour::Rgb) => (IMAGENET_MEAN, IMAGENET_STD),
        ("imagenet", Colour::Bgr) => (
            [IMAGENET_MEAN[2], IMAGENET_MEAN[1], IMAGENET_MEAN[0]],
            [IMAGENET_STD[2], IMAGENET_STD[1], IMAGENET_STD[0]],
        ),
        other => panic!("no normalisation {other:?}"),
    };
    let four = |v: [f32; 3]| [v[0], v[1], v[2], 0.0];
    (255.0, four(mean), four(std))
}

struct Case {
    /// What the per-group report names: conversion, policy, normalisation.
    group: String,
    name: String,
    bytes: Vec<u8>,
    spec: InputSpec,
    jpeg: bool,
}

fn spec_json(spec: &InputSpec) -> serde_json::Value {
    let Transform::Float(t) = spec.transform else {
        panic!("a float spec")
    };
    let (crop_fraction, pad) = match t.resize {
        Resize::CenterCrop { crop_fraction } => (crop_fraction, 0.0),
        Resize::Letterbox { pad } => (1.0, pad),
        Resize::Stretch => (1.0, 0.0),
    };
    let c = spec.channels as usize;
    json!({
        "layout": spec.layout.as_str(),
        "height": spec.height,
        "width": spec.width,
        "colour": t.colour.as_str(),
        "resize": t.resize.as_str(),
        "crop_fraction": crop_fraction,
        "pad": pad,
        "scale": t.scale,
        "mean": &t.mean[..c],
        "std": &t.std[..c],
    })
}

fn cases() -> Vec<Case> {
    // (kind, width, height): down- and upscaled, thin both ways, and the model's size.
    let images = [
        ("gray", 37, 23),
        ("gray", 300, 200),
        ("gray", 24, 20),
        ("gray+alpha", 5, 9),
        ("rgb", 37, 23),
        ("rgb", 300, 200),
        ("rgb", 5, 9),
        ("rgb", 24, 20),
        ("rgba", 23, 37),
    ];
    let policies = [
        Resize::Stretch,
        Resize::CenterCrop {
            crop_fraction: 0.875,
        },
        // Not exact in binary: the reference must use the same f32 value.
        Resize::CenterCrop { crop_fraction: 0.9 },
        Resize::CenterCrop { crop_fraction: 1.0 },
        Resize::Letterbox { pad: 114.5 },
    ];
    let mut cases = Vec::new();
    for (kind, w, h) in images {
        let source = image(kind, w, h);
        let bytes = encode(&source, ImageFormat::Png);
        // The bench's case, 300x200 to 224x224, for the colour picture only.
        let sizes: &[(u32, u32)] = if (kind, w) == ("rgb", 300) {
            &[(20, 24), (32, 32), (224, 224)]
        } else {
            &[(20, 24), (32, 32)]
        };
        for &(height, width) in sizes {
            for colour in [Colour::Gray, Colour::Rgb, Colour::Bgr] {
                for resize in policies {
                    for layout in [Layout::Nhwc, Layout::Nchw] {
                        for norm in ["imagenet", "scale255"] {
                            let (scale, mean, std) = normalisation(norm, colour);
                            let spec = InputSpec {
                                layout,
                                height,
                                width,
                                channels: colour.channels(),
                                transform: Transform::Float(FloatTransform {
                                    colour,
                                    resize,
                                    scale,
                                    mean,
                                    std,
                                }),
                            };
                            let from = if kind.starts_with("gray") {
                                "gray"
                            } else {
                                "rgb"
                            };
                            let policy = match resize {
                                Resize::CenterCrop { crop_fraction } => {
                                    format!("center-crop {crop_fraction}")
                                }
                                other => other.as_str().into(),
                            };
                            cases.push(Case {
                                group: format!("{from}->{} {policy} {norm}", colour.as_str()),
                                name: format!(
                                    "{kind} {w}x{h} -> {} {width}x{height} {policy} {} {norm}",
                                    colour.as_str(),
                                    layout.as_str()
                                ),
                                bytes: bytes.clone(),
                                spec,
                                jpeg: false,
                            });
                        }
                    }
                }
            }
        }
    }
    // One JPEG, loosely (see the module doc).
    let photo = encode(&image("rgb", 300, 200), ImageFormat::Jpeg);
    let (scale, mean, std) = normalisation("scale255", Colour::Rgb);
    cases.push(Case {
        group: "jpeg (loose)".into(),
        name: "rgb 300x200 JPEG -> rgb 224x224 center-crop 0.875 NCHW".into(),
        bytes: photo,
        spec: InputSpec {
            layout: Layout::Nchw,
            height: 224,
            width: 224,
            channels: 3,
            transform: Transform::Float(FloatTransform {
                colour: Colour::Rgb,
                resize: Resize::CenterCrop {
                    crop_fraction: 0.875,
                },
                scale,
                mean,
                std,
            }),
        },
        jpeg: true,
    });
    cases
}

fn read_npy(path: &Path) -> ArrayD<f32> {
    ArrayD::<f32>::read_npy(
        std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn float_preprocessing_matches_pil() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let mut jobs = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let ext = if case.jpeg { "jpg" } else { "png" };
        let image = dir.path().join(format!("{i}.{ext}"));
        std::fs::write(&image, &case.bytes).unwrap();
        jobs.push(json!({
            "image": image,
            "out": dir.path().join(format!("{i}.npy")),
            "spec": spec_json(&case.spec),
        }));
    }
    let jobs_file = dir.path().join("jobs.json");
    std::fs::write(&jobs_file, serde_json::to_vec(&jobs).unwrap()).unwrap();
    let printed = run(Command::new(python())
        .arg(workspace().join("tests/python/preprocess_reference.py"))
        .arg(&jobs_file));
    println!("reference: {}", printed.trim());

    let limits = Limits::default();
    let mut worst: BTreeMap<&str, (f32, &str)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let expected = read_npy(&dir.path().join(format!("{i}.npy")));
        let spec = &case.spec;
        let (h, w, c) = (
            spec.height as usize,
            spec.width as usize,
            spec.channels as usize,
        );
        let shape = match spec.layout {
            Layout::Nhwc => [h, w, c],
            Layout::Nchw => [c, h, w],
        };
        assert_eq!(expected.shape(), shape, "{}: reference shape", case.name);
        let ours = prepare(ImageInput::Encoded(&case.bytes), spec, &limits)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(ours.len(), expected.len(), "{}", case.name);
        let diffs: Vec<f32> = ours
            .iter()
            .zip(expected.iter())
            .map(|(a, b)| (a - b).abs())
            .collect();
        let max = diffs.iter().copied().fold(0.0, f32::max);
        assert!(max.is_finite(), "{}: non-finite values", case.name);
        if case.jpeg {
            // Two JPEG decoders: each within a few pixel units of the other, and close
            // on average (a wrong crop or channel order would be tens of units off).
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            println!(
                "{}: max |rust - python| {max:.3e} ({:.2} pixel units), mean {mean:.3e}",
                case.name,
                max * 255.0
            );
            assert!(max * 255.0 <= 8.0, "{}: max {max}", case.name);
            assert!(mean * 255.0 <= 1.0, "{}: mean {mean}", case.name);
            continue;
        }
        let entry = worst.entry(&case.group).or_insert((0.0, &case.name));
        if max > entry.0 {
            *entry = (max, &case.name);
        }
        if max > TOLERANCE {
            failures.push(format!("{}: max |rust - python| = {max:e}", case.name));
        }
    }
    println!(
        "max |rust - python| per group ({} PNG cases):",
        cases.len() - 1
    );
    for (group, (max, name)) in &worst {
        println!("  {group:<40} {max:.3e}  ({name})");
    }
    let overall = worst.values().map(|v| v.0).fold(0.0, f32::max);
    println!("overall max {overall:.3e}");
    assert!(
        failures.is_empty(),
        "{} of {} cases differ by more than {TOLERANCE}:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
