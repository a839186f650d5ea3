"""train/quantize.py on a copy of the Fashion-MNIST gate folder (gate.toml path): the int8
file, the card's entry, and embeddings close to the fp32 model's.

Needs the Fashion-MNIST files (OODGATE_DATA_DIR or the data step's cache); fails loudly without them.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train"))

import quantize  # noqa: E402
from oodtrain import data  # noqa: E402


def test_quantize_writes_the_int8_model_and_its_card_entry(tmp_path):
    folder = tmp_path / "fashion"
    shutil.copytree(ROOT / "models/fashion-cosface", folder)
    (folder / "model.int8.onnx").unlink(missing_ok=True)
    quantize.main([str(folder), "--calibration-count", "100"])

    card = json.loads((folder / "card.json").read_text())
    entry = card["int8"]
    fp32_sha = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    assert entry["fp32_sha256"] == fp32_sha
    assert entry["sha256"] == hashlib.sha256((folder / "model.int8.onnx").read_bytes()).hexdigest()
    assert entry["calibration"]["dataset"] == "fashion-mnist" and entry["calibration"]["count"] == 100
    assert entry["calibration"]["split"] == "train"
    # The card's other keys are kept.
    assert card["name"] == "fashion-cosface"

    x, _, _ = data.load("fashion-mnist", "train")
    batch = x[-64:]
    outs = [ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"])
            .run(["embedding"], {"pixels": batch})[0] for f in ("model.onnx", "model.int8.onnx")]
    a, b = outs
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.99, cos.min()
    assert not np.array_equal(a, b)


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="model.onnx: no such file"):
        quantize.main([str(tmp_path)])
