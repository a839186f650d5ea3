"""Stroke drawings rendered the way MNIST prepared its digits.

Hershey stroke fonts (Debian's `hershey-fonts-data`) give glyphs as polylines; so do
the procedural doodles in `doodles.py`. `render` draws polylines with a round pen,
applies a random hand jitter, then does what MNIST did: the ink's bounding box scaled
to 20 px on its longer side (aspect kept) inside a black 28x28 image, with the ink's
centre of mass at the centre. Plain numpy, no imaging library.
"""

from pathlib import Path

import numpy as np

SIZE = 28
BOX = 20.0
HERSHEY_DIR = Path("/usr/share/hershey-fonts")

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
_PIXELS = np.stack([_XX.ravel(), _YY.ravel()], 1)


def parse_jhf(path: Path) -> list:
    """Glyphs of a Hershey .jhf file, in file order: each a list of [m, 2] float arrays
    (x right, y down). Coordinates are characters offset from 'R'; " R" lifts the pen."""
    glyphs = []
    text = path.read_text(encoding="latin-1").splitlines()
    for line in text:
        if len(line) < 10:
            continue
        count = int(line[5:8])
        body = line[8:]
        pairs = [body[i: i + 2] for i in range(0, 2 * count, 2)]
        strokes, cur = [], []
        for pair in pairs[1:]:  # the first pair is the glyph's left and right margin
            if pair == " R":
                if len(cur) > 0:
                    strokes.append(np.array(cur, np.float32))
                cur = []
            else:
                cur.append((ord(pair[0]) - ord("R"), ord(pair[1]) - ord("R")))
        if cur:
            strokes.append(np.array(cur, np.float32))
        glyphs.append(strokes)
    return glyphs


def hershey(font: str) -> list:
    path = HERSHEY_DIR / f"{font}.jhf"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: apt-get install hershey-fonts-data "
                         "(scripts/setup.sh test installs it)")
    return parse_jhf(path)


def _segments(strokes):
    segs = []
    for s in strokes:
        if len(s) == 1:
            segs.append(np.concatenate([s[0], s[0]])[None])
        else:
            segs.append(np.concatenate([s[:-1], s[1:]], 1))
    return np.concatenate(segs, 0)


def _ink(segs, pen):
    """Anti-aliased coverage of a round pen of width `pen` along the segments."""
    a, b = segs[:, None, :2], segs[:, None, 2:]
    ab = b - a
    ap = _PIXELS[None] - a
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    d = np.sqrt(((ap - t[..., None] * ab) ** 2).sum(-1)).min(0)
    return np.clip(pen / 2 + 0.5 - d, 0, 1).reshape(SIZE, SIZE)


def jitter(rng, strokes, rotate=0.2, shear=0.25, aspect=0.12, wobble=0.015):
    """A random hand: rotation (radians), shear, aspect change and per-vertex wobble
    (as a fraction of the glyph's size)."""
    pts = np.concatenate(strokes, 0)
    size = max(float(np.ptp(pts, 0).max()), 1e-3)
    th = rng.uniform(-rotate, rotate)
    sh = rng.uniform(-shear, shear)
    asp = np.exp(rng.uniform(-aspect, aspect))
    m = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) @ np.array([[asp, sh], [0, 1 / asp]])
    return [(s @ m.T + rng.normal(0, wobble * size, s.shape)).astype(np.float32) for s in strokes]


def render(strokes, pen):
    """MNIST-style 28x28 float32 image in [0, 1] of the polylines, pen width in pixels
    of the final image."""
    pts = np.concatenate(strokes, 0)
    lo, hi = pts.min(0), pts.max(0)
    span = max(float((hi - lo).max()), 1e-3)
    scale = max(BOX - pen, 2.0) / span
    segs = _segments([(s - (lo + hi) / 2) * scale + SIZE / 2 for s in strokes])
    img = _ink(segs, pen)
    mass = img.sum()
    if mass > 0:
        cy, cx = (_YY * img).sum() / mass, (_XX * img).sum() / mass
        segs = segs + np.tile([SIZE / 2 - cx, SIZE / 2 - cy], 2).astype(np.float32)
        img = _ink(segs, pen)
    return img.astype(np.float32)
