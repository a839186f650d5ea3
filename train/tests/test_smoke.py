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



def test_fashion_mnist_switch_trains_on_garments_and_writes_their_card(tmp_path):
    out = tmp_path / "fashion"
    card = train.main(["--dataset", "fashion-mnist", "--recipe", "fashion-cosface", "--subset", "256",
                       "--epochs", "1", "--out", str(out)])
    assert card["dataset"] == "fashion-mnist" and card["accuracy_target"] == 0.93
    assert card["recipe"]["flip"] is True
    assert all(k.startswith("fashion-mnist/") for k in card["data_sha256"])
    assert json.loads((out / "classes.json").read_text())[0] == "T-shirt/top"
    # The two datasets' images differ: the switch really reads another folder.
    x_fashion, y_fashion, _ = data.load("fashion-mnist", "test")
    x_mnist, _, _ = data.mnist("test")
    assert x_fashion.shape == x_mnist.shape == (10000, 28, 28, 1) and set(y_fashion) == set(range(10))
    assert not np.array_equal(x_fashion[:10], x_mnist[:10])
    with pytest.raises(SystemExit, match="unknown dataset 'cifar'"):
        data.load("cifar", "test")

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


def _latin_letter_glyphs():
    """Every Latin letter of the Hershey Latin fonts, as stroke tuples."""
    from oodtrain import strokes

    shapes = set()
    for font in ("futural", "futuram", "rowmans", "rowmand", "rowmant", "timesr", "timesrb", "timesi",
                 "scripts"):
        g = strokes.hershey(font)
        for c in [chr(i) for i in range(ord("A"), ord("Z") + 1)] + [chr(i) for i in range(ord("a"), ord("z") + 1)]:
            shapes.add(tuple(tuple(map(tuple, s.tolist())) for s in g[ord(c) - 32]))
    return shapes


def test_training_glyphs_are_no_latin_letters():
    from oodtrain import glyphs

    latin = _latin_letter_glyphs()
    assert len(latin) > 250
    pool = glyphs._pool(glyphs.TRAIN_GLYPHS) + glyphs._pool(glyphs.HELDOUT_GLYPHS)
    assert len(pool) > 200
    same = [i for i, g in enumerate(pool) if tuple(tuple(map(tuple, s.tolist())) for s in g) in latin]
    assert not same, f"training glyphs identical to a Latin letter: {same}"


@pytest.mark.parametrize("kind", ["glyphs", "doodles", "scribbles", "heldout", "digits"])
def test_stroke_outliers_are_rendered_like_mnist(kind):
    """MNIST's own normalisation: ink in a 20x20 box, centre of mass at the centre."""
    from oodtrain import glyphs

    rng = np.random.default_rng(0)
    if kind == "digits":
        x, labels = glyphs.digit_glyphs(rng, 40)
        assert set(labels.tolist()) <= set(range(10))
    elif kind == "heldout":
        x = glyphs.heldout_glyphs(rng, 40)
    else:
        x = glyphs.NEAR_TYPES[kind](rng, 40)
    assert x.shape[0] == 40
    _assert_mnist_style(x)


def _assert_mnist_style(x):
    """MNIST's own normalisation: ink in a 20x20 box, centre of mass at the centre."""
    assert x.dtype == np.float32 and x.shape[1:] == (28, 28, 1)
    assert 0.0 <= x.min() and x.max() <= 1.0
    yy, xx = np.mgrid[0:28, 0:28] + 0.5
    for im in x[..., 0]:
        ink = im > 0.05
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 22
        mass = im.sum()
        cy, cx = (yy * im).sum() / mass, (xx * im).sum() / mass
        assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0


def test_font_digits_are_rendered_like_mnist():
    from oodtrain import fonts

    x, labels = fonts.font_digits(np.random.default_rng(0), 60)
    assert x.shape == (60, 28, 28, 1) and labels.shape == (60,)
    assert set(labels.tolist()) <= set(range(10))
    _assert_mnist_style(x)
    # Every font has ten distinct digit glyphs (no missing-glyph boxes), each with ink,
    # with the longer side of the 50 % ink box at 20 px.
    for face in fonts.load():
        digits = np.stack([fonts.mnist_style(fonts.glyph(face, d)) for d in range(10)])[..., None]
        _assert_mnist_style(digits)
        flat = (digits.reshape(10, -1) > 0.5)
        assert len({row.tobytes() for row in flat}) == 10
        for im in digits[..., 0]:
            ink = im >= 0.5
            rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
            assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20, 21)


def _evaluation_fonts():
    """Font file paths and Debian packages of the Rust typed-digits evaluation set."""
    import re

    text = (Path(__file__).resolve().parents[2] / "datasets/src/synth/fonts.rs").read_text()
    paths = re.findall(r'"(/usr/share/[^"]+)"', text)
    packages = set(re.findall(r'"((?:fonts|hershey)-[a-z0-9-]+)"', text))
    return paths, packages


def test_training_fonts_are_disjoint_from_the_evaluation_fonts():
    from oodtrain import fonts, recipes

    eval_paths, eval_packages = _evaluation_fonts()
    assert len(eval_paths) >= 20 and "fonts-dejavu-core" in eval_packages
    train_paths = [path for _, path in fonts.TRAIN_FONTS]
    assert 20 <= len(train_paths) == len(set(train_paths)) <= 30
    assert not {Path(p).name.lower() for p in train_paths} & {Path(p).name.lower() for p in eval_paths}
    assert not set(fonts.TRAIN_FONT_PACKAGES) & eval_packages
    # Same family under another file name would slip past the file-name check.
    families = {Path(p).stem.split("-")[0].split("_")[0].lower() for p in eval_paths}
    assert not {Path(p).stem.split("-")[0].split("_")[0].lower() for p in train_paths} & families
    # scripts/setup.sh test installs every package the table names.
    setup = (Path(__file__).resolve().parents[2] / "scripts/setup.sh").read_text()
    assert all(f" {package}" in setup for package in fonts.TRAIN_FONT_PACKAGES)
    assert f"{len(train_paths)} files" in recipes.lookup("cosface-oe-near-fonts").description


def test_a_missing_training_font_is_a_clear_error():
    from oodtrain import fonts

    try:
        fonts.load((("fonts-nope", "/usr/share/fonts/truetype/nope/Nope-Regular.ttf"),))
    except SystemExit as e:
        assert "Nope-Regular.ttf" in str(e) and "apt-get install fonts-nope" in str(e)
    else:
        raise AssertionError("expected SystemExit")
