"""Writes tests/sklearn_fixture.json: scikit-learn's LocalOutlierFactor on synthetic data.

Run from the workspace root with the project's virtualenv:

    .venv/bin/python lof/tests/make_sklearn_fixture.py

The Rust test `sklearn_parity.rs` reads the fixture and checks that the crate reproduces
scikit-learn's training scores, offsets and query scores.

Coordinates are multiples of 1/1024, so they are exact in float32 (what the crate stores)
and in short decimals, and every squared distance is exact in float64: scikit-learn and
the crate then see identical distances, whatever their summation order. The script also
checks that no k-th / (k+1)-th neighbour distances tie (unless the tied points are
identical, which cannot change a score), since a tie would make the neighbour set depend
on the search's tie-breaking rather than on LOF.
"""

import json
import pathlib

import numpy as np
import sklearn
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

K = 20
DIM = 8
N_TRAIN = 2000
N_QUERIES = 500
CONTAMINATION = 0.01
OTHER_CONTAMINATIONS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5]
GRID = 1024.0
SEED = 20240611

rng = np.random.default_rng(SEED)


def grid(a):
    return np.round(a * GRID) / GRID


# Three clusters of different spread, so local densities differ.
centres = np.array([np.zeros(DIM), np.full(DIM, 4.0), np.r_[np.full(4, -3.0), np.full(4, 3.0)]])
scales = np.array([1.0, 0.5, 1.5])
which = rng.integers(0, 3, size=N_TRAIN)
train = grid(centres[which] + rng.normal(size=(N_TRAIN, DIM)) * scales[which, None])
# Exact duplicates: eight pairs and one triple, at scattered rows.
for src, dst in [(3, 1500), (10, 11), (200, 201), (700, 1999), (42, 1042), (5, 6), (999, 1000), (77, 1777)]:
    train[dst] = train[src]
train[1234] = train[1233] = train[321]

inliers = centres[rng.integers(0, 3, size=400)] + rng.normal(size=(400, DIM)) * 1.0
outliers = rng.uniform(-10, 10, size=(N_QUERIES - 400, DIM))
queries = grid(np.vstack([inliers, outliers]))
queries[0] = train[17]  # a query exactly on a training point
queries = queries[rng.permutation(N_QUERIES)]

assert np.array_equal(train.astype(np.float32).astype(np.float64), train)
assert np.array_equal(queries.astype(np.float32).astype(np.float64), queries)


def check_no_boundary_ties(points, exclude_self):
    extra = 2 if exclude_self else 1
    nn = NearestNeighbors(n_neighbors=K + extra, algorithm="brute").fit(train)
    dist, ind = nn.kneighbors(points)
    for row in range(len(points)):
        d, i = dist[row], ind[row]
        if exclude_self:
            keep = i != row
            if keep.all():
                keep[-1] = False
            d, i = d[keep], i[keep]
        if d[K - 1] == d[K] and not np.array_equal(train[i[K - 1]], train[i[K]]):
            raise SystemExit(f"tie at the k-th neighbour for row {row}: choose another SEED")


check_no_boundary_ties(train, exclude_self=True)
check_no_boundary_ties(queries, exclude_self=False)

lof = LocalOutlierFactor(n_neighbors=K, novelty=True, contamination=CONTAMINATION).fit(train)
offsets = [
    {
        "contamination": c,
        "offset": float(
            LocalOutlierFactor(n_neighbors=K, novelty=True, contamination=c).fit(train).offset_
        ),
    }
    for c in OTHER_CONTAMINATIONS
]

fixture = {
    "generator": "lof/tests/make_sklearn_fixture.py",
    "sklearn_version": sklearn.__version__,
    "numpy_version": np.__version__,
    "k": K,
    "dim": DIM,
    "n_train": N_TRAIN,
    "n_queries": N_QUERIES,
    "contamination": CONTAMINATION,
    "train": train.ravel().tolist(),
    "queries": queries.ravel().tolist(),
    "negative_outlier_factor": lof.negative_outlier_factor_.tolist(),
    "kdist": lof._distances_fit_X_[:, K - 1].tolist(),
    "lrd": lof._lrd.tolist(),
    "offset": float(lof.offset_),
    "offsets": offsets,
    "score_samples": lof.score_samples(queries).tolist(),
    "decision_function": lof.decision_function(queries).tolist(),
    "predict": lof.predict(queries).tolist(),
}
out = pathlib.Path(__file__).with_name("sklearn_fixture.json")
out.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
print(f"wrote {out} ({out.stat().st_size} bytes); rejected queries: {(lof.predict(queries) == -1).sum()}")
