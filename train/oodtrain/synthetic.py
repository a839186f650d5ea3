"""Synthetic outliers made from MNIST digits or from nothing (noise, shapes).

Two disjoint families, so that a model trained with outlier exposure is never
selected on the kind of outlier it was trained to reject:

- TRAIN_TYPES: what outlier-exposure recipes may show the network during training;
- HELDOUT_TYPES: used only by `selection.py` to compare recipes.

Fashion-MNIST and CIFAR-10 are never read here (nor anywhere in training or
selection); they only appear in the final Rust evaluation.

Every generator is `fn(rng, n, digits, labels) -> float32 [n, 28, 28, 1] in [0, 1]`,
white on black like MNIST unless the type says otherwise.
"""

import numpy as np

from . import glyphs

SIZE = 28


def _pick(rng, digits, n):
    return digits[rng.integers(0, len(digits), n)]


def _upsample_matrix(low: int, high: int = SIZE) -> np.ndarray:
    """Bilinear interpolation matrix [high, low] (align-corners)."""
    pos = np.linspace(0, low - 1, high)
    lo = np.floor(pos).astype(int).clip(0, low - 1)
    hi = (lo + 1).clip(0, low - 1)
    w = pos - lo
    m = np.zeros((high, low), np.float32)
    m[np.arange(high), lo] += 1 - w
    m[np.arange(high), hi] += w
    return m


def _coords():
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return yy[None], xx[None]


# ---- training types ---------------------------------------------------------------

def uniform_noise(rng, n, digits=None, labels=None):
    return rng.random((n, SIZE, SIZE, 1), dtype=np.float32)


def smooth_noise(rng, n, digits=None, labels=None):
    """Uniform noise on a coarse 2x2..7x7 grid, bilinearly upsampled: blobs and gradients."""
    out = np.empty((n, SIZE, SIZE), np.float32)
    res = rng.integers(2, 8, n)
    for r in np.unique(res):
        idx = np.flatnonzero(res == r)
        m = _upsample_matrix(int(r))
        low = rng.random((len(idx), r, r), dtype=np.float32)
        out[idx] = np.einsum("hi,nij,wj->nhw", m, low, m)
    return out[..., None]


def patch_shuffle(rng, n, digits, labels=None):
    """A digit cut into a 4x4 grid of 7x7 tiles, tiles permuted: digit strokes, no digit."""
    d = _pick(rng, digits, n).reshape(n, 4, 7, 4, 7).transpose(0, 1, 3, 2, 4).reshape(n, 16, 7, 7)
    perm = np.argsort(rng.random((n, 16)), axis=1)
    d = np.take_along_axis(d, perm[:, :, None, None], axis=1)
    return d.reshape(n, 4, 4, 7, 7).transpose(0, 1, 3, 2, 4).reshape(n, SIZE, SIZE, 1)


def shapes(rng, n, digits=None, labels=None):
    """One to three filled ellipses or rectangles of random grey levels on black."""
    yy, xx = _coords()
    out = np.zeros((n, SIZE, SIZE), np.float32)
    count = rng.integers(1, 4, n)
    for k in range(3):
        active = (count > k)[:, None, None]
        cy, cx = (rng.uniform(4, 24, (2, n, 1, 1))).astype(np.float32)
        ry, rx = (rng.uniform(3, 13, (2, n, 1, 1))).astype(np.float32)
        level = rng.uniform(0.2, 1.0, (n, 1, 1)).astype(np.float32)
        ellipse = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        rect = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        mask = np.where(rng.random((n, 1, 1)) < 0.5, ellipse, rect) & active
        out = np.where(mask, np.maximum(out, level), out)
    return out[..., None]


# ---- held-out types (selection only) -----------------------------------------------

def gaussian_noise(rng, n, digits=None, labels=None):
    mean = rng.uniform(0.2, 0.8, (n, 1, 1, 1))
    std = rng.uniform(0.1, 0.3, (n, 1, 1, 1))
    return np.clip(rng.normal(mean, std, (n, SIZE, SIZE, 1)), 0, 1).astype(np.float32)


def pixel_scramble(rng, n, digits, labels=None):
    """All 784 pixels of a digit permuted: a digit's ink histogram, no structure."""
    d = _pick(rng, digits, n).reshape(n, -1)
    perm = np.argsort(rng.random(d.shape), axis=1)
    return np.take_along_axis(d, perm, axis=1).reshape(n, SIZE, SIZE, 1)


def _gauss_kernel(sigma):
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def strong_blur(rng, n, digits, labels=None):
    """A digit blurred with sigma 3 px (separable Gaussian), rescaled to peak 1."""
    d = _pick(rng, digits, n)[..., 0]
    k = _gauss_kernel(3.0)
    r = len(k) // 2
    p = np.pad(d, ((0, 0), (r, r), (r, r)))
    rows = np.stack([p[:, i: i + SIZE, :] for i in range(2 * r + 1)], 0)
    p = np.tensordot(k, rows, axes=1)
    cols = np.stack([p[:, :, i: i + SIZE] for i in range(2 * r + 1)], 0)
    b = np.tensordot(k, cols, axes=1)
    b /= np.maximum(b.max(axis=(1, 2), keepdims=True), 1e-6)
    return b[..., None].astype(np.float32)


def inverted(rng, n, digits, labels=None):
    """Black digit on white."""
    return 1.0 - _pick(rng, digits, n)


def overlay(rng, n, digits, labels):
    """Two digits of different classes superimposed (pixel-wise max)."""
    a = rng.integers(0, len(digits), n)
    b = rng.integers(0, len(digits), n)
    same = labels[a] == labels[b]
    while same.any():
        b[same] = rng.integers(0, len(digits), same.sum())
        same = labels[a] == labels[b]
    return np.maximum(digits[a], digits[b])


def gratings(rng, n, digits=None, labels=None):
    """Sinusoidal stripes of random orientation, period 3-10 px and phase."""
    yy, xx = _coords()
    theta = rng.uniform(0, np.pi, (n, 1, 1))
    period = rng.uniform(3, 10, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    g = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
    return g[..., None].astype(np.float32)


TRAIN_TYPES = {
    "uniform_noise": uniform_noise,
    "smooth_noise": smooth_noise,
    "patch_shuffle": patch_shuffle,
    "shapes": shapes,
}

HELDOUT_TYPES = {
    # Near-digit and unseen in training: Cyrillic letters that look neither Latin nor
    # like digits (oodtrain.glyphs.HELDOUT_GLYPHS).
    "cyrillic": glyphs.heldout_glyphs,
    "gaussian_noise": gaussian_noise,
    "pixel_scramble": pixel_scramble,
    "strong_blur": strong_blur,
    "inverted": inverted,
    "overlay": overlay,
    "gratings": gratings,
}


def mixture(rng, n, digits, labels, types):
    """n outliers drawn evenly from the named TRAIN_TYPES, shuffled."""
    unknown = [t for t in types if t not in TRAIN_TYPES]
    if unknown:
        raise SystemExit(f"not a training outlier type: {unknown}; known: {sorted(TRAIN_TYPES)}")
    which = rng.integers(0, len(types), n)
    out = np.empty((n, SIZE, SIZE, 1), np.float32)
    for i, t in enumerate(types):
        idx = np.flatnonzero(which == i)
        if len(idx):
            out[idx] = TRAIN_TYPES[t](rng, len(idx), digits, labels)
    return out
