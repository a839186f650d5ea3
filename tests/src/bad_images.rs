//! The bad-input cases, shared by the gRPC tests (`tests/bad_input.rs`) and the HTTP
//! JSON tests (`tests/http_api.rs`): every kind of broken image with what its error
//! must say, good images to mix them with, and the JSON form of an image.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use oodgate_proto::v1;
use serde_json::{Value, json};

use crate::{mnist_test, raw_image};

/// One bad image (its id is `bad-<kind>`) and what its error message must say.
pub struct Bad {
    pub image: v1::Image,
    pub says: Vec<&'static str>,
}

/// What one image of a request must get: None, a verdict (classify or reject, with LOF
/// evidence); Some, an error whose message says every part.
pub type Expected = Option<Vec<&'static str>>;

/// Encoded image bytes (PNG, JPEG or anything else), as a client sends them.
pub fn encoded(id: &str, bytes: Vec<u8>) -> v1::Image {
    v1::Image {
        id: id.into(),
        data: Some(v1::image::Data::Encoded(bytes)),
    }
}

/// An image as `POST /v1/detect` takes it: raw pixels or encoded bytes, base64; an image
/// without data is just its id.
pub fn json_image(image: &v1::Image) -> Value {
    let mut json = json!({ "id": image.id });
    match &image.data {
        Some(v1::image::Data::Raw(raw)) => {
            json["raw"] = json!({
                "width": raw.width,
                "height": raw.height,
                "channels": raw.channels,
                "pixels_base64": BASE64.encode(&raw.pixels),
            });
        }
        Some(v1::image::Data::Encoded(bytes)) => {
            json["encoded_base64"] = BASE64.encode(bytes).into();
        }
        None => {}
    }
    json
}

/// A deterministic noise image (so PNG and JPEG have real pixel data to cut into).
pub fn noise(width: u32, height: u32, channels: u8, seed: u32) -> image::DynamicImage {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 8) as u8
    };
    let len = (width * height) as usize * usize::from(channels);
    let pixels: Vec<u8> = (0..len).map(|_| next()).collect();
    match channels {
        1 => image::DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(width, height, pixels).unwrap(),
        ),
        _ => image::DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(width, height, pixels).unwrap(),
        ),
    }
}

pub fn encode(image: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A decompression bomb: a small, well-formed 8-bit grayscale PNG whose header declares
/// `width` x `height` pixels and whose IDAT starts a zlib stream of zero rows (the
/// first `rows` rows of it; a decoder that believed the header would allocate it all).
fn png_bomb(width: u32, height: u32, rows: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray, deflate, filter 0, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; width as usize + 1];
    for _ in 0..rows {
        zlib.write_all(&row).unwrap();
    }
    png_chunk(&mut out, b"IDAT", &zlib.finish().unwrap());
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A 2x2 24-bit BMP, by hand (the `image` crate here has only PNG and JPEG).
fn encode_bmp() -> Vec<u8> {
    let row = [0u8, 0, 255, 255, 255, 255, 0, 0]; // two BGR pixels + 2 bytes padding
    let pixels: Vec<u8> = [row, row].concat();
    let mut out = Vec::new();
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&(54 + pixels.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&2i32.to_le_bytes());
    out.extend_from_slice(&2i32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    out.extend_from_slice(&pixels);
    out
}

/// Every kind of bad image; ids are `bad-<kind>`.
pub fn bad_images() -> Vec<Bad> {
    let digit = mnist_test().image(0).to_vec();
    let png = encode(&noise(64, 64, 1, 7), image::ImageFormat::Png);
    let bomb = png_bomb(20_000, 20_000, 64);
    assert!(bomb.len() < 4096, "the bomb is small: {} bytes", bomb.len());
    let pixel_bomb = png_bomb(8000, 8000, 16); // each side allowed, 64 M pixels not
    let mut corrupt_png = png.clone();
    for b in &mut corrupt_png[40..] {
        *b = b.wrapping_mul(31).wrapping_add(17);
    }
    let mut random = vec![0u8; 512];
    let mut state = 99u32;
    for b in &mut random {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *b = (state >> 16) as u8;
    }
    random[0] = 0x42; // not a PNG or JPEG signature by chance
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec();
    let bmp = encode_bmp();

    let raw = |kind: &str, w, h, c, pixels: Vec<u8>, says: Vec<&'static str>| Bad {
        image: raw_image(&format!("bad-{kind}"), w, h, c, pixels),
        says,
    };
    let enc = |kind: &str, bytes: Vec<u8>, says: Vec<&'static str>| Bad {
        image: encoded(&format!("bad-{kind}"), bytes),
        says,
    };
    vec![
        raw(
            "short-pixels",
            28,
            28,
            1,
            digit[..100].to_vec(),
            vec!["pixels hold 100 bytes", "28x28x1 needs 784"],
        ),
        raw(
            "long-pixels",
            28,
            28,
            1,
            [digit.clone(), vec![0; 16]].concat(),
            vec!["pixels hold 800 bytes", "28x28x1 needs 784"],
        ),
        raw(
            "rgb-size-as-gray",
            28,
            28,
            3,
            digit.clone(),
            vec!["pixels hold 784 bytes", "28x28x3 needs 2352"],
        ),
        raw("zero-width", 0, 28, 1, vec![], vec!["at least 1", "0x28"]),
        raw("zero-height", 28, 0, 1, vec![], vec!["at least 1", "28x0"]),
        raw(
            "huge",
            100_000,
            100_000,
            1,
            vec![0; 16],
            vec!["100000x100000", "over the limit"],
        ),
        raw(
            "max-u32",
            u32::MAX,
            u32::MAX,
            4,
            vec![0; 16],
            vec!["4294967295x4294967295", "over the limit"],
        ),
        raw(
            "two-channels",
            28,
            28,
            2,
            vec![0; 28 * 28 * 2],
            vec!["unsupported channel count 2"],
        ),
        raw(
            "five-channels",
            28,
            28,
            5,
            vec![0; 28 * 28 * 5],
            vec!["unsupported channel count 5"],
        ),
        raw(
            "zero-channels",
            28,
            28,
            0,
            vec![],
            vec!["unsupported channel count 0"],
        ),
        enc("corrupt-png", corrupt_png, vec!["could not decode"]),
        enc(
            "truncated-png",
            png[..png.len() / 2].to_vec(),
            vec!["could not decode"],
        ),
        enc(
            "png-header-only",
            png[..33].to_vec(),
            vec!["could not decode"],
        ),
        enc("png-bomb", bomb, vec!["20000x20000", "over the limit"]),
        enc(
            "png-pixel-bomb",
            pixel_bomb,
            vec!["8000x8000", "over the limit"],
        ),
        enc("gif", gif, vec!["unknown image encoding"]),
        enc("bmp", bmp, vec!["unknown image encoding"]),
        enc("random-bytes", random, vec!["unknown image encoding"]),
        enc("empty-bytes", vec![], vec!["unknown image encoding"]),
        Bad {
            image: v1::Image {
                id: "bad-missing-data".into(),
                data: None,
            },
            says: vec!["no pixel data"],
        },
    ]
}

/// JPEGs cut short (noise and an MNIST digit, each cut at 50, 80 and 95 % and just
/// before the end-of-image marker): errors, not images with the missing part guessed.
pub fn truncated_jpegs() -> Vec<Bad> {
    let noise = encode(&noise(64, 64, 3, 9), image::ImageFormat::Jpeg);
    // Digit-like content too: a 28x28 gray MNIST digit as JPEG.
    let digit = image::GrayImage::from_raw(28, 28, mnist_test().image(0).to_vec()).unwrap();
    let digit = encode(
        &image::DynamicImage::ImageLuma8(digit),
        image::ImageFormat::Jpeg,
    );
    let mut cuts = Vec::new();
    for (name, bytes) in [("noise", &noise), ("digit", &digit)] {
        for fraction in [0.5, 0.8, 0.95] {
            let cut = (bytes.len() as f64 * fraction) as usize;
            let id = format!("{name}-jpeg-cut-at-{cut}-of-{}", bytes.len());
            cuts.push((id, bytes[..cut].to_vec()));
        }
        // Everything but the end-of-image marker.
        let id = format!("{name}-jpeg-without-eoi");
        cuts.push((id, bytes[..bytes.len() - 2].to_vec()));
    }
    cuts.into_iter()
        .map(|(id, bytes)| Bad {
            image: encoded(&id, bytes),
            says: vec!["could not decode"],
        })
        .collect()
}

/// Good images of every accepted kind; ids are `good-<n>`.
pub fn good_images(count: usize, offset: usize) -> Vec<v1::Image> {
    let mnist = mnist_test();
    (0..count)
        .map(|n| {
            let i = offset + n;
            let id = format!("good-{i}");
            let digit = mnist.image(i % mnist.len()).to_vec();
            match i % 4 {
                0 | 1 => raw_image(&id, 28, 28, 1, digit),
                2 => {
                    let img = image::GrayImage::from_raw(28, 28, digit).unwrap();
                    encoded(
                        &id,
                        encode(
                            &image::DynamicImage::ImageLuma8(img),
                            image::ImageFormat::Png,
                        ),
                    )
                }
                _ => {
                    // RGB at another size: converted and resized by the server.
                    let img = image::GrayImage::from_raw(28, 28, digit).unwrap();
                    let rgb = image::DynamicImage::ImageLuma8(img)
                        .resize_exact(40, 40, image::imageops::FilterType::Triangle)
                        .into_rgb8();
                    raw_image(&id, 40, 40, 3, rgb.into_raw())
                }
            }
        })
        .collect()
}

/// One request's images: every bad image between good ones (a good one first and last),
/// each with what it must get.
pub fn mixed_batch(bad: &[Bad]) -> Vec<(v1::Image, Expected)> {
    let good = good_images(bad.len() + 1, 0);
    let mut images = Vec::new();
    for (i, g) in good.into_iter().enumerate() {
        images.push((g, None));
        if let Some(b) = bad.get(i) {
            images.push((b.image.clone(), Some(b.says.clone())));
        }
    }
    images
}
