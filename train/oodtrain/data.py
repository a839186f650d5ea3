"""MNIST and Fashion-MNIST from the same folders the Rust side reads.

`OODGATE_DATA_DIR` names a read-only mirror; otherwise the cache that
`oodgate data fetch` fills. The trainer never downloads: run the data step first.
"""

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def data_dir() -> Path:
    if os.environ.get("OODGATE_DATA_DIR"):
        return Path(os.environ["OODGATE_DATA_DIR"])
    if os.environ.get("OODGATE_CACHE_DIR"):
        return Path(os.environ["OODGATE_CACHE_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "oodgate" / "data"


def _read_idx(path: Path, magic: int) -> np.ndarray:
    if not path.exists():
        raise SystemExit(f"{path}: missing; run `make data` (or set OODGATE_DATA_DIR to a mirror)")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise SystemExit(f"{path}: IDX magic {found}, expected {magic}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: {body.size} bytes of data, header promises {dims}")
    return body.reshape(dims)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Dataset name -> (folder under the data dir, class names in label order). The class
# names match oodgate_datasets::{MNIST_CLASSES, FASHION_MNIST_CLASSES}.
DATASETS = {
    "mnist": ("mnist", [str(d) for d in range(10)]),
    "fashion-mnist": ("fashion-mnist", ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
}


def mnist(split: str):
    """MNIST images as float32 [N, 28, 28, 1] in [0, 1], labels as int64, and file checksums."""
    return load("mnist", split)


def load(dataset: str, split: str):
    """An IDX dataset of DATASETS (both use the same four file names): images as float32
    [N, 28, 28, 1] in [0, 1], labels as int64, and file checksums."""
    if dataset not in DATASETS:
        raise SystemExit(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
    folder = data_dir() / DATASETS[dataset][0]
    img_name, lbl_name = FILES[split]
    images = _read_idx(folder / img_name, 2051)
    labels = _read_idx(folder / lbl_name, 2049)
    if len(images) != len(labels):
        raise SystemExit(f"{folder}: {len(images)} images but {len(labels)} labels")
    x = (images.astype(np.float32) / 255.0)[..., None]
    checksums = {name: sha256(folder / name) for name in (img_name, lbl_name)}
    return x, labels.astype(np.int64), checksums
