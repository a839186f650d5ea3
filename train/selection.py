"""Recipe selection on MNIST held-out data and synthetic outliers only.

    .venv/bin/python train/selection.py /tmp/issue5/models/a /tmp/issue5/models/b [--json out.json]

For each model folder (trained with `train.py --holdout 5000`): LOF (k=20, scikit-learn,
novelty mode) is fitted on the embeddings of the images the model trained on
(MNIST train[:training_images]) and scores

- the held-out MNIST validation images (the last `holdout_images` of MNIST train),
- synthetic outliers made from those validation digits or from noise
  (oodtrain.synthetic): HELDOUT_TYPES (never used in training; these decide) and
  TRAIN_TYPES (shown to outlier-exposure recipes; reported for reference only).

Per type: AUROC (validation vs outliers) and the fraction rejected at the LOF threshold
that accepts 99 % of the validation images. Fashion-MNIST and CIFAR-10 are never read.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oodtrain import data, synthetic  # noqa: E402

K = 20
PER_TYPE = 2000


def embed(onnx_path, x, batch=1000):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    outs = [s.run(["embedding", "probabilities"], {"pixels": x[i: i + batch]}) for i in range(0, len(x), batch)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def auroc(inliers, outliers):
    """P(outlier score > inlier score), ties counted half (higher score = more outlying)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(inliers)), np.ones(len(outliers))]
    return float(roc_auc_score(y, np.r_[inliers, outliers]))


def outlier_sets(x_val, y_val, seed=0):
    rng = np.random.default_rng(seed)
    sets = {}
    for family, types in (("heldout", synthetic.HELDOUT_TYPES), ("train", synthetic.TRAIN_TYPES)):
        for name, fn in types.items():
            sets[name] = (family, fn(rng, PER_TYPE, x_val, y_val))
    return sets


def evaluate(folder: Path, x_train, x_val, y_val, sets):
    from sklearn.neighbors import LocalOutlierFactor

    card = json.loads((folder / "card.json").read_text())
    n_train, holdout = card["training_images"], card.get("holdout_images", 0)
    if holdout < len(x_val) or n_train > len(x_train) - len(x_val):
        raise SystemExit(f"{folder}: trained on images the selection holds out "
                         f"(training_images {n_train}, holdout_images {holdout}); retrain with --holdout")
    t = time.time()
    onnx = folder / "model.onnx"
    train_emb, _ = embed(onnx, x_train[:n_train])
    val_emb, val_prob = embed(onnx, x_val)
    lof = LocalOutlierFactor(n_neighbors=K, novelty=True, algorithm="brute").fit(train_emb)
    val_score = -lof.score_samples(val_emb)
    threshold = np.quantile(val_score, 0.99, method="higher")
    row = {"model": folder.name, "recipe": card["recipe"]["name"], "epochs": card["epochs"],
           "val_accuracy": float(np.mean(np.argmax(val_prob, 1) == y_val)),
           "test_accuracy": card["test_accuracy"], "training_seconds": card["training_seconds"],
           "val_accepted": float(np.mean(val_score <= threshold)), "types": {}}
    for name, (family, x_out) in sets.items():
        score = -lof.score_samples(embed(onnx, x_out)[0])
        row["types"][name] = {"family": family, "auroc": auroc(val_score, score),
                              "rejected": float(np.mean(score > threshold))}
    held = [v for v in row["types"].values() if v["family"] == "heldout"]
    row["heldout_mean_auroc"] = float(np.mean([v["auroc"] for v in held]))
    row["heldout_min_auroc"] = float(np.min([v["auroc"] for v in held]))
    row["heldout_mean_rejected"] = float(np.mean([v["rejected"] for v in held]))
    row["heldout_min_rejected"] = float(np.min([v["rejected"] for v in held]))
    row["seconds"] = time.time() - t
    return row


def print_tables(rows):
    print("\n| model | recipe | ep | val acc | test acc | held-out mean AUROC | min AUROC | mean rej@99 | min rej@99 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['recipe']} | {r['epochs']} | {100 * r['val_accuracy']:.2f} % | "
              f"{100 * r['test_accuracy']:.2f} % | {r['heldout_mean_auroc']:.4f} | {r['heldout_min_auroc']:.4f} | "
              f"{100 * r['heldout_mean_rejected']:.1f} % | {100 * r['heldout_min_rejected']:.1f} % |")
    names = list(rows[0]["types"])
    print("\nPer type, AUROC / rejected at 99 % validation acceptance "
          "(heldout = selection types; train = outlier-exposure types, reference only):\n")
    print("| model | " + " | ".join(f"{n} ({rows[0]['types'][n]['family']})" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for r in rows:
        cells = [f"{r['types'][n]['auroc']:.4f} / {100 * r['types'][n]['rejected']:.1f} %" for n in names]
        print(f"| {r['model']} | " + " | ".join(cells) + " |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help="model folders (model.onnx, card.json)")
    p.add_argument("--holdout", type=int, default=5000, help="validation = the last N MNIST train images")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args(argv)

    x, y, _ = data.mnist("train")  # MNIST only: no Fashion-MNIST, no CIFAR-10 here
    x_val, y_val = x[-args.holdout:], y[-args.holdout:]
    sets = outlier_sets(x_val, y_val)
    rows = []
    for folder in args.models:
        rows.append(evaluate(folder, x, x_val, y_val, sets))
        print(f"{folder}: held-out mean AUROC {rows[-1]['heldout_mean_auroc']:.4f} "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)
    print_tables(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
