"""scikit-learn's LocalOutlierFactor on embeddings that oodgate exported.

    sklearn_lof.py --train train.npy --queries queries.npy --k 20 \
        --contamination 0.001 0.01 --out DIR

Writes DIR/scores.npy (score_samples of the queries), DIR/training_scores.npy
(negative_outlier_factor_) and DIR/sklearn.json (offset_ per contamination, timings).
The reference the Rust parity test compares oodgate's LOF with.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.neighbors import LocalOutlierFactor


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--contamination", type=float, nargs="+", default=[0.001, 0.01])
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()

    train = np.load(args.train)
    queries = np.load(args.queries)
    args.out.mkdir(parents=True, exist_ok=True)

    offsets = {}
    started = time.perf_counter()
    for i, c in enumerate(args.contamination):
        lof = LocalOutlierFactor(n_neighbors=args.k, novelty=True, contamination=c)
        lof.fit(train)
        offsets[str(c)] = float(lof.offset_)
        if i == 0:
            fit_seconds = time.perf_counter() - started
            started = time.perf_counter()
            scores = lof.score_samples(queries)
            score_seconds = time.perf_counter() - started
            np.save(args.out / "scores.npy", np.asarray(scores, dtype=np.float64))
            np.save(args.out / "training_scores.npy", np.asarray(lof.negative_outlier_factor_, dtype=np.float64))
    meta = {
        "sklearn": sklearn.__version__,
        "k": args.k,
        "offsets": offsets,
        "fit_seconds": fit_seconds,
        "score_seconds": score_seconds,
        "train": list(train.shape),
        "queries": list(queries.shape),
    }
    (args.out / "sklearn.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
