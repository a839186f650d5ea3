"""Training smoke test: one short epoch on a small subset, export, agreement check.

Needs the MNIST files (OODGATE_DATA_DIR or the data step's cache); fails loudly without them.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402
from oodtrain import data, export, recipes, synthetic  # noqa: E402


def test_one_short_epoch_exports_a_model_that_onnx_runtime_agrees_with(tmp_path):
    out = tmp_path / "model"
    card = train.main(["--recipe", "seed", "--subset", "1024", "--epochs", "1", "--out", str(out)])

    assert (out / "model.onnx").exists()
    assert json.loads((out / "classes.json").read_text()) == [str(d) for d in range(10)]
    written = json.loads((out / "card.json").read_text())
    assert written["recipe"]["name"] == "seed" and written["training_images"] == 1024
    assert written["onnx_keras_max_abs_diff"] < 1e-4
    assert 0.0 <= card["test_accuracy"] <= 1.0

    # The model contract: one float32 NHWC input with a dynamic batch, two named outputs.
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == export.INPUT_NAME and inp.shape[1:] == [28, 28, 1]
    assert [o.name for o in session.get_outputs()] == list(export.OUTPUT_NAMES)
    x, _, _ = data.mnist("test")
    emb, prob = session.run(None, {inp.name: x[:33]})
    assert emb.shape == (33, 64) and prob.shape == (33, 10)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)
    # L2 constraint: every embedding lies on the sphere of radius alpha.
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 16.0, rtol=1e-4)


def test_unknown_recipe_is_a_clear_error():
    from oodtrain import recipes

    try:
        recipes.lookup("nope")
    except SystemExit as e:
        assert "unknown recipe 'nope'" in str(e) and "seed" in str(e)
    else:
        raise AssertionError("expected SystemExit")

    assert recipes.lookup("seed-plain").l2 is False


# The issue-5 recipes train with oodtrain.loop (margin heads, outlier exposure); one
# tiny epoch each, with the held-out block the selection script relies on.
@pytest.mark.parametrize("name", sorted(n for n, r in recipes.RECIPES.items() if r.custom_loop()))
def test_custom_loop_recipe_trains_and_exports(tmp_path, name):
    out = tmp_path / name
    card = train.main(["--recipe", name, "--subset", "512", "--epochs", "1", "--holdout", "5000",
                       "--out", str(out)])
    recipe = recipes.lookup(name)
    assert card["recipe"]["name"] == name and card["training_images"] == 512
    assert card["holdout_images"] == 5000 and card["onnx_keras_max_abs_diff"] < 1e-4
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(export.OUTPUT_NAMES)
    x, _, _ = data.mnist("test")
    emb, prob = session.run(None, {export.INPUT_NAME: x[:17]})
    assert emb.shape == (17, recipe.embedding_dim) and prob.shape == (17, 10)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)
    if recipe.l2:
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), recipe.alpha, rtol=1e-4)


def test_synthetic_outlier_families_are_disjoint_and_well_formed():
    x, y, _ = data.mnist("test")
    rng = np.random.default_rng(0)
    assert not set(synthetic.TRAIN_TYPES) & set(synthetic.HELDOUT_TYPES)
    for fn in list(synthetic.TRAIN_TYPES.values()) + list(synthetic.HELDOUT_TYPES.values()):
        out = fn(rng, 5, x[:100], y[:100])
        assert out.shape == (5, 28, 28, 1) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
