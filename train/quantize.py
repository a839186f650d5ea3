"""Turn a gate's model.onnx into model.int8.onnx (static int8 quantisation) and record how.

    .venv/bin/python train/quantize.py models/mnist-cosface-oe-near-fonts
    .venv/bin/python train/quantize.py models/fashion-cosface --check

Calibration images are training images of the gate's dataset (MNIST for the trainer's
legacy folders, `[reference] dataset` for a gate.toml folder), preprocessed as the
service does. Test sets are never read here: they are the reported sets.

The card (card.json) gets an `int8` entry: the settings, the calibration set and count,
and the SHA-256 of the fp32 model it was made from. `--check` compares int8 with fp32 on
training images the calibration did not use (accuracy, embedding agreement, speed).
"""

import argparse
import hashlib
import json
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime import quantization as q
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oodtrain import data  # noqa: E402

METHODS = {
    "minmax": q.CalibrationMethod.MinMax,
    "entropy": q.CalibrationMethod.Entropy,
    "percentile": q.CalibrationMethod.Percentile,
}
FORMATS = {"qdq": q.QuantFormat.QDQ, "qoperator": q.QuantFormat.QOperator}
# The convolutions hold nearly all the multiply-adds (7.4 M of 7.5 M per image). With
# Relu and MaxPool quantised too, activations stay uint8 from one convolution to the
# next and each Relu becomes its convolution's output range: the output scale then spans
# [0, max] instead of wasting half its steps on negatives. The embedding's dense layer
# and the L2 normalisation stay fp32, where LOF's neighbour distances are decided.
DEFAULT_OPS = ["Conv", "Relu", "MaxPool"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="a model folder with model.onnx (and card.json)")
    p.add_argument("--format", choices=sorted(FORMATS), default="qdq")
    p.add_argument("--method", choices=sorted(METHODS), default="minmax",
                   help="calibration method for activation ranges")
    p.add_argument("--ops", default=",".join(DEFAULT_OPS),
                   help="comma-separated operator types to quantise (Conv, MatMul, ...)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    p.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights: avoids int16 saturation on x86 CPUs without VNNI, costs precision")
    p.add_argument("--calibration-count", type=int, default=2000,
                   help="training images used for calibration (a seeded random sample)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--check", action="store_true",
                   help="compare with fp32 on training images the calibration did not use")
    p.add_argument("--check-count", type=int, default=10000)
    p.add_argument("--out", type=Path, help="output file (default: <folder>/model.int8.onnx)")
    p.add_argument("--no-card", action="store_true", help="do not write the card's int8 entry")
    args = p.parse_args(argv)
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    if not args.ops:
        raise SystemExit("--ops: name at least one operator type")
    if args.calibration_count < 1:
        raise SystemExit("--calibration-count must be at least 1")
    return args


def gate_input(folder: Path):
    """The dataset and the preprocessing of the folder's model: (dataset, input name,
    function from [N, 28, 28, 1] floats in [0, 1] to the model's input)."""
    toml = folder / "gate.toml"
    if not toml.exists():
        # The trainer's folders: MNIST, pixels / 255, NHWC [N, 28, 28, 1].
        return "mnist", "pixels", lambda x: x
    with open(toml, "rb") as f:
        gate = tomllib.load(f)
    dataset = gate.get("reference", {}).get("dataset")
    if dataset not in data.DATASETS:
        raise SystemExit(f"{toml}: reference.dataset must be one of {', '.join(data.DATASETS)} "
                         f"for calibration from training images, got {dataset!r}")
    inp = gate.get("input", {})
    height, width = inp.get("height", 28), inp.get("width", 28)
    if (height, width) != (28, 28) or inp.get("colour", "gray") != "gray":
        raise SystemExit(f"{toml}: calibration reads 28x28 gray images; the input is "
                         f"{height}x{width} {inp.get('colour')}")
    scale = float(inp.get("scale", 255.0))
    mean = float((inp.get("mean") or [0.0])[0])
    std = float((inp.get("std") or [1.0])[0])
    layout = inp.get("layout", "NHWC")

    def prepare(x):
        # x is pixel / 255; the service computes (pixel / scale - mean) / std.
        v = (x * (255.0 / scale) - mean) / std
        return np.transpose(v, (0, 3, 1, 2)) if layout == "NCHW" else v

    return dataset, inp.get("name", "pixels"), prepare


class Reader(q.CalibrationDataReader):
    def __init__(self, name: str, images: np.ndarray, batch: int = 100):
        self.batches = iter([{name: images[i:i + batch]} for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self.batches, None)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quantize(args, fp32: Path, out: Path, input_name: str, calibration: np.ndarray):
    with tempfile.TemporaryDirectory() as tmp:
        # Shape inference and graph cleanup first, as ONNX Runtime recommends for static
        # quantisation (without it some tensors have no known type to quantise). The
        # symbolic pass needs sympy, which the venv does not have; the graphs' shapes are
        # static past the batch dimension, so ONNX's own inference suffices.
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        q.quantize_static(
            str(pre),
            str(out),
            Reader(input_name, calibration),
            quant_format=FORMATS[args.format],
            op_types_to_quantize=args.ops,
            per_channel=not args.per_tensor,
            reduce_range=args.reduce_range,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=METHODS[args.method],
        )
    onnx.checker.check_model(str(out))


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, name: str, x: np.ndarray, batch: int = 256):
    outs = [sess.run(["embedding", "probabilities"], {name: x[i:i + batch]}) for i in range(0, len(x), batch)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def images_per_second(sess: ort.InferenceSession, name: str, x: np.ndarray, batch: int = 256) -> float:
    chunk = x[:batch]
    sess.run(None, {name: chunk})
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        sess.run(None, {name: chunk})
        runs += 1
    return runs * len(chunk) / (time.perf_counter() - start)


def check(fp32: Path, int8: Path, name: str, x: np.ndarray, y: np.ndarray) -> dict:
    a, b = session(fp32), session(int8)
    ea, pa = run(a, name, x)
    eb, pb = run(b, name, x)
    cos = np.sum(ea * eb, axis=1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1))
    ka, kb = pa.argmax(1), pb.argmax(1)
    return {
        "images": int(len(x)),
        "fp32_accuracy": float(np.mean(ka == y)),
        "int8_accuracy": float(np.mean(kb == y)),
        "same_class": float(np.mean(ka == kb)),
        "embedding_cosine_mean": float(cos.mean()),
        "embedding_cosine_min": float(cos.min()),
        "fp32_images_per_second": images_per_second(a, name, x),
        "int8_images_per_second": images_per_second(b, name, x),
    }


def main(argv=None):
    args = parse_args(argv)
    folder = args.folder
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        raise SystemExit(f"{fp32}: no such file")
    out = args.out or folder / "model.int8.onnx"
    dataset, input_name, prepare = gate_input(folder)

    x, y, checksums = data.load(dataset, "train")
    order = np.random.default_rng(args.seed).permutation(len(x))
    if args.calibration_count > len(x):
        raise SystemExit(f"--calibration-count {args.calibration_count}: the training set has {len(x)} images")
    chosen = order[:args.calibration_count]
    calibration = prepare(x[chosen])
    quantize(args, fp32, out, input_name, calibration)

    settings = {
        "file": out.name,
        "tool": f"onnxruntime.quantization.quantize_static (onnxruntime {ort.__version__})",
        "format": args.format,
        "calibration_method": args.method,
        "ops_quantized": args.ops,
        "per_channel": not args.per_tensor,
        "reduce_range": args.reduce_range,
        "activation_type": "uint8",
        "weight_type": "int8",
        "calibration": {
            "dataset": dataset,
            "split": "train",
            "count": int(len(chosen)),
            "sample": f"numpy default_rng({args.seed}).permutation, first {len(chosen)}",
            "data_sha256": checksums,
        },
        "fp32_sha256": sha256(fp32),
        "sha256": sha256(out),
    }
    print(json.dumps(settings, indent=2))
    if args.check:
        rest = order[args.calibration_count:args.calibration_count + args.check_count]
        print(json.dumps({"check_on_unused_training_images": check(fp32, out, input_name, prepare(x[rest]), y[rest])},
                         indent=2))
    card = folder / "card.json"
    if not args.no_card and args.out is None:
        if card.exists():
            body = json.loads(card.read_text())
        elif (folder / "gate.toml").exists():
            body = {}
        else:
            raise SystemExit(f"{card}: missing")
        body["int8"] = settings
        card.write_text(json.dumps(body, indent=2) + "\n")
        print(f"wrote {out} and the int8 entry of {card}")
    else:
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
