"""A small RGB classifier exported the way users export theirs, and its gate folder.

    make_rgb_model.py --out DIR [--seed 0] [--train 4000] [--per-class 100]
    make_rgb_model.py --score DIR INPUTS.npy LABELS.npy

The model takes NCHW float input [N, 3, 32, 32] (a Permute inside turns it to NHWC,
since TensorFlow's CPU convolutions are NHWC), normalised with ImageNet's mean and std,
and has two outputs: `embedding` [N, 64] and `logits` [N, 10] (no softmax).

Its data are tinted digits: MNIST *training* images, each given a random ink and paper
colour and upscaled to 40x36, so the gate's center-crop resize has work to do. (The
test splits and CIFAR-10 are report-only in this project, and CIFAR-10's training
batches are not in the offline data mirror.) Each training image goes through the
gate's own preprocessing (`preprocess_reference.py`, which the server matches), so
serving feeds the model what it learnt on.

DIR receives model.onnx, classes.json ("0".."9": a folder of class subfolders is read
in sorted order, which is then the model's class order), gate.toml and reference/<class>/
with --per-class PNGs per class, disjoint from the training images.

--score prints {"accuracy": ..., "n": ...} for DIR/model.onnx on model inputs that were
prepared elsewhere (the Rust test's, through the server's preprocessing).
"""

import argparse
import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_reference import preprocess_image  # noqa: E402

SIZE = (40, 36)  # width, height of the stored images
CLASSES = [str(d) for d in range(10)]
INPUT_NAME = "images"
OUTPUT_NAMES = ("embedding", "logits")
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
SPEC = {
    "layout": "NCHW",
    "height": 32,
    "width": 32,
    "colour": "rgb",
    "resize": "center-crop",
    "crop_fraction": 0.875,
    "pad": 0.0,
    "scale": 255.0,
    "mean": MEAN,
    "std": STD,
}
GATE_TOML = f"""# A small RGB digit classifier (tests/python/make_rgb_model.py).
name = "tinted-digits"

[input]
colour = "rgb"
resize = "center-crop"
crop_fraction = 0.875
scale = 255.0
mean = {MEAN}
std = {STD}

[outputs]
embedding = "embedding"
logits = "logits"

[lof]
k = 20

[reference]
folder = "reference"
"""


def mnist_train():
    root = Path(os.environ.get("OODGATE_DATA_DIR") or Path.home() / ".cache/oodgate/data")

    def read(name, magic):
        path = root / "mnist" / name
        if not path.exists():
            raise SystemExit(f"{path}: missing; set OODGATE_DATA_DIR to the data mirror")
        raw = gzip.decompress(path.read_bytes())
        if int.from_bytes(raw[:4], "big") != magic:
            raise SystemExit(f"{path}: not an IDX file with magic {magic}")
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)

    return read("train-images-idx3-ubyte.gz", 2051), read("train-labels-idx1-ubyte.gz", 2049)


def tinted(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The digit in a random ink on a random paper colour, upscaled to SIZE."""
    while True:
        ink, paper = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if np.abs(ink - paper).sum() >= 150:  # keep the digit visible
            break
    alpha = digit.astype(np.float32)[..., None] / 255.0
    rgb = paper + (ink - paper) * alpha
    image = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    return image.resize(SIZE, Image.BILINEAR)


def build_model(seed: int):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((3, 32, 32), name=INPUT_NAME)
    x = layers.Permute((2, 3, 1), name="to_nhwc")(x)
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    embedding = layers.Dense(64, activation="relu", name="embedding")(x)
    logits = layers.Dense(len(CLASSES), name="logits")(embedding)
    # Trained through the logits alone; exported with both outputs (same layers).
    return keras.Model(inputs, logits), keras.Model(inputs, [embedding, logits])


def rename(graph, old: str, new: str):
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def export(model, path: Path):
    """Keras 3's ONNX export (tf2onnx), inputs and outputs renamed as a user would."""
    import onnx

    tmp = path.with_suffix(".keras-export.onnx")
    model.predict(np.zeros((2, 3, 32, 32), np.float32), verbose=0)
    model.export(str(tmp), format="onnx", verbose=False)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 2:
        raise SystemExit(f"unexpected graph: {len(graph.input)} inputs, {len(graph.output)} outputs")
    rename(graph, graph.input[0].name, INPUT_NAME)
    for out, name in zip(list(graph.output), OUTPUT_NAMES):
        rename(graph, out.name, name)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def make(out: Path, seed: int, train: int, per_class: int):
    import keras

    images, labels = mnist_train()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    train_idx = order[:train]
    # Reference images: the next ones of each class, none of them trained on.
    rest = order[train:]
    reference_idx = np.concatenate([rest[labels[rest] == c][:per_class] for c in range(10)])

    x = np.stack([preprocess_image(tinted(images[i], rng), SPEC) for i in train_idx])
    y = labels[train_idx].astype(np.int64)
    trained, model = build_model(seed)
    trained.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = trained.fit(x, y, epochs=12, batch_size=64, validation_split=0.1, verbose=0)

    out.mkdir(parents=True, exist_ok=True)
    export(model, out / "model.onnx")
    (out / "classes.json").write_text(json.dumps(CLASSES) + "\n")
    (out / "gate.toml").write_text(GATE_TOML)
    for n, i in enumerate(reference_idx):
        folder = out / "reference" / CLASSES[labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        tinted(images[i], rng).save(folder / f"{n:05d}.png")

    sess = session(out / "model.onnx")
    probe = x[:256]
    onnx_out = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: probe})
    keras_out = model.predict(probe, verbose=0)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(onnx_out, keras_out))
    if not diff < 1e-4:
        raise SystemExit(f"ONNX Runtime and Keras disagree: max abs difference {diff:.3g}")
    summary = {
        "input": {"name": sess.get_inputs()[0].name, "shape": sess.get_inputs()[0].shape},
        "outputs": {o.name: o.shape for o in sess.get_outputs()},
        "keras_onnx_max_diff": diff,
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "train_images": int(train),
        "reference_images": int(len(reference_idx)),
    }
    (out / "build.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


def score(folder: Path, inputs: Path, labels: Path):
    x = np.load(inputs).astype(np.float32)
    y = np.load(labels)
    (logits,) = session(folder / "model.onnx").run(["logits"], {INPUT_NAME: x})
    print(json.dumps({"accuracy": float(np.mean(logits.argmax(axis=1) == y)), "n": int(len(y))}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=6000)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--score", nargs=3, type=Path, metavar=("DIR", "INPUTS", "LABELS"))
    args = p.parse_args()
    if args.score:
        score(*args.score)
    elif args.out:
        make(args.out, args.seed, args.train, args.per_class)
    else:
        p.error("give --out DIR or --score DIR INPUTS LABELS")


if __name__ == "__main__":
    main()
