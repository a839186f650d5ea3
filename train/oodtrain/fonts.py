"""Typed digits for training: 0-9 typeset in TrueType/OpenType fonts, rendered the way
MNIST prepared its digits.

The typed-digits evaluation set (`oodgate eval`, datasets/src/synth/fonts.rs) is
typeset in a fixed list of font files from fonts-dejavu-core, fonts-liberation2,
fonts-freefont-ttf, fonts-texgyre, fonts-comic-neue, fonts-urw-base35 and
fonts-cantarell. Training on any of those files would measure memory of the very
glyphs it is scored on, not whether the model reads digits in a typeface it never saw,
so TRAIN_FONTS takes its files from other Debian packages only: no file and no package
in common (train/tests/test_smoke.py checks both against fonts.rs).

Each digit: the glyph filled white on black at 96 px with Pillow, emboldened (a stroke
around the outline) or thinned (a min filter) at random, given a random hand (rotation
±10°, shear ±0.2, aspect ±10 %), then MNIST's normalisation as in oodtrain.strokes:
cropped to the ink, its longer side scaled (area average) to 20 px with the aspect
kept, pasted into a black 28x28 image with the ink's centre of mass at (14, 14).
"""

from pathlib import Path

import numpy as np

from . import strokes as S

PT = 96
CANVAS = 256
THIN_FROM = 2.6  # normalised stroke width (px) from which a glyph may be thinned
INK = 128  # canvas pixels from this value on count as ink for the crop (the 50 % contour)

# (Debian package, font file). A missing file is an error naming its package.
TRAIN_FONTS = (
    # Sans.
    ("fonts-lato", "/usr/share/fonts/truetype/lato/Lato-Regular.ttf"),
    ("fonts-lato", "/usr/share/fonts/truetype/lato/Lato-BlackItalic.ttf"),
    ("fonts-open-sans", "/usr/share/fonts/truetype/open-sans/OpenSans-Regular.ttf"),
    ("fonts-open-sans", "/usr/share/fonts/truetype/open-sans/OpenSans-CondBold.ttf"),
    ("fonts-open-sans", "/usr/share/fonts/truetype/open-sans/OpenSans-LightItalic.ttf"),
    ("fonts-roboto-unhinted", "/usr/share/fonts/truetype/roboto/unhinted/RobotoTTF/Roboto-Medium.ttf"),
    ("fonts-roboto-unhinted", "/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Regular.ttf"),
    ("fonts-crosextra-carlito", "/usr/share/fonts/truetype/crosextra/Carlito-Regular.ttf"),
    ("fonts-crosextra-carlito", "/usr/share/fonts/truetype/crosextra/Carlito-BoldItalic.ttf"),
    ("fonts-cabin", "/usr/share/fonts/opentype/cabin/Cabin-Italic.otf"),
    ("fonts-linuxlibertine", "/usr/share/fonts/opentype/linux-libertine/LinBiolinum_R.otf"),
    ("fonts-yanone-kaffeesatz", "/usr/share/fonts/opentype/yanone-kaffeesatz/YanoneKaffeesatz-Regular.otf"),
    ("fonts-sil-andika", "/usr/share/fonts/truetype/andika/Andika-Regular.ttf"),
    # Rounded.
    ("fonts-quicksand", "/usr/share/fonts/truetype/quicksand/Quicksand-Medium.ttf"),
    ("fonts-comfortaa", "/usr/share/fonts/truetype/comfortaa/Comfortaa-Bold.ttf"),
    # Serif.
    ("fonts-crosextra-caladea", "/usr/share/fonts/truetype/crosextra/Caladea-Regular.ttf"),
    ("fonts-crosextra-caladea", "/usr/share/fonts/truetype/crosextra/Caladea-BoldItalic.ttf"),
    ("fonts-linuxlibertine", "/usr/share/fonts/opentype/linux-libertine/LinLibertine_R.otf"),
    ("fonts-linuxlibertine", "/usr/share/fonts/opentype/linux-libertine/LinLibertine_RBI.otf"),
    ("fonts-sil-gentiumplus", "/usr/share/fonts/truetype/gentiumplus/GentiumPlus-Regular.ttf"),
    ("fonts-sil-gentiumplus", "/usr/share/fonts/truetype/gentiumplus/GentiumPlus-Italic.ttf"),
    # Monospaced.
    ("fonts-firacode", "/usr/share/fonts/truetype/firacode/FiraCode-Regular.ttf"),
    ("fonts-firacode", "/usr/share/fonts/truetype/firacode/FiraCode-Bold.ttf"),
    ("fonts-inconsolata", "/usr/share/fonts/truetype/inconsolata/Inconsolata.otf"),
    ("fonts-noto-mono", "/usr/share/fonts/truetype/noto/NotoSansMono-Bold.ttf"),
    # Handwriting-like.
    ("fonts-humor-sans", "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf"),
    ("fonts-dancingscript", "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf"),
    ("fonts-dancingscript", "/usr/share/fonts/opentype/dancingscript/DancingScript-Bold.otf"),
    ("fonts-kristi", "/usr/share/fonts/truetype/kristi/Kristi.ttf"),
)

TRAIN_FONT_PACKAGES = tuple(sorted({package for package, _ in TRAIN_FONTS}))

_cache = {}


def load(table=TRAIN_FONTS):
    """The fonts of `table` at PT, in table order; a missing file is a SystemExit that
    names it and its package (never a silently smaller set)."""
    from PIL import ImageFont

    missing = [(package, path) for package, path in table if not Path(path).is_file()]
    if missing:
        packages = " ".join(sorted({p for p, _ in missing}))
        raise SystemExit(f"training font files missing: {', '.join(path for _, path in missing)}; "
                         f"apt-get install {packages} (scripts/setup.sh test installs them)")
    key = tuple(table)
    if key not in _cache:
        _cache[key] = [ImageFont.truetype(path, PT) for _, path in table]
    return _cache[key]


def _hand(rng, rotate=10.0, shear=0.2, aspect=0.1):
    """A random hand as a 2x2 matrix: rotation (degrees), shear, x stretched or squeezed."""
    th = np.radians(rng.uniform(-rotate, rotate))
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return rot @ np.array([[1.0, rng.uniform(-shear, shear)], [0.0, 1.0]]) @ np.diag(
        [1.0 + rng.uniform(-aspect, aspect), 1.0])


def glyph(font, digit, matrix=None, bold=0, thin=0):
    """A 0-255 uint8 canvas with `digit` filled white on black around its centre, an
    outline stroke of `bold` px (embolden) or a min filter of `thin` px each side, and
    the 2x2 `matrix` applied about the centre."""
    from PIL import Image, ImageDraw, ImageFilter

    img = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = draw.textbbox((0, 0), str(digit), font=font, stroke_width=bold)
    origin = (CANVAS / 2 - (x0 + x1) / 2, CANVAS / 2 - (y0 + y1) / 2)
    draw.text(origin, str(digit), fill=255, font=font, stroke_width=bold, stroke_fill=255)
    if thin:
        img = img.filter(ImageFilter.MinFilter(2 * thin + 1))
    if matrix is not None:
        # Image.transform maps output pixels to input ones: the inverse, about the centre.
        inv = np.linalg.inv(matrix)
        c = CANVAS / 2
        off = np.array([c, c]) - inv @ np.array([c, c])
        img = img.transform(img.size, Image.Transform.AFFINE,
                            (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                            resample=Image.Resampling.BICUBIC)
    return img


def mnist_style(img):
    """MNIST's normalisation of a white-on-black canvas (PIL "L" image): the ink's box
    scaled (area average) to 20 px on its longer side, aspect kept, pasted into a black
    28x28 float32 image in [0, 1] with the ink's centre of mass at (14, 14), rounded."""
    from PIL import Image

    a = np.asarray(img)
    rows, cols = np.flatnonzero((a >= INK).any(1)), np.flatnonzero((a >= INK).any(0))
    if not len(rows):
        raise ValueError("no ink")
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    scale = S.BOX / max(y1 - y0, x1 - x0)
    # Crop with a margin that keeps the faint anti-aliased edge outside the 50 % box.
    pad = int(np.ceil(1 / scale))
    y0, x0 = max(y0 - pad, 0), max(x0 - pad, 0)
    y1, x1 = min(y1 + pad, a.shape[0]), min(x1 + pad, a.shape[1])
    w, h = max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1)
    small = np.asarray(img.resize((w, h), Image.Resampling.BOX, box=(x0, y0, x1, y1)),
                       np.float32) / 255.0
    mass = small.sum()
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    cy, cx = (yy * small).sum() / mass, (xx * small).sum() / mass
    top = int(np.clip(round(S.SIZE / 2 - cy), 0, S.SIZE - h))
    left = int(np.clip(round(S.SIZE / 2 - cx), 0, S.SIZE - w))
    out = np.zeros((S.SIZE, S.SIZE), np.float32)
    out[top: top + h, left: left + w] = small
    return out


def stroke_width(img):
    """The ink's mean stroke width in pixels of the final image, had it been normalised:
    twice the area over the boundary length, times the 20 px box's scale."""
    a = np.asarray(img) >= INK
    inner = a[1:-1, 1:-1] & a[:-2, 1:-1] & a[2:, 1:-1] & a[1:-1, :-2] & a[1:-1, 2:]
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    scale = S.BOX / max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    return 2 * a.sum() / max(a.sum() - inner.sum(), 1) * scale


def _widths(table):
    key = ("widths", tuple(table))
    if key not in _cache:
        _cache[key] = np.array([[stroke_width(glyph(f, d)) for d in range(10)] for f in load(table)])
    return _cache[key]


def font_digits(rng, n, table=TRAIN_FONTS):
    """n digits from random fonts of `table` with a random weight change and hand:
    images [n, 28, 28, 1] float32 in [0, 1] and labels [n]. Two in five are emboldened
    by a 1-3 px stroke (under 1 px once normalised), one in seven of those whose strokes
    are at least THIN_FROM px wide (normalised) thinned by 1 px each side; thin fonts are
    never thinned, they would break into hairlines."""
    fonts, widths = load(table), _widths(table)
    labels = rng.integers(0, 10, n)
    x = np.empty((n, S.SIZE, S.SIZE, 1), np.float32)
    for i, digit in enumerate(labels):
        k = rng.integers(len(fonts))
        u = rng.random()
        bold = int(rng.integers(1, 4)) if u < 0.4 else 0
        thin = 1 if u > 6 / 7 and widths[k, digit] >= THIN_FROM else 0
        x[i, ..., 0] = mnist_style(glyph(fonts[k], int(digit), _hand(rng), bold, thin))
    return x, labels
