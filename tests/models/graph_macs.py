"""An independent MACs count: walk a traced TensorFlow graph and count the
multiply-adds of every convolution and matrix product from the tensors' real
shapes. Shares no code with `tsnet_keras.accounting`.
"""

import numpy as np
import tensorflow as tf


def _shape(tensor):
    return [int(d) for d in tensor.shape]


def graph_macs(model, inputs) -> int:
    """MACs of one forward pass of `model` on `inputs` (batch 1), from its TF graph."""
    function = tf.function(lambda x: model(x, training=False))
    graph = function.get_concrete_function(inputs).graph
    total = 0
    for op in graph.get_operations():
        kind = op.type
        if kind in ("Conv2D", "Conv3D"):
            out = np.prod(_shape(op.outputs[0]))
            kernel = _shape(op.inputs[1])
            total += out * int(np.prod(kernel[:-1]))
        elif kind == "DepthwiseConv2dNative":
            out = np.prod(_shape(op.outputs[0]))
            kernel = _shape(op.inputs[1])
            total += out * kernel[0] * kernel[1]
        elif kind in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "BatchMatMul"):
            out = np.prod(_shape(op.outputs[0]))
            a = _shape(op.inputs[0])
            transpose = op.get_attr("transpose_a") if kind == "MatMul" else op.get_attr("adj_x")
            reduce = a[-2] if transpose else a[-1]
            total += out * reduce
        elif kind == "Einsum":
            raise NotImplementedError("graph_macs: Einsum is not counted; use matmul in layers.")
    return int(total)
