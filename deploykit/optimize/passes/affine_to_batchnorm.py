"""A per-channel ``Mul`` + ``Add`` that no Conv absorbed becomes one inference BatchNormalization.

Old converters spell every BatchNorm as ``x * s + t``; where nothing before it can take it in
(DenseNet's BN-ReLU-Conv after a Concat) the pair is two element-wise passes over the tensor,
while ONNX Runtime's CPU provider runs BatchNormalization (mean 0, variance 1, epsilon 0, so the
same ``x * s + t``) as one, fused with the ReLU after it. The inverse of ``batchnorm_to_affine``.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from deploykit.optimize.passes._base import (
    GraphPass,
    add_initializer,
    const_array,
    is_op,
    node_label,
    per_channel,
    replace_value,
    single_consumer,
)


class AffineToBatchNormPass(GraphPass):
    """``Add(Mul(x, s), t)`` with per-channel constants over an [N, C, H, W] tensor -> BatchNormalization."""

    name = "affine_to_batchnorm"
    description = "per-channel Mul+Add that no Conv absorbed -> one BatchNormalization (ORT fuses it)"

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        for mul in list(graph):
            if mul.graph is None or not is_op(mul, "Mul") or len(mul.inputs) != 2:
                continue
            self._rewrite(graph, mul)

    def _rewrite(self, graph: ir.Graph, mul: ir.Node) -> None:
        a, b = mul.inputs
        x, s_val = (a, b) if const_array(b) is not None else (b, a)
        s = const_array(s_val)
        add = single_consumer(mul.outputs[0])
        if s is None or x is None or add is None or not is_op(add, "Add") or len(add.inputs) != 2:
            return
        t_val = add.inputs[1] if add.inputs[0] is mul.outputs[0] else add.inputs[0]
        t = const_array(t_val)
        dims = list(x.shape) if x.shape is not None else None
        if t is None or dims is None or len(dims) != 4 or not isinstance(dims[1], int) or x.dtype is None:
            return
        if s.dtype != np.float32 or t.dtype != np.float32 or x.dtype != ir.DataType.FLOAT:
            return
        if add.outputs[0].shape is not None and list(add.outputs[0].shape)[1:] != dims[1:]:
            return
        c = dims[1]
        scale, shift = per_channel(s, 4, c), per_channel(t, 4, c)
        if scale is None or shift is None:
            return
        base = mul.name or "affine"
        params = [
            add_initializer(graph, f"{base}_bn_scale", scale.astype(np.float32)),
            add_initializer(graph, f"{base}_bn_shift", shift.astype(np.float32)),
            add_initializer(graph, f"{base}_bn_mean", np.zeros(c, np.float32)),
            add_initializer(graph, f"{base}_bn_var", np.ones(c, np.float32)),
        ]
        bn = ir.node("BatchNormalization", [x, *params], {"epsilon": 0.0}, name=f"{base}_bn")
        bn.outputs[0].type, bn.outputs[0].shape = add.outputs[0].type, add.outputs[0].shape
        graph.insert_before(mul, bn)
        replace_value(add.outputs[0], bn.outputs[0])
        graph.remove([add, mul], safe=True)
        self.log(f"{node_label(mul)} + {node_label(add)} -> BatchNormalization")
