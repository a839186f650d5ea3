"""A tiny ONNX model whose `embedding` output is not [N, D]: the bad-input tests' fixture.

    make_4d_embedding_model.py OUT.onnx

Input `pixels` float [N, 28, 28, 1] (the digits models' input); outputs `embedding`,
the pixels passed through a Relu and so 4-D [N, 28, 28, 1], and `probabilities`
[N, 10], a softmax over a fixed linear map of the flattened pixels. It runs, and
everything about it is as a gate expects except the embedding's rank.
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build() -> onnx.ModelProto:
    weights = np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32)
    nodes = [
        helper.make_node("Relu", ["pixels"], ["embedding"]),
        helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "embedding_4d",
        inputs=[helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 28, 28, 1])],
        outputs=[
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 28, 28, 1]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10]),
        ],
        initializer=[
            numpy_helper.from_array(np.array([-1, 784], np.int64), "flat_shape"),
            numpy_helper.from_array(weights, "weights"),
        ],
    )
    # An opset and IR version every ONNX Runtime of the last years reads.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    onnx.save(build(), sys.argv[1])


if __name__ == "__main__":
    main()
