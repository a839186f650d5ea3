"""Train an MNIST or Fashion-MNIST model by recipe, export it to ONNX and write its model card.

    .venv/bin/python train/train.py --recipe l2-aug --out models/mnist-l2
    .venv/bin/python train/train.py --recipe l2-aug --no-l2 --out models/mnist-plain
    .venv/bin/python train/train.py --dataset fashion-mnist --recipe fashion-cosface \
        --holdout 5000 --out models/fashion-cosface

Screening for recipe selection holds out the last 5,000 training images, which
train/selection.py then uses as validation data:

    .venv/bin/python train/train.py --recipe cosface-oe --epochs 4 --holdout 5000 --out /tmp/s4-cosface-oe
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oodtrain import data, export, recipes  # noqa: E402
from oodtrain import model as network  # noqa: E402

# What each dataset's card says the model does, and the accuracy the Rust model test
# holds the exported model to unless --accuracy-target says otherwise.
TASKS = {
    "mnist": ("MNIST digit classification; the embedding feeds Local Outlier Factor", 0.995,
              "white digit on black"),
    "fashion-mnist": ("Fashion-MNIST clothing classification; the embedding feeds Local Outlier Factor",
                      0.93, "light garment on black"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=sorted(data.DATASETS),
                   help="training and test data, read from the data dir like the Rust side does")
    p.add_argument("--recipe", default="l2-aug", help="recipe name (see oodtrain/recipes.py)")
    p.add_argument("--no-l2", action="store_true", help="train the plain CNN baseline (no L2 constraint)")
    p.add_argument("--out", required=True, type=Path, help="output folder (model.onnx, card.json, classes.json)")
    p.add_argument("--name", help="model name in the card (default: the output folder's name)")
    p.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--subset", type=int, help="train on the first N training images only (smoke tests)")
    p.add_argument("--holdout", type=int, default=0,
                   help="hold out the last N training images for recipe selection (selection.py)")
    p.add_argument("--accuracy-target", type=float,
                   help="test accuracy the Rust model test holds the exported model to "
                   "(default: 0.995 for MNIST, 0.93 for Fashion-MNIST)")
    args = p.parse_args(argv)
    if args.accuracy_target is None:
        args.accuracy_target = TASKS[args.dataset][1]
    return args


def augmenter(seed: int):
    import keras
    from keras import layers

    # Small affine jitter: digits stay digits (no flips), as in the usual MNIST setups.
    return keras.Sequential([
        layers.RandomRotation(0.04, fill_mode="constant", seed=seed),
        layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 1),
        layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed + 2),
    ], name="augment")


def train_dataset(x, y, recipe, seed):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(recipe.batch_size)
    if recipe.augment:
        aug = augmenter(seed)
        ds = ds.map(lambda a, b: (aug(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def versions():
    import keras
    import numpy
    import onnx
    import onnxruntime
    import tensorflow
    import tf2onnx

    return {
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
    }


def main(argv=None):
    args = parse_args(argv)
    recipe = recipes.lookup(args.recipe)
    if args.no_l2:
        recipe = recipes.plain(recipe)
    if args.epochs:
        recipe = replace(recipe, epochs=args.epochs)

    import keras
    import numpy as np

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, train_sums = data.load(args.dataset, "train")
    x_test, y_test, test_sums = data.load(args.dataset, "test")
    # Held out from the end, so `--subset` and the held-out block never overlap.
    x_val, y_val = x_train[len(x_train) - args.holdout:], y_train[len(y_train) - args.holdout:]
    if args.holdout:
        x_train, y_train = x_train[: -args.holdout], y_train[: -args.holdout]
    if args.subset:
        x_train, y_train = x_train[: args.subset], y_train[: args.subset]

    train_model, export_model = network.build(recipe)
    print(f"recipe {recipe.name}: {recipe.description}", flush=True)
    if recipe.custom_loop():
        from oodtrain import loop

        training_seconds = loop.fit(train_model, recipe, x_train, y_train, args.seed,
                                    x_val if args.holdout else None, y_val)
        test_accuracy = float(np.mean(np.argmax(export_model.predict(x_test, batch_size=512, verbose=0)[1], 1)
                                      == y_test))
    else:
        training_seconds, test_accuracy = fit_keras(train_model, recipe, args, x_train, y_train, x_test, y_test)
    print(f"test accuracy {test_accuracy:.4f} after {training_seconds:.0f} s", flush=True)
    return write_model(args, recipe, export_model, x_train, x_test, train_sums, test_sums,
                       training_seconds, test_accuracy)


def fit_keras(train_model, recipe, args, x_train, y_train, x_test, y_test):
    """The seed and l2-aug path, unchanged so their committed models stay reproducible."""
    import keras
    import numpy as np

    steps = int(np.ceil(len(x_train) / recipe.batch_size)) * recipe.epochs
    lr = recipe.learning_rate
    if recipe.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, decay_steps=steps)
    train_model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                        metrics=["accuracy"])

    started = time.time()
    train_model.fit(train_dataset(x_train, y_train, recipe, args.seed), epochs=recipe.epochs,
                    validation_data=(x_test, y_test) if not args.subset else None, verbose=2)
    training_seconds = time.time() - started
    _, test_accuracy = train_model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    return training_seconds, test_accuracy


def write_model(args, recipe, export_model, x_train, x_test, train_sums, test_sums,
                training_seconds, test_accuracy):
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "model.onnx"
    export.export_onnx(export_model, onnx_path)
    diff = export.check_agreement(export_model, onnx_path, x_test[:256])
    print(f"ONNX Runtime vs Keras: max abs difference {diff:.2e}", flush=True)

    folder, classes = data.DATASETS[args.dataset]
    task, _, polarity = TASKS[args.dataset]
    card = {
        "name": args.name or args.out.name,
        "task": task,
        "dataset": args.dataset,
        "recipe": recipe.to_dict(),
        "seed": args.seed,
        "epochs": recipe.epochs,
        "training_images": int(len(x_train)),
        "holdout_images": args.holdout,
        "training_seconds": round(training_seconds, 1),
        "test_images": int(len(x_test)),
        "test_accuracy": round(float(test_accuracy), 6),
        "accuracy_target": args.accuracy_target,
        "data_sha256": {**{f"{folder}/{k}": v for k, v in train_sums.items()},
                        **{f"{folder}/{k}": v for k, v in test_sums.items()}},
        "input": {"name": export.INPUT_NAME, "layout": "NHWC", "shape": [None, 28, 28, 1],
                  "dtype": "float32", "range": [0.0, 1.0], "polarity": polarity},
        "outputs": {"embedding": [None, recipe.embedding_dim], "probabilities": [None, 10]},
        "onnx_keras_max_abs_diff": diff,
        "model_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (args.out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (args.out / "classes.json").write_text(json.dumps(classes) + "\n")
    print(f"wrote {onnx_path}, card.json, classes.json", flush=True)
    return card


if __name__ == "__main__":
    main()
