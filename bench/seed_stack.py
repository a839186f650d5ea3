"""The stack a user would pick instead of oodgate: Keras `predict` + scikit-learn LOF.

    seed_stack.py --dir DIR --single 100 --out DIR/seed

Run by `oodgate bench` (which wrote DIR: mnist.npy, fashion-mnist.npy, cifar10.npy
as raw u8 test images, train.npy and queries.npy as oodgate's embeddings). Measures:

- scikit-learn `LocalOutlierFactor(n_neighbors=20, novelty=True)`: fit on the 60,000
  training embeddings, `score_samples` of the 30,000 query embeddings (the reference
  for oodgate's LOF: scores.npy and offset_ are written for the agreement check);
- the batch job: preprocessing (u8 -> float in [0, 1]; CIFAR-10 to gray 28x28 with
  tf.image) and `model.predict(batch_size=256)` of the 30,000 images, plus the
  `score_samples` time above;
- one image per call, as the seed's web demo runs it: preprocess one image,
  `model.predict`, `score_samples` of its embedding; and the same with `model(x)`.

The Keras network is the committed default model's architecture (recipe l2-aug, built
by train/oodtrain) with freshly initialised weights: the timing does not depend on the
weights, and the LOF part scores oodgate's embeddings of the same images (the trained
model's), so its work is what the trained seed stack would do.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def preprocess(images: np.ndarray):
    """u8 (n, h, w, c) -> float32 (n, 28, 28, 1) in [0, 1], as the seed would."""
    import tensorflow as tf

    x = images.astype(np.float32) / 255.0
    if x.shape[-1] == 3:
        x = tf.image.rgb_to_grayscale(x)
    if x.shape[1:3] != (28, 28):
        x = tf.image.resize(x, (28, 28), method="area")
    return np.asarray(x, dtype=np.float32)


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--contamination", type=float, default=0.001)
    p.add_argument("--single", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {}

    started = time.perf_counter()
    import keras
    import sklearn
    import tensorflow as tf
    from sklearn.neighbors import LocalOutlierFactor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    from oodtrain.model import build
    from oodtrain.recipes import lookup

    result["import_seconds"] = time.perf_counter() - started
    result["versions"] = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }

    # --- scikit-learn LOF on oodgate's embeddings ---------------------------------
    train = np.load(args.dir / "train.npy")
    queries = np.load(args.dir / "queries.npy")
    started = time.perf_counter()
    lof = LocalOutlierFactor(
        n_neighbors=args.k, novelty=True, contamination=args.contamination
    )
    lof.fit(train)
    result["lof_fit_seconds"] = time.perf_counter() - started
    result["lof_offset"] = float(lof.offset_)
    result["lof_method"] = str(lof._fit_method)
    started = time.perf_counter()
    scores = lof.score_samples(queries)
    result["lof_score_seconds"] = time.perf_counter() - started
    result["lof_queries"] = int(queries.shape[0])
    np.save(args.out / "scores.npy", np.asarray(scores, dtype=np.float64))

    # --- Keras: the same architecture as the default model -------------------------
    _, model = build(lookup("l2-aug"))
    sets = [np.load(args.dir / f"{name}.npy") for name in ("mnist", "fashion-mnist", "cifar10")]
    total = sum(len(s) for s in sets)
    # Warm-up (graph tracing), not timed: one batch.
    model.predict(preprocess(sets[0][: args.batch_size]), batch_size=args.batch_size, verbose=0)

    started = time.perf_counter()
    pixels = np.concatenate([preprocess(s) for s in sets])
    result["batch_preprocess_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    embedding, probabilities = model.predict(pixels, batch_size=args.batch_size, verbose=0)
    result["batch_predict_seconds"] = time.perf_counter() - started
    assert embedding.shape == (total, train.shape[1]), embedding.shape
    result["batch_images"] = total
    result["batch_size"] = args.batch_size
    result["batch_seconds"] = (
        result["batch_preprocess_seconds"]
        + result["batch_predict_seconds"]
        + result["lof_score_seconds"]
    )
    result["batch_images_per_second"] = total / result["batch_seconds"]

    # --- One image per call ---------------------------------------------------------
    offsets = np.cumsum([0] + [len(s) for s in sets])
    picks = np.linspace(0, total - 1, args.single).astype(int)
    result["single_indices"] = [int(i) for i in picks]

    def one(i):
        s = int(np.searchsorted(offsets, i, side="right") - 1)
        return sets[s][i - offsets[s]][None]

    for name, run in (
        ("predict", lambda x: model.predict(x, verbose=0)),
        ("call", lambda x: model(x, training=False)),
    ):
        run(preprocess(one(0)))  # warm-up
        latencies = []
        for i in picks:
            started = time.perf_counter()
            x = preprocess(one(i))
            run(x)
            lof.score_samples(queries[i : i + 1])
            latencies.append(time.perf_counter() - started)
        result[f"single_{name}_ms"] = {
            "n": len(latencies),
            "p50": 1e3 * percentile(latencies, 50),
            "p99": 1e3 * percentile(latencies, 99),
            "mean": 1e3 * float(np.mean(latencies)),
        }

    (args.out / "seed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "single_indices"}))


if __name__ == "__main__":
    main()
