//! Writes small seed inputs for the fuzz targets: `cargo run -- <fuzz/corpus>`.
//!
//! preprocess: valid PNG/JPEG (gray, RGB, RGBA, 16-bit), truncated files, a PNG header
//! claiming 100000x100000, raw-pixel inputs (9-byte header: width u32 LE, height u32
//! LE, channels u8, then the pixels).
//! request: `oodgate.v1.DetectRequest` bodies, encoded by hand (protobuf wire format).

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage};

/// A 28x28 "digit": a dark background with a bright ring, like an MNIST zero.
fn digit() -> GrayImage {
    GrayImage::from_fn(28, 28, |x, y| {
        let (dx, dy) = (x as f32 - 13.5, y as f32 - 13.5);
        let r = (dx * dx / 36.0 + dy * dy / 81.0).sqrt();
        Luma([if (0.8..1.2).contains(&r) { 255 } else { 0 }])
    })
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

fn raw_input(width: u32, height: u32, channels: u8, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.push(channels);
    out.extend_from_slice(pixels);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG signature and a valid IHDR claiming `width` x `height` 8-bit gray, then one
/// tiny IDAT and IEND: a decoder that trusts the header allocates width x height bytes.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray, deflate, adaptive, no interlace
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]); // zlib of [0]
    chunk(b"IEND", &[]);
    out
}

// Protobuf wire format, enough for DetectRequest.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}
fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
fn field_double(out: &mut Vec<u8>, field: u64, v: f64) {
    varint(out, (field << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

enum Data<'a> {
    Raw(u32, u32, u32, &'a [u8]),
    Encoded(&'a [u8]),
    Missing,
}

fn image_msg(id: &str, data: Data<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    field_bytes(&mut out, 1, id.as_bytes());
    match data {
        Data::Raw(w, h, c, pixels) => {
            let mut raw = Vec::new();
            field_varint(&mut raw, 1, u64::from(w));
            field_varint(&mut raw, 2, u64::from(h));
            field_varint(&mut raw, 3, u64::from(c));
            field_bytes(&mut raw, 4, pixels);
            field_bytes(&mut out, 2, &raw);
        }
        Data::Encoded(bytes) => field_bytes(&mut out, 3, bytes),
        Data::Missing => {}
    }
    out
}

/// `threshold`: (1 = contamination | 2 = false_rejection_rate, value).
fn request(images: &[Vec<u8>], threshold: Option<(u64, f64)>, source: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for image in images {
        field_bytes(&mut out, 1, image);
    }
    if let Some((kind, value)) = threshold {
        let mut t = Vec::new();
        field_double(&mut t, kind, value);
        field_bytes(&mut out, 2, &t);
    }
    if !source.is_empty() {
        field_bytes(&mut out, 3, source.as_bytes());
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    println!("{:>6} bytes  {}", bytes.len(), dir.join(name).display());
}

fn main() {
    let root = std::env::args().nth(1).expect("usage: seedgen <fuzz/corpus>");
    let pre = Path::new(&root).join("preprocess");
    let req = Path::new(&root).join("request");

    let gray = DynamicImage::ImageLuma8(digit());
    let rgb = DynamicImage::ImageRgb8(RgbImage::from_fn(32, 32, |x, y| {
        Rgb([(x * 8) as u8, (y * 8) as u8, ((x + y) * 4) as u8])
    }));
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(9, 7, |x, y| {
        Rgba([(x * 28) as u8, (y * 36) as u8, 128, (x * y * 4) as u8])
    }));
    let gray16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(6, 5, |x, y| {
        Luma([(x * 10_000 + y * 1_000) as u16])
    }));

    let gray_png = encode(&gray, ImageFormat::Png);
    let gray_jpg = encode(&gray, ImageFormat::Jpeg);
    let rgb_png = encode(&rgb, ImageFormat::Png);
    let rgb_jpg = encode(&rgb, ImageFormat::Jpeg);
    write(&pre, "seed-gray28.png", &gray_png);
    write(&pre, "seed-gray28.jpg", &gray_jpg);
    write(&pre, "seed-rgb32.png", &rgb_png);
    write(&pre, "seed-rgb32.jpg", &rgb_jpg);
    write(&pre, "seed-rgba9x7.png", &encode(&rgba, ImageFormat::Png));
    write(&pre, "seed-gray16-6x5.png", &encode(&gray16, ImageFormat::Png));
    write(&pre, "seed-truncated.png", &gray_png[..gray_png.len() / 2]);
    write(&pre, "seed-truncated.jpg", &rgb_jpg[..rgb_jpg.len() / 2]);
    write(&pre, "seed-header-100000x100000.png", &png_header_only(100_000, 100_000));
    write(&pre, "seed-header-8192x2048.png", &png_header_only(8192, 2048));
    write(&pre, "seed-raw-gray28.bin", &raw_input(28, 28, 1, digit().as_raw()));
    write(&pre, "seed-raw-rgb4x3.bin", &raw_input(4, 3, 3, &[200; 36]));
    write(&pre, "seed-raw-rgba2x2.bin", &raw_input(2, 2, 4, &[7; 16]));
    write(&pre, "seed-raw-huge-claim.bin", &raw_input(100_000, 100_000, 1, &[0; 16]));

    let mnist = image_msg("0", Data::Raw(28, 28, 1, digit().as_raw()));
    write(&req, "seed-mnist-raw.pb", &request(&[mnist.clone()], None, "mnist"));
    write(
        &req,
        "seed-png-contamination.pb",
        &request(&[image_msg("png", Data::Encoded(&gray_png))], Some((1, 0.01)), "replay"),
    );
    let mixed = [
        image_msg("a", Data::Raw(4, 3, 3, &[200; 36])),
        image_msg("b", Data::Encoded(&rgb_jpg)),
        image_msg("c", Data::Missing),
        image_msg("d", Data::Raw(28, 28, 1, &[0; 10])),
        image_msg("e", Data::Encoded(b"not an image")),
    ];
    write(&req, "seed-mixed-frr.pb", &request(&mixed, Some((2, 0.5)), "cifar10"));
    write(&req, "seed-bad-threshold.pb", &request(&[mnist.clone()], Some((1, 0.7)), ""));
    write(&req, "seed-empty-batch.pb", &request(&[], None, "x"));
    let full = request(&[mnist], Some((1, 0.001)), "fashion");
    write(&req, "seed-truncated.pb", &full[..full.len() - 100]);
}
