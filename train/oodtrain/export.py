"""Export to ONNX under the model contract and check ONNX Runtime agrees with Keras."""

import os
from pathlib import Path

import numpy as np

INPUT_NAME = "pixels"
OUTPUT_NAMES = ("embedding", "probabilities")


def _rename(graph, old: str, new: str):
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def export_onnx(export_model, path: Path):
    """Writes the model with one input `pixels` and outputs `embedding`, `probabilities`.

    Keras names the ONNX outputs after internal tensors (`Identity:0`, ...), so they
    are renamed to the contract's names here.
    """
    import onnx

    path = Path(path)
    tmp = path.with_suffix(".keras-export.onnx")
    # The export needs a model that has been called at least once.
    export_model.predict(np.zeros((2, *export_model.input_shape[1:]), np.float32), verbose=0)
    export_model.export(str(tmp), format="onnx", verbose=False)
    proto = onnx.load(str(tmp))
    os.remove(tmp)
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 2:
        raise SystemExit(f"unexpected exported graph: {len(graph.input)} inputs, {len(graph.output)} outputs")
    _rename(graph, graph.input[0].name, INPUT_NAME)
    for out, name in zip(list(graph.output), OUTPUT_NAMES):
        _rename(graph, out.name, name)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def check_agreement(export_model, path: Path, x: np.ndarray, tolerance: float = 1e-4) -> float:
    """Max abs difference between Keras and ONNX Runtime on a batch; fails above tolerance."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    if tuple(names) != OUTPUT_NAMES:
        raise SystemExit(f"{path}: outputs {names}, expected {list(OUTPUT_NAMES)}")
    onnx_out = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.astype(np.float32)})
    keras_out = export_model.predict(x, verbose=0, batch_size=256)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(onnx_out, keras_out))
    if not diff < tolerance:
        raise SystemExit(f"ONNX Runtime and Keras disagree: max abs difference {diff:.3g} >= {tolerance}")
    return diff
