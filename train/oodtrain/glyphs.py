"""Near-digit outliers for outlier exposure: strokes that are not digits and not Latin
letters, rendered MNIST-style (oodtrain.strokes).

- `glyphs`: Hershey glyphs of other scripts and symbol sets (Japanese kana and kanji,
  Greek, symbols, markers, maths). Latin letters are evaluation-only (issue 17), so
  every Greek letter that looks like a Latin one is left out, and so is anything that
  looks like a digit (the hiragana ろ, る, ら, う, ち, の; the katakana ク, ノ, フ, ワ, ラ;
  dashes, a plain circle, single lines, thin squiggles), and the × sign (an x).
- `doodles`: what people draw on a pad that is not a digit, made procedurally: stars,
  hearts, smileys, arrows, triangles, squares, hashes, plus signs, spirals, check
  marks, lightning, houses, suns, waves, clouds. No plain circle (a 0), no single line
  (a 1), no X (a letter).
- `scribbles`: two to four random smooth strokes.
- HELDOUT_GLYPHS (Cyrillic letters that look neither Latin nor like digits) never
  reach training: `selection.py` uses them to compare recipes on unseen script.

`digit_glyphs` renders the digits of a few Hershey fonts as extra in-distribution
training images; the typed-digits evaluation set uses other fonts.
"""

import numpy as np

from . import strokes as S

# font -> glyph indices (file order; in the 96-glyph fonts index i is ASCII 32 + i).
_JAPANESE_EXCLUDED = {0, 1, 2, 18, 35, 49, 57, 73, 75, 77, 120, 137, 140, 153, 158}
_GREEK_KEPT = [36, 38, 39, 44, 48, 51, 55, 56, 57,  # Δ Φ Γ Λ Π Σ Ω Ξ Ψ
               70, 76, 80, 88, 89]  # φ λ π ξ ψ
_SYMBOLIC_KEPT = [32, 33, 35, 36, 37, 38, 39, 41, 42, 43, 44, 45, 49, 50, 51, 52, 53, 54, 55, 56, 57,
                  58, 59, 61, 62, 64, 65, 66, 67, 68, 69, 70, 71, 72, 74, 75, 76, 77, 78, 79, 80, 85, 94]
_MATHLOW_KEPT = [1, 2, 4, 6, 7, 26, 27, 31, 32, 63, 66, 73, 74, 75, 76, 78, 87, 88, 90, 92]
_MARKERS_KEPT = [34, 35, 36, 37, 38, 41, 42, 43, 44, 45, 46, 47, 48]

TRAIN_GLYPHS = {
    "japanese": None,  # all but _JAPANESE_EXCLUDED
    "greek": _GREEK_KEPT,
    "symbolic": _SYMBOLIC_KEPT,
    "mathlow": _MATHLOW_KEPT,
    "markers": _MARKERS_KEPT,
}
# Д И Ф Г Ж Л П Ш Ю Щ (cyrillic.jhf): selection only.
HELDOUT_GLYPHS = {"cyrillic": [36, 37, 38, 39, 40, 44, 48, 49, 53, 55]}
# Digit glyphs (ASCII 48..57) of these fonts are training digits; the evaluation's
# typed digits come from other Hershey fonts and from TrueType fonts.
DIGIT_FONTS = ("futural", "futuram", "rowmans", "rowmand", "rowmant", "timesr", "timesrb")

_cache = {}


def _pool(table):
    key = tuple(sorted(table))
    if key not in _cache:
        pool = []
        for font, kept in table.items():
            g = S.hershey(font)
            if kept is None:  # every glyph but the excluded and the "missing glyph" diamonds
                diamond = g[0][0].tolist()
                kept = [i for i in range(len(g)) if i not in _JAPANESE_EXCLUDED
                        and not (len(g[i]) == 1 and g[i][0].tolist() == diamond)]
            pool += [g[i] for i in kept if g[i]]
        _cache[key] = pool
    return _cache[key]


def _pen(rng):
    return float(rng.uniform(1.4, 3.6))


def _draw(rng, n, make):
    out = np.empty((n, S.SIZE, S.SIZE, 1), np.float32)
    for i in range(n):
        out[i, ..., 0] = S.render(S.jitter(rng, make(rng)), _pen(rng))
    return out


def glyphs(rng, n, digits=None, labels=None, table=None):
    pool = _pool(table or TRAIN_GLYPHS)
    return _draw(rng, n, lambda r: pool[r.integers(len(pool))])


def heldout_glyphs(rng, n, digits=None, labels=None):
    return glyphs(rng, n, table=HELDOUT_GLYPHS)


def digit_glyphs(rng, n):
    """n Hershey digits from DIGIT_FONTS with random pen and hand: images and labels."""
    if "digits" not in _cache:
        _cache["digits"] = [S.hershey(f)[16: 26] for f in DIGIT_FONTS]
    fonts = _cache["digits"]
    labels = rng.integers(0, 10, n)
    x = _draw(rng, n, lambda r, it=iter(labels): fonts[r.integers(len(fonts))][next(it)])
    return x, labels


# ---- doodles ------------------------------------------------------------------------

def _arc(cx, cy, rx, ry, a0, a1, n=24):
    a = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def _poly(*pts):
    return np.array(pts, np.float32)


def _star(r):
    k = r.choice([5, 6, 8])
    if r.random() < 0.5 and k == 5:  # pentagram, one stroke
        a = -np.pi / 2 + np.arange(6) * 4 * np.pi / 5
        return [np.stack([np.cos(a), np.sin(a)], 1)]
    inner = r.uniform(0.35, 0.55)
    a = -np.pi / 2 + np.arange(2 * k + 1) * np.pi / k
    rad = np.where(np.arange(2 * k + 1) % 2 == 0, 1.0, inner)
    return [np.stack([rad * np.cos(a), rad * np.sin(a)], 1)]


def _heart(r):
    t = np.linspace(0, 2 * np.pi, 60)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return [np.stack([x, y], 1)]


def _smiley(r):
    face = _arc(0, 0, 1, 1, 0, 2 * np.pi, 48)
    mouth = _arc(0, 0.1, 0.55, 0.45, 0.2 * np.pi, 0.8 * np.pi)
    if r.random() < 0.3:
        mouth = _arc(0, 0.75, 0.5, 0.3, 1.2 * np.pi, 1.8 * np.pi)  # a frown
    eyes = [_poly((-0.35, -0.35), (-0.33, -0.25)), _poly((0.35, -0.35), (0.33, -0.25))]
    return [face, mouth] + eyes


def _arrow(r):
    shaft = _poly((-1, 0), (1, 0))
    head = _poly((0.55, -0.4), (1, 0), (0.55, 0.4))
    th = r.choice([0, np.pi / 2, np.pi, -np.pi / 2, np.pi / 4, -3 * np.pi / 4])
    m = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return [shaft @ m.T, head @ m.T]


def _triangle(r):
    return [_poly((0, -1), (0.9, 0.7), (-0.9, 0.7), (0, -1))]


def _square(r):
    w = r.uniform(0.6, 1.0)
    return [_poly((-1, -w), (1, -w), (1, w), (-1, w), (-1, -w))]


def _hash(r):
    s = r.uniform(-0.15, 0.15)
    return [_poly((-0.35 + s, -1), (-0.35 - s, 1)), _poly((0.35 + s, -1), (0.35 - s, 1)),
            _poly((-1, -0.35), (1, -0.35)), _poly((-1, 0.35), (1, 0.35))]


def _plus(r):
    return [_poly((0, -1), (0, 1)), _poly((-1, 0), (1, 0))]


def _spiral(r):
    turns = r.uniform(2, 3.5)
    t = np.linspace(0, turns * 2 * np.pi, 90)
    rad = 0.1 + t / t[-1]
    return [np.stack([rad * np.cos(t), rad * np.sin(t)], 1)]


def _check(r):
    return [_poly((-1, 0), (-0.4, 0.7), (1, -1))]


def _lightning(r):
    return [_poly((0.2, -1), (-0.5, 0.1), (0.3, 0.0), (-0.3, 1))]


def _house(r):
    return [_poly((-0.8, 1), (-0.8, -0.1), (0.8, -0.1), (0.8, 1), (-0.8, 1)),
            _poly((-1, 0), (0, -1), (1, 0))]


def _sun(r):
    rays = []
    for a in np.linspace(0, 2 * np.pi, 9)[:-1]:
        rays.append(_poly((0.6 * np.cos(a), 0.6 * np.sin(a)), (np.cos(a), np.sin(a))))
    return [_arc(0, 0, 0.4, 0.4, 0, 2 * np.pi, 32)] + rays


def _waves(r):
    x = np.linspace(-1, 1, 50)
    k = r.integers(1, 4)
    return [np.stack([x, 0.25 * np.sin(6 * x) + y], 1) for y in np.linspace(-0.6, 0.6, k)]


def _cloud(r):
    bumps = [_arc(-0.6 + 0.4 * i, -0.1, 0.3, 0.35, np.pi, 2 * np.pi, 12) for i in range(4)]
    return [np.concatenate(bumps + [_poly((0.8, -0.1), (0.8, 0.3), (-0.8, 0.3), (-0.8, -0.1))], 0)]


DOODLES = [_star, _heart, _smiley, _arrow, _triangle, _square, _hash, _plus, _spiral, _check,
           _lightning, _house, _sun, _waves, _cloud]


def doodles(rng, n, digits=None, labels=None):
    def make(r):
        return [s.astype(np.float32) for s in DOODLES[r.integers(len(DOODLES))](r)]
    return _draw(rng, n, make)


def scribbles(rng, n, digits=None, labels=None):
    def make(r):
        out = []
        for _ in range(r.integers(2, 5)):
            p = r.uniform(-1, 1, (4, 2))  # a cubic Bezier's control points
            t = np.linspace(0, 1, 24)[:, None]
            out.append(((1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2]
                        + t ** 3 * p[3]).astype(np.float32))
        return out
    return _draw(rng, n, make)



# Outlier-exposure types rendered into pools (oodtrain.loop.near_pools).
NEAR_TYPES = {"glyphs": glyphs, "doodles": doodles, "scribbles": scribbles}
