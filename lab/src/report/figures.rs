//! Drawing the report's figures with `plotters` on an in-memory RGB bitmap, saved as PNG
//! by the `image` crate. Text uses DejaVu Sans, embedded in the binary
//! (`lab/assets/DejaVuSans.ttf`, licence beside it) and registered with plotters'
//! `ab_glyph` backend, so no system font is needed at run time.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const SANS: &str = "sans-serif";

/// Registers the embedded font as plotters' "sans-serif" (once per process).
pub(crate) fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(SANS, FontStyle::Normal, FONT).is_ok());
    anyhow::ensure!(ok, "the embedded font could not be read");
    Ok(())
}

/// matplotlib's "tab10": ten colours told apart easily, one per digit.
pub(crate) const CLASS_COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colours of the MNIST, Fashion-MNIST and CIFAR-10 series.
const SET_COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
];

pub const TSNE_SIZE: (u32, u32) = (800, 700);
pub const HISTOGRAM_SIZE: (u32, u32) = (900, 600);
pub const ROC_SIZE: (u32, u32) = (800, 700);

/// The misclassified grid: `GRID_COLUMNS` cells a row, each the 28x28 image scaled by
/// `GRID_SCALE` with its caption below. Width `2 * GRID_MARGIN + GRID_COLUMNS *
/// GRID_CELL.0`, height `GRID_HEADER + rows * GRID_CELL.1 + GRID_MARGIN` (at least one row).
pub const GRID_COLUMNS: u32 = 10;
pub(crate) const GRID_SCALE: u32 = 3;
pub const GRID_CELL: (u32, u32) = (120, 118);
pub const GRID_MARGIN: u32 = 10;
pub const GRID_HEADER: u32 = 44;

/// The size of the misclassified grid holding `n` images.
pub fn grid_size(n: usize) -> (u32, u32) {
    let rows = (n as u32).div_ceil(GRID_COLUMNS).max(1);
    (
        2 * GRID_MARGIN + GRID_COLUMNS * GRID_CELL.0,
        GRID_HEADER + rows * GRID_CELL.1 + GRID_MARGIN,
    )
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws on a white `width x height` bitmap and returns it.
fn render(
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<RgbImage> {
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    RgbImage::from_raw(width, height, buffer).context("bitmap of the wrong size")
}

/// PNG with the strongest compression (the figures are committed).
pub(crate) fn save_png(image: &RgbImage, path: &Path) -> anyhow::Result<()> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    PngEncoder::new_with_quality(file, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("writing {}", path.display()))
}

/// 10000 as "10,000".
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn padded(lo: f32, hi: f32) -> std::ops::Range<f32> {
    let pad = ((hi - lo) * 0.03).max(1e-3);
    (lo - pad)..(hi + pad)
}

pub(crate) struct TsneMap<'a> {
    pub title: String,
    /// n x 2, row-major.
    pub coords: &'a [f32],
    /// Class of each point (0..=9).
    pub labels: &'a [u8],
}

/// A scatter of the 2-d t-SNE coordinates coloured by class, with a legend on the right.
pub(crate) fn tsne_map(map: &TsneMap<'_>) -> anyhow::Result<RgbImage> {
    let (xs, ys): (Vec<f32>, Vec<f32>) = map.coords.chunks(2).map(|p| (p[0], p[1])).unzip();
    let range = |v: &[f32]| {
        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        padded(lo, hi)
    };
    let (x_range, y_range) = (range(&xs), range(&ys));
    render(TSNE_SIZE, |root| {
        let root = root.titled(&map.title, (SANS, 19))?;
        let (plot, legend) = root.split_horizontally(TSNE_SIZE.0 - 90);
        let mut chart = ChartBuilder::on(&plot)
            .margin(8)
            .build_cartesian_2d(x_range.clone(), y_range.clone())?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x_range.start, y_range.start), (x_range.end, y_range.end)],
            RGBColor(160, 160, 160).stroke_width(1),
        )))?;
        chart.draw_series(xs.iter().zip(&ys).zip(map.labels).map(|((x, y), l)| {
            Circle::new(
                (*x, *y),
                2,
                CLASS_COLOURS[usize::from(*l) % 10].mix(0.75).filled(),
            )
        }))?;

        legend.draw(&Text::new("digit", (14, 20), (SANS, 17)))?;
        for (c, colour) in CLASS_COLOURS.iter().enumerate() {
            let y = 56 + 30 * c as i32;
            legend.draw(&Circle::new((22, y), 7, colour.filled()))?;
            legend.draw(&Text::new(
                c.to_string(),
                (38, y - 10),
                (SANS, 18).into_font().color(&BLACK),
            ))?;
        }
        let notes = [
            format!("{} points", thousands(xs.len())),
            format!("perplexity {}", super::PERPLEXITY),
            format!("theta {}", super::THETA),
            format!("{} iterations", super::ITERATIONS),
        ];
        for (i, note) in notes.iter().enumerate() {
            legend.draw(&Text::new(
                note.as_str(),
                (4, 380 + 18 * i as i32),
                (SANS, 12).into_font().color(&RGBColor(90, 90, 90)),
            ))?;
        }
        Ok(())
    })
}

/// One misclassified image (28x28 gray) with the model's answer and the label.
pub(crate) struct Misclassified<'a> {
    pub pixels: &'a [u8],
    pub predicted: usize,
    pub truth: usize,
    pub probability: f32,
}

/// The images in a grid, each with "pred X / true Y" below.
pub(crate) fn misclassified_grid(
    title: &str,
    images: &[Misclassified<'_>],
) -> anyhow::Result<RgbImage> {
    render(grid_size(images.len()), |root| {
        root.draw(&Text::new(
            title,
            (GRID_MARGIN as i32, 12),
            (SANS, 19).into_font().color(&BLACK),
        ))?;
        if images.is_empty() {
            root.draw(&Text::new(
                "(none)",
                (GRID_MARGIN as i32, GRID_HEADER as i32 + 20),
                (SANS, 16),
            ))?;
        }
        let side = (28 * GRID_SCALE) as i32;
        let scale = GRID_SCALE as i32;
        for (i, m) in images.iter().enumerate() {
            let (col, row) = (i as u32 % GRID_COLUMNS, i as u32 / GRID_COLUMNS);
            let x0 = (GRID_MARGIN + col * GRID_CELL.0) as i32;
            let y0 = (GRID_HEADER + row * GRID_CELL.1) as i32;
            let left = x0 + (GRID_CELL.0 as i32 - side) / 2;
            for (p, &v) in m.pixels.iter().enumerate() {
                let (px, py) = ((p % 28) as i32, (p / 28) as i32);
                let (x, y) = (left + px * scale, y0 + py * scale);
                root.draw(&Rectangle::new(
                    [(x, y), (x + scale, y + scale)],
                    RGBColor(v, v, v).filled(),
                ))?;
            }
            let caption = format!("pred {} / true {}", m.predicted, m.truth);
            let style = (SANS, 14).into_font().color(&BLACK);
            let (w, _) = root.estimate_text_size(&caption, &style)?;
            root.draw(&Text::new(
                caption,
                (x0 + (GRID_CELL.0 as i32 - w as i32) / 2, y0 + side + 4),
                style,
            ))?;
            let confidence = format!("p = {:.2}", m.probability);
            let style = (SANS, 12).into_font().color(&RGBColor(100, 100, 100));
            let (w, _) = root.estimate_text_size(&confidence, &style)?;
            root.draw(&Text::new(
                confidence,
                (x0 + (GRID_CELL.0 as i32 - w as i32) / 2, y0 + side + 20),
                style,
            ))?;
        }
        Ok(())
    })
}

/// One test set's LOF scores (scikit-learn's `score_samples`: higher = more normal).
pub(crate) struct ScoreSet<'a> {
    pub name: &'a str,
    pub scores: &'a [f64],
}

/// Nearest-rank quantile, not numpy's interpolated percentile: it only picks where the
/// histograms' axis starts.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn percent_below(scores: &[f64], threshold: f64) -> f64 {
    100.0 * oodgate_lof::rejected_fraction(scores, threshold)
}

/// Histograms (fraction of each set per bin) of the three sets' scores, with a dashed
/// vertical line at each threshold (`(contamination, offset)`).
pub(crate) fn score_histograms(
    subtitle: &str,
    sets: &[ScoreSet<'_>],
    thresholds: &[(f64, f64)],
) -> anyhow::Result<RgbImage> {
    const BINS: usize = 90;
    let pooled: Vec<f64> = sets.iter().flat_map(|s| s.scores.iter().copied()).collect();
    anyhow::ensure!(!pooled.is_empty(), "no scores to plot");
    // The long tail of very low scores is folded into the leftmost bin.
    let lowest_threshold = thresholds.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    let lo = (quantile(&pooled, 0.02).min(lowest_threshold - 0.2) * 10.0).floor() / 10.0;
    let hi = (pooled.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 10.0).ceil() / 10.0;
    let width = (hi - lo) / BINS as f64;
    let histograms: Vec<Vec<f64>> = sets
        .iter()
        .map(|s| {
            let mut counts = vec![0.0; BINS];
            for &v in s.scores {
                let bin = (((v - lo) / width).floor().max(0.0) as usize).min(BINS - 1);
                counts[bin] += 1.0;
            }
            counts.iter().map(|c| c / s.scores.len() as f64).collect()
        })
        .collect();
    // Headroom above the tallest bar for the legend.
    let top = histograms.iter().flatten().copied().fold(0.0, f64::max) * 1.4;
    let folded = pooled.iter().filter(|v| **v < lo).count();

    render(HISTOGRAM_SIZE, |root| {
        let root = root.titled("LOF scores of the test sets", (SANS, 20))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(subtitle, (SANS, 14))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(lo..hi, 0.0..top)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc(if folded > 0 {
                format!(
                    "LOF score (higher = more normal); {folded} scores below {lo:.1} counted in the first bin"
                )
            } else {
                "LOF score (higher = more normal)".to_string()
            })
            .y_desc("fraction of the set per bin")
            .label_style((SANS, 13))
            .axis_desc_style((SANS, 14))
            .draw()?;
        for ((set, counts), colour) in sets.iter().zip(&histograms).zip(SET_COLOURS) {
            chart.draw_series(counts.iter().enumerate().map(|(b, c)| {
                let x = lo + b as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, *c)], colour.mix(0.18).filled())
            }))?;
            let steps = counts.iter().enumerate().flat_map(|(b, c)| {
                let x = lo + b as f64 * width;
                [(x, *c), (x + width, *c)]
            });
            let below: Vec<String> = thresholds
                .iter()
                .map(|t| format!("{:.2} %", percent_below(set.scores, t.1)))
                .collect();
            chart
                .draw_series(LineSeries::new(steps, colour.stroke_width(2)))?
                .label(format!(
                    "{} (n = {}): {} below the thresholds",
                    set.name,
                    thousands(set.scores.len()),
                    below.join(" / ")
                ))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3))
                });
        }
        for (i, (contamination, offset)) in thresholds.iter().enumerate() {
            let style = if i == 0 {
                BLACK.stroke_width(2)
            } else {
                RGBColor(110, 110, 110).stroke_width(2)
            };
            chart
                .draw_series(DashedLineSeries::new(
                    [(*offset, 0.0), (*offset, top)],
                    8,
                    5,
                    style,
                ))?
                .label(format!(
                    "threshold at contamination {contamination}: {offset:.3}"
                ))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((SANS, 13))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()?;
        Ok(())
    })
}

/// (false positive rate, true positive rate) as the threshold sweeps from high to low:
/// the fraction of `outliers` and of `inliers` accepted (score >= threshold).
pub(crate) fn roc_points(inliers: &[f64], outliers: &[f64]) -> Vec<(f64, f64)> {
    let mut pooled: Vec<(f64, bool)> = inliers
        .iter()
        .map(|s| (*s, true))
        .chain(outliers.iter().map(|s| (*s, false)))
        .collect();
    pooled.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (n, m) = (inliers.len() as f64, outliers.len() as f64);
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < pooled.len() {
        // Ties move together, as a threshold cannot split them.
        let mut j = i;
        while j < pooled.len() && pooled[j].0 == pooled[i].0 {
            if pooled[j].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        points.push((fp / m, tp / n));
        i = j;
    }
    points
}

/// ROC curves of each out-of-distribution set (`sets[1..]`) against the inliers
/// (`sets[0]`), AUROC in the legend, the thresholds marked on each curve.
pub(crate) fn roc_curves(
    subtitle: &str,
    sets: &[ScoreSet<'_>],
    aurocs: &[f64],
    thresholds: &[(f64, f64)],
) -> anyhow::Result<RgbImage> {
    let inliers = &sets[0];
    render(ROC_SIZE, |root| {
        let root = root.titled(
            &format!("ROC: {} (inliers) against each other set", inliers.name),
            (SANS, 19),
        )?;
        let mut chart = ChartBuilder::on(&root)
            .caption(subtitle, (SANS, 14))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..1.02)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("false positive rate (fraction of the other set accepted)")
            .y_desc(format!("true positive rate ({} accepted)", inliers.name))
            .label_style((SANS, 13))
            .axis_desc_style((SANS, 14))
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            6,
            RGBColor(170, 170, 170).stroke_width(1),
        ))?;
        for ((set, auroc), colour) in sets[1..].iter().zip(aurocs).zip(&SET_COLOURS[1..]) {
            let colour = *colour;
            let points = roc_points(inliers.scores, set.scores);
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                .label(format!("{} (AUROC {auroc:.4})", set.name))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3))
                });
            for (i, (_, offset)) in thresholds.iter().enumerate() {
                let point = (
                    1.0 - oodgate_lof::rejected_fraction(set.scores, *offset),
                    1.0 - oodgate_lof::rejected_fraction(inliers.scores, *offset),
                );
                if i == 0 {
                    chart.draw_series(std::iter::once(Circle::new(
                        point,
                        5,
                        BLACK.stroke_width(2),
                    )))?;
                } else {
                    chart.draw_series(std::iter::once(TriangleMarker::new(
                        point,
                        6,
                        BLACK.stroke_width(2),
                    )))?;
                }
            }
        }
        // Legend entries for the threshold markers.
        for (i, (contamination, _)) in thresholds.iter().enumerate() {
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label(format!("threshold at contamination {contamination}"))
                .legend(
                    move |(x, y)| -> DynElement<'static, BitMapBackend<'_>, (i32, i32)> {
                        if i == 0 {
                            Circle::new((x + 10, y), 5, BLACK.stroke_width(2)).into_dyn()
                        } else {
                            TriangleMarker::new((x + 10, y), 6, BLACK.stroke_width(2)).into_dyn()
                        }
                    },
                );
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((SANS, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(500), "500");
        assert_eq!(thousands(5000), "5,000");
        assert_eq!(thousands(60000), "60,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn roc_points_run_from_origin_to_one() {
        let points = roc_points(&[3.0, 4.0], &[1.0, 3.0]);
        assert_eq!(points.first(), Some(&(0.0, 0.0)));
        assert_eq!(points.last(), Some(&(1.0, 1.0)));
        // The tie at 3.0 moves both rates at once.
        assert_eq!(points, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
    }

    #[test]
    fn figures_render_with_the_embedded_font() {
        register_font().unwrap();
        let coords: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let labels: Vec<u8> = (0..20).map(|i| i % 10).collect();
        let map = tsne_map(&TsneMap {
            title: "t".into(),
            coords: &coords,
            labels: &labels,
        })
        .unwrap();
        assert_eq!(map.dimensions(), TSNE_SIZE);
        // Text was drawn: the title row is not all white.
        assert!(
            map.rows()
                .take(30)
                .flatten()
                .any(|p| p.0 != [255, 255, 255])
        );
        let pixels = vec![128u8; 784];
        let grid = misclassified_grid(
            "g",
            &[Misclassified {
                pixels: &pixels,
                predicted: 1,
                truth: 7,
                probability: 0.5,
            }],
        )
        .unwrap();
        assert_eq!(grid.dimensions(), grid_size(1));
    }
}
