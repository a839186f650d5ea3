//! Drawing a shape the way MNIST prepared its digits.
//!
//! A shape (pen strokes, or a filled glyph outline) gets a random hand (rotation, shear,
//! aspect change; strokes also a wobble), is drawn anti-aliased with `tiny-skia` at four
//! times the final scale, and then normalised as MNIST was: cropped to the ink, scaled
//! (area average) so its longer side is 20 px with the aspect ratio kept, and pasted
//! into a black 28x28 image with the ink's centre of mass at the centre. White ink on
//! black.

use rand::Rng;
use tiny_skia::{FillRule, LineCap, LineJoin, Paint, Path, PathBuilder, Pixmap, Stroke, Transform};

/// Side of the final image.
pub(super) const SIZE: usize = 28;
/// Longer side of the ink's box in the final image.
pub(super) const BOX: usize = 20;
/// Longer side of the ink's box while drawing: four times [`BOX`], so strokes and
/// outlines are anti-aliased twice (by `tiny-skia`, then by the area average).
const CANVAS_BOX: f32 = 4.0 * BOX as f32;
/// Coverage from which a canvas pixel counts as ink for the crop: the anti-aliased
/// edge of a shape is its 50 % contour.
const INK: f32 = 0.5;
/// How far (final pixels) the ink's centre of mass may end up from the image centre,
/// when the ink has to be moved to stay inside the image. Beyond it the drawing is
/// refused and drawn again.
pub(super) const MAX_CENTRE_ERROR: f32 = 1.0;

/// Polylines, x right, y down, in any unit.
pub(super) type Strokes = Vec<Vec<(f32, f32)>>;

/// How a path is inked. Widths are in pixels of the final 28x28 image.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ink {
    /// A round pen along the path.
    Pen(f32),
    /// The path filled (non-zero winding, as fonts are), its outline also stroked with
    /// this width (0: not at all) to embolden it.
    Fill(f32),
}

/// A random hand: rotation up to `rotate_deg`, shear up to `shear`, x stretched or
/// squeezed by up to `aspect` (a fraction).
pub(super) fn random_hand(
    rng: &mut impl Rng,
    rotate_deg: f32,
    shear: f32,
    aspect: f32,
) -> Transform {
    let angle = rng.random_range(-rotate_deg..=rotate_deg);
    let kx = rng.random_range(-shear..=shear);
    let sx = 1.0 + rng.random_range(-aspect..=aspect);
    Transform::from_rotate(angle)
        .pre_concat(Transform::from_row(1.0, 0.0, kx, 1.0, 0.0, 0.0))
        .pre_concat(Transform::from_scale(sx, 1.0))
}

/// The default hand of the synthetic sets: ±12°, shear ±0.25, aspect ±12 %.
pub(super) fn hand(rng: &mut impl Rng) -> Transform {
    random_hand(rng, 12.0, 0.25, 0.12)
}

/// A hand's wobble on polylines: each vertex moved by up to `jitter` (a fraction of the
/// drawing's size), then the lines cut into short pieces and bent by a smooth random
/// displacement of amplitude `bend` (also a fraction of the size), as a hand that does
/// not draw quite straight.
pub(super) fn wobble(rng: &mut impl Rng, strokes: &Strokes, jitter: f32, bend: f32) -> Strokes {
    let size = extent(strokes).max(1e-6);
    let step = size / 24.0;
    // Two plane waves per axis, wavelength about one to two drawing sizes.
    let mut wave = || {
        let direction = rng.random_range(0.0..std::f32::consts::TAU);
        let k = std::f32::consts::TAU / (size * rng.random_range(0.8..2.0));
        let phase = rng.random_range(0.0..std::f32::consts::TAU);
        (k * direction.cos(), k * direction.sin(), phase)
    };
    let waves = [wave(), wave(), wave(), wave()];
    let amplitude = bend * size / 2.0;
    let field = |(x, y): (f32, f32)| {
        let w = |(kx, ky, phase): (f32, f32, f32)| (kx * x + ky * y + phase).sin();
        (
            x + amplitude * (w(waves[0]) + w(waves[1])),
            y + amplitude * (w(waves[2]) + w(waves[3])),
        )
    };
    strokes
        .iter()
        .map(|line| {
            let moved: Vec<(f32, f32)> = line
                .iter()
                .map(|&(x, y)| {
                    (
                        x + size * rng.random_range(-jitter..=jitter),
                        y + size * rng.random_range(-jitter..=jitter),
                    )
                })
                .collect();
            let mut out = Vec::with_capacity(moved.len() * 4);
            out.push(field(moved[0]));
            for pair in moved.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let pieces = ((b.0 - a.0).hypot(b.1 - a.1) / step).ceil().max(1.0) as usize;
                for j in 1..=pieces {
                    let t = j as f32 / pieces as f32;
                    out.push(field((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))));
                }
            }
            out
        })
        .collect()
}

/// Longer side of the polylines' bounding box.
fn extent(strokes: &Strokes) -> f32 {
    let points = || strokes.iter().flatten();
    let span = |f: fn(&(f32, f32)) -> f32| {
        let lo = points().map(f).fold(f32::INFINITY, f32::min);
        let hi = points().map(f).fold(f32::NEG_INFINITY, f32::max);
        hi - lo
    };
    span(|p| p.0).max(span(|p| p.1))
}

/// Polylines as a path. A single point becomes a tiny segment, so a round pen draws a
/// dot. None when there is nothing to draw.
pub(super) fn polylines(strokes: &Strokes) -> Option<Path> {
    let mut builder = PathBuilder::new();
    for line in strokes.iter().filter(|l| !l.is_empty()) {
        let (x, y) = line[0];
        builder.move_to(x, y);
        if line.len() == 1 {
            builder.line_to(x + 1e-3, y);
        }
        for &(x, y) in &line[1..] {
            builder.line_to(x, y);
        }
    }
    builder.finish()
}

/// Draws `path` (after `hand`) with `ink`, then normalises it as MNIST did.
///
/// None when there is no ink, or when the ink's centre of mass cannot be put within
/// [`MAX_CENTRE_ERROR`] of the centre without cutting the ink (a very lopsided shape):
/// the caller draws again.
pub(super) fn draw(path: &Path, hand: Transform, ink: Ink) -> Option<[u8; SIZE * SIZE]> {
    let path = path.clone().transform(hand)?;
    let bounds = path.compute_tight_bounds()?;
    let long = bounds.width().max(bounds.height());
    if !long.is_finite() || long <= 0.0 {
        return None;
    }
    // A pen of `pen` final pixels: the ink's box is the path's box plus one pen width,
    // and that box is scaled to BOX, so at CANVAS_BOX scale the pen is
    // pen * CANVAS_BOX / (BOX - pen) wide.
    let width = |pen: f32| pen * CANVAS_BOX / (BOX as f32 - pen);
    let pen = match ink {
        Ink::Pen(pen) | Ink::Fill(pen) => width(pen.clamp(0.0, BOX as f32 / 2.0)),
    };
    let scale = CANVAS_BOX / long;
    let pad = pen / 2.0 + 2.0;
    let path = path.transform(Transform::from_row(
        scale,
        0.0,
        0.0,
        scale,
        pad - bounds.left() * scale,
        pad - bounds.top() * scale,
    ))?;
    let w = (bounds.width() * scale + 2.0 * pad).ceil() as u32;
    let h = (bounds.height() * scale + 2.0 * pad).ceil() as u32;
    let mut pixmap = Pixmap::new(w, h)?;
    let mut paint = Paint::default();
    paint.set_color_rgba8(255, 255, 255, 255);
    paint.anti_alias = true;
    let stroke = Stroke {
        width: pen,
        line_cap: LineCap::Round,
        line_join: LineJoin::Round,
        ..Stroke::default()
    };
    match ink {
        Ink::Pen(_) => pixmap.stroke_path(&path, &paint, &stroke, Transform::identity(), None),
        Ink::Fill(_) => {
            pixmap.fill_path(
                &path,
                &paint,
                FillRule::Winding,
                Transform::identity(),
                None,
            );
            if pen > 0.0 {
                pixmap.stroke_path(&path, &paint, &stroke, Transform::identity(), None);
            }
        }
    }
    let coverage: Vec<f32> = pixmap
        .data()
        .chunks_exact(4)
        .map(|rgba| f32::from(rgba[3]) / 255.0)
        .collect();
    normalise(&coverage, w as usize, h as usize)
}

/// MNIST's normalisation of a coverage map (`w` x `h`, values in [0, 1]).
pub(super) fn normalise(coverage: &[f32], w: usize, h: usize) -> Option<[u8; SIZE * SIZE]> {
    // 1. Crop to the ink.
    let ink = |x: usize, y: usize| coverage[y * w + x] >= INK;
    let rows: Vec<usize> = (0..h).filter(|&y| (0..w).any(|x| ink(x, y))).collect();
    let cols: Vec<usize> = (0..w).filter(|&x| (0..h).any(|y| ink(x, y))).collect();
    let (&y0, &y1) = (rows.first()?, rows.last()?);
    let (&x0, &x1) = (cols.first()?, cols.last()?);
    let (cw, ch) = (x1 + 1 - x0, y1 + 1 - y0);

    // 2. Longer side to BOX pixels, aspect kept, centred in a BOX x BOX box; each box
    // pixel is the area average of the canvas pixels under it.
    let f = BOX as f32 / cw.max(ch) as f32;
    let wx = box_weights(cw, f);
    let wy = box_weights(ch, f);
    let mut boxed = [0f32; BOX * BOX];
    // Rows first (BOX x cw), then columns.
    let mut tmp = vec![0f32; BOX * cw];
    for (by, weights) in wy.iter().enumerate() {
        for &(y, wgt) in weights {
            let row = &coverage[(y0 + y) * w + x0..(y0 + y) * w + x0 + cw];
            for (t, &c) in tmp[by * cw..(by + 1) * cw].iter_mut().zip(row) {
                *t += wgt * c;
            }
        }
    }
    for by in 0..BOX {
        for (bx, weights) in wx.iter().enumerate() {
            boxed[by * BOX + bx] = weights.iter().map(|&(x, wgt)| wgt * tmp[by * cw + x]).sum();
        }
    }

    // 3. Into the 28x28 image, moved by whole pixels so the centre of mass is nearest
    // the centre (14, 14), but never so far that ink falls off the image.
    let mass: f32 = boxed.iter().sum();
    if mass <= 0.0 {
        return None;
    }
    let moment = |axis: fn(usize) -> usize| {
        boxed
            .iter()
            .enumerate()
            .map(|(i, v)| v * (axis(i) as f32 + 0.5))
            .sum::<f32>()
            / mass
    };
    let (mx, my) = (moment(|i| i % BOX), moment(|i| i / BOX));
    let lit = |axis: fn(usize) -> usize| {
        let on = boxed
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(i, _)| axis(i));
        let (lo, hi) = on.fold((usize::MAX, 0), |(lo, hi), a| (lo.min(a), hi.max(a)));
        (lo as i32, hi as i32)
    };
    let centre = SIZE as f32 / 2.0;
    let shift = |m: f32, (lo, hi): (i32, i32)| {
        let ideal = (centre - m).round() as i32;
        let d = ideal.clamp(-lo, SIZE as i32 - 1 - hi);
        ((m + d as f32 - centre).abs() <= MAX_CENTRE_ERROR).then_some(d)
    };
    let dx = shift(mx, lit(|i| i % BOX))?;
    let dy = shift(my, lit(|i| i / BOX))?;

    let mut out = [0u8; SIZE * SIZE];
    for by in 0..BOX {
        for bx in 0..BOX {
            let v = boxed[by * BOX + bx];
            if v > 0.0 {
                let (x, y) = ((bx as i32 + dx) as usize, (by as i32 + dy) as usize);
                out[y * SIZE + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    Some(out)
}

/// For each of the BOX target pixels, the source pixels under it and how much of each
/// (in target pixels): source pixel `i` covers `[off + i f, off + (i + 1) f)`, where
/// `off` centres the `n f` long run in the box.
fn box_weights(n: usize, f: f32) -> Vec<Vec<(usize, f32)>> {
    let off = (BOX as f32 - n as f32 * f) / 2.0;
    let mut weights = vec![Vec::new(); BOX];
    for i in 0..n {
        let (a, b) = (off + i as f32 * f, off + (i + 1) as f32 * f);
        let first = a.floor().max(0.0) as usize;
        let last = (b.ceil() as usize).min(BOX);
        for (t, target) in weights.iter_mut().enumerate().take(last).skip(first) {
            let overlap = b.min(t as f32 + 1.0) - a.max(t as f32);
            if overlap > 0.0 {
                target.push((i, overlap));
            }
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_rectangle_becomes_a_centred_box_of_20_by_10() {
        // 40 x 80 canvas with ink in a 20 (wide) x 40 (tall) block: 10 x 20 in the end.
        let (w, h) = (40, 80);
        let mut coverage = vec![0.0; w * h];
        for y in 30..70 {
            for x in 5..25 {
                coverage[y * w + x] = 1.0;
            }
        }
        let img = normalise(&coverage, w, h).unwrap();
        let ink: Vec<(usize, usize)> = (0..SIZE * SIZE)
            .filter(|&i| img[i] > 0)
            .map(|i| (i % SIZE, i / SIZE))
            .collect();
        assert_eq!(ink.len(), 200);
        assert!(
            ink.iter()
                .all(|&(x, y)| (9..19).contains(&x) && (4..24).contains(&y))
        );
        assert!(ink.iter().all(|&(x, y)| img[y * SIZE + x] == 255));
    }

    #[test]
    fn box_weights_sum_to_the_scale() {
        let f = 20.0 / 37.0;
        let w = box_weights(37, f);
        let total: f32 = w.iter().flatten().map(|(_, v)| v).sum();
        assert!((total - 20.0).abs() < 1e-4);
        for i in 0..37 {
            let per: f32 = w
                .iter()
                .flatten()
                .filter(|(j, _)| *j == i)
                .map(|(_, v)| v)
                .sum();
            assert!((per - f).abs() < 1e-5, "source {i}: {per}");
        }
    }
}
