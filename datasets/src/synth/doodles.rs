//! What people draw that is not a digit, as pen strokes: each kind is a small random
//! family of polylines (x right, y down, about [-1, 1] on each axis) that the renderer
//! then wobbles, jitters and inks like the letters.
//!
//! No plain circle or ellipse (that is a 0) and no single straight line (a 1): every
//! kind here is something a digit is not.
//!
//! The trainer's outlier exposure (`train/oodtrain/glyphs.py`) draws some of the same
//! kinds (stars, hearts, smileys, arrows...) with its own generator. For a model trained
//! with it, this set measures how well that exposure carries over to another hand, not
//! rejection of kinds never seen; the letters are the set no training data resembles.

use std::f32::consts::{PI, TAU};

use rand::Rng;

use super::render::Strokes;

/// The doodle kinds, in label order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Doodle {
    /// Five-point star drawn in one line (a pentagram).
    Star,
    /// Five-point star as its outline.
    StarOutline,
    Smiley,
    Heart,
    /// An arrow in one of eight directions.
    Arrow,
    Triangle,
    Hash,
    Spiral,
    Plus,
    /// An X.
    Cross,
    /// A square or rectangle outline.
    Rectangle,
    Check,
    Lightning,
    House,
    /// A circle with rays.
    Sun,
    Cloud,
    Flower,
    /// A crescent moon.
    Moon,
    Diamond,
    Infinity,
    /// Two or three wavy lines.
    Waves,
    Envelope,
    /// A fir tree.
    Tree,
    /// A cat's face.
    Cat,
    Asterisk,
}

impl Doodle {
    /// Every kind, in label order.
    pub(crate) const ALL: [Doodle; 25] = [
        Doodle::Star,
        Doodle::StarOutline,
        Doodle::Smiley,
        Doodle::Heart,
        Doodle::Arrow,
        Doodle::Triangle,
        Doodle::Hash,
        Doodle::Spiral,
        Doodle::Plus,
        Doodle::Cross,
        Doodle::Rectangle,
        Doodle::Check,
        Doodle::Lightning,
        Doodle::House,
        Doodle::Sun,
        Doodle::Cloud,
        Doodle::Flower,
        Doodle::Moon,
        Doodle::Diamond,
        Doodle::Infinity,
        Doodle::Waves,
        Doodle::Envelope,
        Doodle::Tree,
        Doodle::Cat,
        Doodle::Asterisk,
    ];

    /// The class name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Doodle::Star => "star",
            Doodle::StarOutline => "star-outline",
            Doodle::Smiley => "smiley",
            Doodle::Heart => "heart",
            Doodle::Arrow => "arrow",
            Doodle::Triangle => "triangle",
            Doodle::Hash => "hash",
            Doodle::Spiral => "spiral",
            Doodle::Plus => "plus",
            Doodle::Cross => "cross",
            Doodle::Rectangle => "rectangle",
            Doodle::Check => "check",
            Doodle::Lightning => "lightning",
            Doodle::House => "house",
            Doodle::Sun => "sun",
            Doodle::Cloud => "cloud",
            Doodle::Flower => "flower",
            Doodle::Moon => "moon",
            Doodle::Diamond => "diamond",
            Doodle::Infinity => "infinity",
            Doodle::Waves => "waves",
            Doodle::Envelope => "envelope",
            Doodle::Tree => "tree",
            Doodle::Cat => "cat",
            Doodle::Asterisk => "asterisk",
        }
    }

    /// The widest pen (final pixels) this kind is drawn with: kinds with small parts
    /// (a cat's whiskers, a flower's petals) would be a blot under a wider one.
    pub(crate) fn max_pen(self) -> f32 {
        match self {
            Doodle::Smiley
            | Doodle::Sun
            | Doodle::Cloud
            | Doodle::Flower
            | Doodle::House
            | Doodle::Envelope
            | Doodle::Tree
            | Doodle::Cat
            | Doodle::Spiral
            | Doodle::Waves => 2.4,
            _ => 3.0,
        }
    }

    /// One random drawing of this kind.
    pub(crate) fn strokes(self, rng: &mut impl Rng) -> Strokes {
        let mut r = |lo: f32, hi: f32| rng.random_range(lo..=hi);
        match self {
            Doodle::Star => {
                let p = star_points(5, 1.0, 1.0, r(-0.2, 0.2));
                vec![[0, 2, 4, 1, 3, 0].iter().map(|&i| p[2 * i]).collect()]
            }
            Doodle::StarOutline => vec![closed(star_points(5, 1.0, r(0.35, 0.5), r(-0.2, 0.2)))],
            Doodle::Smiley => {
                let eye = r(0.0, 0.2);
                let (ex, ey) = (r(0.28, 0.4), r(-0.4, -0.2));
                let smile = r(0.45, 0.65);
                vec![
                    closed(arc((0.0, 0.0), (1.0, r(0.9, 1.1)), 0.0, TAU, 48)),
                    vec![(-ex, ey - eye / 2.0), (-ex, ey + eye / 2.0)],
                    vec![(ex, ey - eye / 2.0), (ex, ey + eye / 2.0)],
                    arc(
                        (0.0, r(-0.05, 0.15)),
                        (smile, smile * r(0.6, 0.9)),
                        r(0.15, 0.3) * PI,
                        r(0.7, 0.85) * PI,
                        16,
                    ),
                ]
            }
            Doodle::Heart => {
                let points = (0..48)
                    .map(|i| {
                        let t = i as f32 / 48.0 * TAU;
                        let x = 16.0 * t.sin().powi(3);
                        let y = -(13.0 * t.cos()
                            - 5.0 * (2.0 * t).cos()
                            - 2.0 * (3.0 * t).cos()
                            - (4.0 * t).cos());
                        (x / 17.0, y / 17.0)
                    })
                    .collect();
                vec![closed(points)]
            }
            Doodle::Arrow => {
                let direction = (r(0.0, 7.99).floor()) * PI / 4.0;
                let (dx, dy) = (direction.cos(), direction.sin());
                let (barb, spread) = (r(0.35, 0.6), r(0.45, 0.75));
                let tip = (dx, dy);
                let back = |side: f32| {
                    let a = direction + PI + side * spread;
                    (dx + barb * a.cos(), dy + barb * a.sin())
                };
                vec![vec![(-dx, -dy), tip], vec![back(1.0), tip, back(-1.0)]]
            }
            Doodle::Triangle => {
                let corners = [-90.0f32, 30.0, 150.0]
                    .map(|deg| polar(r(0.85, 1.15), (deg + r(-10.0, 10.0)).to_radians()));
                vec![closed(corners.to_vec())]
            }
            Doodle::Hash => {
                let (slant, gap) = (r(0.0, 0.3), r(0.3, 0.45));
                vec![
                    vec![(-gap + slant, -1.0), (-gap - slant, 1.0)],
                    vec![(gap + slant, -1.0), (gap - slant, 1.0)],
                    vec![(-1.0, -gap), (1.0, -gap)],
                    vec![(-1.0, gap), (1.0, gap)],
                ]
            }
            Doodle::Spiral => {
                let turns = r(2.0, 3.2);
                let start = r(0.0, TAU);
                let n = (turns * 40.0) as usize;
                let points = (0..=n)
                    .map(|i| {
                        let t = i as f32 / n as f32;
                        polar(t, start + t * turns * TAU)
                    })
                    .collect();
                vec![points]
            }
            Doodle::Plus => {
                let (w, h) = (r(0.7, 1.0), r(0.7, 1.0));
                vec![vec![(-w, 0.0), (w, 0.0)], vec![(0.0, -h), (0.0, h)]]
            }
            Doodle::Cross => {
                let (w, h) = (r(0.7, 1.0), r(0.7, 1.0));
                vec![vec![(-w, -h), (w, h)], vec![(w, -h), (-w, h)]]
            }
            Doodle::Rectangle => {
                let aspect = r(0.55, 1.6);
                let (w, h) = if aspect > 1.0 {
                    (1.0, 1.0 / aspect)
                } else {
                    (aspect, 1.0)
                };
                vec![closed(vec![(-w, -h), (w, -h), (w, h), (-w, h)])]
            }
            Doodle::Check => vec![vec![
                (-0.8, r(-0.1, 0.1)),
                (r(-0.4, -0.2), r(0.5, 0.7)),
                (r(0.7, 1.0), r(-1.0, -0.7)),
            ]],
            Doodle::Lightning => {
                let lean = r(0.0, 0.2);
                vec![closed(vec![
                    (0.15 + lean, -1.0),
                    (-0.5, 0.15),
                    (-0.02, 0.12),
                    (-0.25 - lean, 1.0),
                    (0.5, -0.2),
                    (0.05, -0.18),
                    (0.45 + lean, -1.0),
                ])]
            }
            Doodle::House => {
                let (w, eave, top) = (r(0.6, 0.8), r(-0.15, 0.0), r(-1.0, -0.8));
                let mut strokes = vec![
                    vec![(-w, eave), (-w, 1.0), (w, 1.0), (w, eave)],
                    vec![
                        (-w - 0.15, eave + 0.05),
                        (0.0, top),
                        (w + 0.15, eave + 0.05),
                    ],
                ];
                if r(0.0, 1.0) < 0.6 {
                    let d = r(-0.3, 0.3);
                    strokes.push(vec![
                        (d - 0.15, 1.0),
                        (d - 0.15, 0.5),
                        (d + 0.15, 0.5),
                        (d + 0.15, 1.0),
                    ]);
                }
                strokes
            }
            Doodle::Sun => {
                let rays = r(6.0, 12.99).floor() as usize;
                let (core, inner) = (r(0.38, 0.5), r(0.6, 0.7));
                let start = r(0.0, TAU);
                let mut strokes = vec![closed(arc((0.0, 0.0), (core, core), 0.0, TAU, 32))];
                for k in 0..rays {
                    let a = start + k as f32 * TAU / rays as f32;
                    strokes.push(vec![polar(inner, a), polar(1.0, a)]);
                }
                strokes
            }
            Doodle::Cloud => {
                // Puffs (circles) along an arch over a flat bottom; the outline is what
                // a ray from inside meets last.
                let puffs = r(3.0, 5.99).floor() as usize;
                let bottom = 0.45;
                let circles: Vec<((f32, f32), f32)> = (0..puffs)
                    .map(|k| {
                        let t = k as f32 / (puffs - 1) as f32;
                        let x = -0.75 + 1.5 * t + r(-0.08, 0.08);
                        let arch = (PI * t).sin();
                        let radius = r(0.28, 0.34) + 0.22 * arch;
                        ((x, bottom - radius * r(0.75, 0.95) - 0.25 * arch), radius)
                    })
                    .collect();
                let origin = (0.0, 0.1);
                let points = (0..120)
                    .map(|i| {
                        let a = i as f32 / 120.0 * TAU;
                        let u = (a.cos(), a.sin());
                        let mut reach = circles
                            .iter()
                            .filter_map(|&((cx, cy), radius)| {
                                let (dx, dy) = (cx - origin.0, cy - origin.1);
                                let along = dx * u.0 + dy * u.1;
                                let across = dx * dx + dy * dy - along * along;
                                let inside = radius * radius - across;
                                (inside >= 0.0).then(|| along + inside.sqrt())
                            })
                            .fold(0.0f32, f32::max);
                        if u.1 > 1e-3 {
                            reach = reach.max(0.0).min((bottom - origin.1) / u.1);
                        }
                        (origin.0 + reach * u.0, origin.1 + reach * u.1)
                    })
                    .collect();
                vec![closed(points)]
            }
            Doodle::Flower => {
                let petals = r(5.0, 6.99).floor() as usize;
                let centre = (0.0, -0.4);
                let (core, length, width) = (r(0.14, 0.2), r(0.24, 0.3), r(0.14, 0.2));
                let start = r(0.0, TAU);
                let mut strokes = vec![closed(arc(centre, (core, core), 0.0, TAU, 20))];
                for k in 0..petals {
                    let a = start + k as f32 * TAU / petals as f32;
                    let d = core + length;
                    let c = (centre.0 + d * a.cos(), centre.1 + d * a.sin());
                    let petal: Vec<(f32, f32)> = arc((0.0, 0.0), (length, width), 0.0, TAU, 20)
                        .into_iter()
                        .map(|(x, y)| {
                            (
                                c.0 + x * a.cos() - y * a.sin(),
                                c.1 + x * a.sin() + y * a.cos(),
                            )
                        })
                        .collect();
                    strokes.push(closed(petal));
                }
                // The stem from below the lowest petal, with a leaf now and then.
                strokes.push(vec![
                    (0.0, centre.1 + core + 1.6 * length),
                    (r(-0.1, 0.1), 1.0),
                ]);
                if r(0.0, 1.0) < 0.6 {
                    let side = if r(0.0, 1.0) < 0.5 { -1.0 } else { 1.0 };
                    strokes.push(vec![
                        (0.0, 0.75),
                        (side * 0.35, 0.45),
                        (side * 0.1, 0.7),
                        (0.0, 0.75),
                    ]);
                }
                strokes
            }
            Doodle::Moon => {
                // Outer circle at the origin, inner circle of the same radius moved right
                // by d: the crescent is the outer circle's part left of their chord.
                let d = r(0.45, 0.8);
                let a = (d / 2.0).acos();
                let mut points = arc((0.0, 0.0), (1.0, 1.0), a, TAU - a, 32);
                // The inner circle's left part, from the outer arc's end (its angle
                // PI + a) back to the outer arc's start (PI - a).
                points.extend(
                    arc((d, 0.0), (1.0, 1.0), PI + a, PI - a, 32)
                        .into_iter()
                        .skip(1),
                );
                vec![closed(points)]
            }
            Doodle::Diamond => {
                let w = r(0.5, 0.8);
                vec![closed(vec![(0.0, -1.0), (w, 0.0), (0.0, 1.0), (-w, 0.0)])]
            }
            Doodle::Infinity => {
                let tall = r(1.0, 1.5);
                let points = (0..64)
                    .map(|i| {
                        let t = i as f32 / 64.0 * TAU;
                        let q = 1.0 + t.sin().powi(2);
                        (t.cos() / q, tall * t.sin() * t.cos() / q)
                    })
                    .collect();
                vec![closed(points)]
            }
            Doodle::Waves => {
                let lines = if r(0.0, 1.0) < 0.5 { 2 } else { 3 };
                let (cycles, height, gap) = (r(1.5, 2.5), r(0.12, 0.2), r(0.5, 0.65));
                let phase = r(0.0, TAU);
                (0..lines)
                    .map(|k| {
                        let y0 = (k as f32 - (lines - 1) as f32 / 2.0) * gap;
                        (0..=40)
                            .map(|i| {
                                let x = i as f32 / 20.0 - 1.0;
                                (x, y0 + height * (PI * cycles * (x + 1.0) + phase).sin())
                            })
                            .collect()
                    })
                    .collect()
            }
            Doodle::Envelope => {
                let h = r(0.55, 0.75);
                let fold = r(0.0, 0.3);
                vec![
                    closed(vec![(-1.0, -h), (1.0, -h), (1.0, h), (-1.0, h)]),
                    vec![(-1.0, -h), (0.0, fold), (1.0, -h)],
                ]
            }
            Doodle::Tree => {
                let tiers = if r(0.0, 1.0) < 0.5 { 2 } else { 3 };
                let base = 0.6;
                let mut right = Vec::new();
                for k in 1..=tiers {
                    let y = -1.0 + (base + 1.0) * k as f32 / tiers as f32;
                    let w = 0.8 * k as f32 / tiers as f32;
                    right.push((w, y));
                    if k < tiers {
                        right.push((w * 0.45, y));
                    }
                }
                let mut outline = vec![(0.0, -1.0)];
                outline.extend(right.iter().copied());
                outline.extend(right.iter().rev().map(|&(x, y)| (-x, y)));
                let trunk = r(0.1, 0.16);
                vec![
                    closed(outline),
                    vec![(-trunk, base), (-trunk, 1.0), (trunk, 1.0), (trunk, base)],
                ]
            }
            Doodle::Cat => {
                let ear = r(-0.95, -0.75);
                let whisker = r(0.9, 1.1);
                let eye = |x: f32| vec![(x, 0.05), (x, 0.1)];
                let mut strokes = vec![
                    closed(arc((0.0, 0.15), (0.8, 0.7), 0.0, TAU, 40)),
                    vec![(-0.7, -0.2), (-0.6, ear), (-0.25, -0.48)],
                    vec![(0.7, -0.2), (0.6, ear), (0.25, -0.48)],
                    eye(-0.3),
                    eye(0.3),
                    closed(vec![(-0.08, 0.3), (0.08, 0.3), (0.0, 0.38)]),
                ];
                for side in [-1.0f32, 1.0] {
                    strokes.push(vec![(side * 0.3, 0.42), (side * whisker, 0.32)]);
                    strokes.push(vec![(side * 0.3, 0.48), (side * whisker, 0.56)]);
                }
                strokes
            }
            Doodle::Asterisk => {
                let spokes = if r(0.0, 1.0) < 0.5 { 3 } else { 4 };
                let start = r(0.0, PI);
                (0..spokes)
                    .map(|k| {
                        let a = start + k as f32 * PI / spokes as f32;
                        vec![polar(1.0, a), polar(-1.0, a)]
                    })
                    .collect()
            }
        }
    }
}

/// The point at `radius` and `angle` (radians, y down: clockwise on screen).
fn polar(radius: f32, angle: f32) -> (f32, f32) {
    (radius * angle.cos(), radius * angle.sin())
}

/// `n` points on an elliptic arc from angle `a0` to `a1` (both ends included).
fn arc(centre: (f32, f32), radii: (f32, f32), a0: f32, a1: f32, n: usize) -> Vec<(f32, f32)> {
    (0..=n)
        .map(|i| {
            let a = a0 + (a1 - a0) * i as f32 / n as f32;
            (centre.0 + radii.0 * a.cos(), centre.1 + radii.1 * a.sin())
        })
        .collect()
}

/// The polyline closed: its first point repeated at the end.
fn closed(mut points: Vec<(f32, f32)>) -> Vec<(f32, f32)> {
    if let Some(&first) = points.first() {
        points.push(first);
    }
    points
}

/// A star's `2 points` vertices, alternating outer and inner radius, the first at the
/// top, turned by `turn` radians.
fn star_points(points: usize, outer: f32, inner: f32, turn: f32) -> Vec<(f32, f32)> {
    (0..2 * points)
        .map(|i| {
            let radius = if i % 2 == 0 { outer } else { inner };
            polar(radius, -PI / 2.0 + turn + i as f32 * PI / points as f32)
        })
        .collect()
}
