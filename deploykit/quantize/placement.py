"""Q/DQ placement: where quantise/dequantise pairs go, per deployment target.

Three profiles:

``tensorrt``
    Symmetric signed INT8, Q/DQ placed where TensorRT fuses it, following the TensorRT developer
    guide ("Working with Quantized Types" > "Explicit Quantization" > "Q/DQ Layer-Placement
    Recommendations", https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/
    work-quantized-types.html) and the layout NVIDIA's Model Optimizer produces for it:

    ====  ===========================================  ==========================================
    rule  placement                                    why
    ====  ===========================================  ==========================================
    T1    Q/DQ on the activation input and the weight  The guide: quantise all inputs of weighted
          (per output channel, FP32 behind Q/DQ) of    ops; TensorRT folds Q(weight) into an INT8
          every Conv/Gemm/MatMul; none on their        weight and picks the INT8 kernel. Outputs
          outputs, none on biases.                     stay unquantised by default: TensorRT fuses
                                                       the conv with what follows (bias, ReLU,
                                                       Add) and only a Q further on decides
                                                       whether the fused kernel writes INT8.
    T2    a residual Add quantises its identity input  The guide's residual fusion: Conv + Add
          only; the input a Conv writes for the Add    (+ReLU) is one kernel that adds the DQ'd
          alone gets no Q/DQ (both conv-written:       identity in its epilogue. A Q/DQ pair on
          the main branch, farther from the common     the conv branch makes that conv write INT8
          ancestor, is the fused one; Model Optimizer  and breaks the fusion (an extra kernel and
          decides it the same way).                    a rounding). ``residual_branch``.
    T3    a Concat's inputs are quantised, at one      TensorRT eliminates a Concat whose inputs
          scale shared with its output, only where     and output share one scale: each producer
          every reader reads it in INT8 (weighted      writes INT8 straight into its slice. Where
          layers, directly or through pooling or       a reader runs in float (DenseNet's Concat
          shape-only ops).                             -> BatchNorm -> ReLU, or a layer kept in
                                                       FP32 by the fallback) the pairs would only
                                                       add reformats and roundings; the INT8
                                                       readers then quantise the output (T1).
    T4    pooling and shape-only ops share their       TensorRT moves Q backward and DQ forward
          input's scale when that input carries INT8   across commuting ops (MaxPool, Concat,
          anyway, and never get a pair of their own    reshapes) and fuses DQ -> AveragePool -> Q
          on their input. GlobalAveragePool keeps      into an INT8 pool; one shared scale means
          its own output scale.                        no requantisation. A Relu -> MaxPool ->
                                                       Conv needs one pair, at the conv's input.
                                                       Channel means span a fraction of the
                                                       input's range: the classifier's input
                                                       would lose most of its levels.
    T5    no pair that only adds a reformat: a         Requantising values already on the shared
          Concat of dequantised inputs read only by    grid changes nothing but costs a kernel
          another Concat (Inception-v3's splits)       and a Q node.
          gets none.
    T6    kept layers (``keep``) get no Q/DQ on        The accuracy fallback: those layers run in
          their inputs or weights.                     the high precision.
    ====  ===========================================  ==========================================

    Scales: one symmetric scale per group of tensors that share it, from the group's largest
    calibrated threshold.

``onnxruntime``
    Activations asymmetric uint8, weights symmetric int8 per channel stored as int8 initializers,
    Conv/Gemm biases int32: the QDQ layout ONNX Runtime's CPU provider fuses into QLinearConv,
    QLinearAdd, QLinearConcat, QLinearGlobalAveragePool and QGemm (VNNI kernels). Inputs and outputs
    of every quantisable op are quantised; a Relu right after a Conv/Add/Gemm is absorbed by
    quantising its output instead (zero point 0 clips like the Relu), and the Relu leaves the file: ORT
    drops it when fusing anyway, OpenVINO would keep it as an extra post-op in every conv.
    MaxPool/Flatten share the input scale so ORT runs them on uint8 directly. A Concat input that
    a Conv/Gemm/Add (or its absorbed Relu) or a nested Concat writes for the Concat alone is
    quantised straight at the Concat output's scale: the producer requantises for free, and QLinearConcat then copies
    that input instead of requantising it through a lookup table (one rounding instead of two).
    A graph input with a channel count that is not a multiple of 4 (RGB: 3) is zero-padded to one
    in FP32 before its QuantizeLinear, and the stem conv's weights get matching zero channels: the
    VNNI kernels take 4 bytes per multiply-add, and a 3-channel stem runs at 40% of the efficiency
    of the other convs (resnet50 224x224, batch 1: 0.78 against 0.60 ms). Outputs are unchanged.

``openvino``
    The pairs sit where the ``tensorrt`` rules put them (T1, T3-T6: OpenVINO's CPU plugin fuses the
    same patterns, a Concat whose inputs share one scale is a copy) with three changes, all NNCF's
    placement for OpenVINO: O2, a residual Add quantises both inputs (the sum still fuses into the
    conv, and the identity is read as uint8 instead of a float copy); O3, every Concat's inputs
    share one scale with its output, also where a float op reads it (DenseNet's BatchNorm then
    reads INT8); O4, a pool read in INT8 takes a pair on its input (a MaxPool instead of the one
    on its output; the classifier's GlobalAveragePool beside the one behind it), so it runs in
    INT8 and the conv before it writes INT8. Activations are symmetric at zero
    point 0, uint8 over [0, amax] where the tensor (every member of its scale group) is
    non-negative in calibration, int8 over [-amax, amax] where it is not: the types NNCF gives
    OpenVINO, with no zero-point compensation in the INT8 kernels. Weights are int8 initializers
    per output channel (the CPU layout below), biases stay float, no channel padding, redundant
    Relus dropped. Measured on Zen 4 (2 cores, 224x224, batch 1, static compiles): the onnxruntime
    profile's per-input Concat scales make OpenVINO requantise every DenseNet-121 feature map in
    every dense layer (13.3 ms against NNCF's 11.5 ms). This profile runs level with NNCF on
    ResNet-50, GoogLeNet and Inception-v3, ahead on ResNeXt-50, behind on DenseNet-121 with the
    block ranges overlapping (benchmarks/cpu).

Two weight layouts for the CPU profiles, ``onnxruntime`` and ``openvino`` (``ORT_LAYOUTS``),
chosen from the CPU:

``vnni``
    int8 weights over the full range [-127, 127]: CPUs with VNNI (AVX-512 VNNI, AVX-VNNI, AMX)
    multiply uint8 x int8 and add into 32 bits in one instruction, exactly.
``avx2``
    int8 weights in the reduced range [-64, 64] (7 bits). Without VNNI, ONNX Runtime's U8S8 kernels
    multiply through ``vpmaddubsw``, which adds two uint8 x int8 products into a saturating int16:
    255 x 127 x 2 overflows it, 255 x 64 x 2 = 32640 does not. With full-range weights the result
    depends on how the channels happen to pair up (zero-padding the stem changes it) and errors
    reach tenths of a logit; ONNX Runtime's documentation recommends reduced-range weights there.

Layers listed as kept (node-name globs, or ``first``/``last`` for the first/last weighted layer)
get no Q/DQ: their inputs are read in FP32 and their weights stay FP32.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError
from deploykit.quantize.calibrators import UINT8_MAX, asymmetric_params, quantize_weight, symmetric_scale

PROFILES = ("tensorrt", "onnxruntime", "openvino")
CPU_PROFILES = ("onnxruntime", "openvino")  # profiles with a CPU weight layout (ORT_LAYOUTS)
ORT_LAYOUTS = {"vnni": 127, "avx2": 64}  # onnxruntime weight layout -> largest int8 weight magnitude
WEIGHTED = ("Conv", "Gemm", "MatMul")
POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool")
SHAPE_ONLY = ("Flatten", "Reshape", "Squeeze", "Unsqueeze")
INT32_MAX = 2**31 - 1
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (axis) needs opset 13


@dataclass
class Layer:
    """A weighted node that can be quantised: its name, op, activation input, weight and output."""

    name: str
    op: str
    input: str
    weight: str
    weight_axis: int
    output: str
    bias: str | None = None


@dataclass
class QuantPlan:
    """Which tensors get Q/DQ, which consumers read the dequantised copy, and shared-scale groups."""

    profile: str
    layers: list[Layer]  # quantised weighted layers
    kept: list[str]  # node names left in FP32
    edges: dict[str, set[tuple[str, int]]]  # tensor -> {(consumer node, input index)} reading DQ
    groups: dict[str, str]  # tensor -> group root (same root = same scale)
    weight_qdq: dict[str, tuple[str, int]] = field(default_factory=dict)  # weight init -> (node, axis)
    anchors: set[str] = field(default_factory=set)  # a group holding one takes its scale from it alone
    channel_pad: dict[str, int] = field(default_factory=dict)  # graph input -> channels it is padded to
    layout: str | None = None  # onnxruntime weight layout (ORT_LAYOUTS); None for tensorrt

    @property
    def weight_max(self) -> int:
        """Largest int8 weight magnitude: 127, or 64 where the CPU's kernels would saturate."""
        return ORT_LAYOUTS.get(self.layout or "vnni", 127)

    @property
    def activations(self) -> list[str]:
        """Tensors that get a Q/DQ pair."""
        return list(self.edges)

    @property
    def stat_tensors(self) -> list[str]:
        """Every tensor whose statistics decide a scale (group members included)."""
        roots = {self.groups[t] for t in self.edges}
        return sorted({t for t, r in self.groups.items() if r in roots} | set(self.edges))

    def members(self, tensor: str) -> list[str]:
        root = self.groups.get(tensor, tensor)
        return [t for t, r in self.groups.items() if r == root] or [tensor]

    def summary(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "quantized_layers": len(self.layers),
            "kept_fp32": list(self.kept),
            "qdq_activations": len(self.edges),
            "scale_groups": len({self.groups[t] for t in self.edges}),
            "layout": self.layout,
            "weight_range": [-self.weight_max, self.weight_max],
        }


# ------------------------------------------------------------------------------------ graph view


# Ops whose outputs differ between runs although their inputs are constants.
_RANDOM_OPS = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli")


class _Graph:
    """Read-only index of an ONNX graph: producers, consumers, constants."""

    def __init__(self, model) -> None:
        g = model.graph
        self.model = model
        self.nodes = list(g.node)
        self.by_name = {n.name: n for n in self.nodes}
        self.inits = {i.name: i for i in g.initializer}
        self.consts = set(self.inits)
        for n in self.nodes:  # topological order: constants propagate through ops of constants
            if n.op_type == "Constant" or (
                n.op_type not in _RANDOM_OPS and n.input and all(t in self.consts for t in n.input if t)
            ):
                self.consts.update(n.output)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
        for n in self.nodes:
            for i, t in enumerate(n.input):
                if t:
                    self.consumers[t].append((n, i))
        self.graph_outputs = {o.name for o in g.output}
        self.non_float = _non_float_tensors(model)

    def is_activation(self, t: str) -> bool:
        """A float tensor computed at run time: never a constant, nor an integer shape computation."""
        return bool(t) and t not in self.consts and t not in self.non_float

    def attr(self, node, name: str, default: Any) -> Any:
        import onnx

        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default


_FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _non_float_tensors(model) -> set[str]:
    """Tensors annotated with a type that is not floating point (Shape -> Gather -> Concat batch
    sizes in older exporters' heads): a QuantizeLinear on an int64 input would make an invalid
    graph. ``prepare_model`` records these types once, so building a plan infers nothing."""
    g = model.graph
    return {
        vi.name
        for vi in (*g.input, *g.output, *g.value_info)
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type not in (0, *_FLOAT_TYPES)
    }


def _record_integer_types(m) -> None:
    """Annotate the tensors type inference finds to be non-float, type only (no shape, which a
    later stage such as the input channel pad may change), so every plan of ``m`` can read them."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(m)
    except Exception:  # types are a refinement here; a graph inference cannot type keeps every tensor
        return
    known = {vi.name for vi in (*m.graph.input, *m.graph.output, *m.graph.value_info)}
    types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    for name in sorted(_non_float_tensors(inferred) - known):
        m.graph.value_info.append(onnx.helper.make_tensor_value_info(name, types[name], None))


def prepare_model(model):
    """Give every node a unique name and check the opset: placement addresses nodes by name."""
    import onnx

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        raise DeployKitError(
            f"model opset {opset} is too old for per-channel INT8 (needs >= {MIN_OPSET}); re-export it"
        )
    m = onnx.ModelProto()
    m.CopyFrom(model)
    # Older exporters (IR < 4) also list the weights as graph inputs; INT8 weights are constants,
    # so those inputs go (a quantised weight cannot be fed in FP32 at run time anyway).
    inits = {i.name for i in m.graph.initializer}
    kept_inputs = [i for i in m.graph.input if i.name not in inits]
    if len(kept_inputs) != len(m.graph.input):
        del m.graph.input[:]
        m.graph.input.extend(kept_inputs)
    _bypass_constant_identities(m)
    _record_integer_types(m)
    seen: set[str] = set()
    for i, n in enumerate(m.graph.node):
        name = n.name or f"{n.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        n.name = name
        seen.add(name)
    return m


def _bypass_constant_identities(m) -> None:
    """Read initializers directly instead of through Identity nodes (the TorchScript exporter
    routes shared biases that way), so weights and biases are recognised as constants."""
    inits = {i.name for i in m.graph.initializer}
    outputs = {o.name for o in m.graph.output}
    alias = {}
    keep = []
    for n in m.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs:
            alias[n.output[0]] = n.input[0]
        else:
            keep.append(n)
    if not alias:
        return
    for n in keep:
        for i, t in enumerate(n.input):
            if t in alias:
                n.input[i] = alias[t]
    del m.graph.node[:]
    m.graph.node.extend(keep)


def weighted_layers(model) -> list[Layer]:
    """Conv/Gemm/MatMul nodes whose weight is a constant initializer, in graph order."""
    g = _Graph(model)
    out = []
    for n in g.nodes:
        if n.op_type not in WEIGHTED or len(n.input) < 2:
            continue
        x, w = n.input[0], n.input[1]
        if w not in g.inits or not g.is_activation(x):
            continue
        ndim = len(g.inits[w].dims)
        if n.op_type == "Conv":
            axis = 0
        elif n.op_type == "Gemm":
            if g.attr(n, "transA", 0):
                continue
            axis = 0 if g.attr(n, "transB", 0) else 1
        else:
            if ndim != 2:
                continue
            axis = 1
        bias = n.input[2] if len(n.input) > 2 and n.input[2] in g.inits else None
        out.append(Layer(n.name, n.op_type, x, w, axis, n.output[0], bias))
    return out


def resolve_keep(model, patterns: Iterable[str]) -> list[str]:
    """Node names matching the keep patterns (globs, ``first``, ``last``); unknown globs are errors."""
    layers = weighted_layers(model)
    names = [n.name for n in model.graph.node]
    kept: list[str] = []
    for p in patterns:
        if p == "first" and layers:
            hits = [layers[0].name]
        elif p == "last" and layers:
            hits = [layers[-1].name]
        else:
            hits = [n for n in names if fnmatch.fnmatchcase(n, p)]
        if not hits:
            raise DeployKitError(f"keep_fp32 pattern '{p}' matches no node of the model")
        kept.extend(h for h in hits if h not in kept)
    return kept


# ---------------------------------------------------------------------------------------- plans


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def default_layout(cpu=None) -> str:
    """The onnxruntime weight layout this CPU computes exactly: ``vnni`` where it has VNNI, else
    ``avx2`` (reduced range, also the safe choice for an unknown CPU)."""
    from deploykit.machine import cpu_info

    return "vnni" if (cpu or cpu_info()).vnni else "avx2"


def check_layout(layout: str | None) -> str:
    """``layout`` validated, or this CPU's default when None."""
    if layout is None:
        return default_layout()
    if layout not in ORT_LAYOUTS:
        raise DeployKitError(f"INT8 layout '{layout}' is not one of {', '.join(ORT_LAYOUTS)}")
    return layout


def plan_placement(
    model, profile: str = "onnxruntime", keep: Iterable[str] = (), layout: str | None = None
) -> QuantPlan:
    """Decide the Q/DQ placement of ``profile`` on ``model`` (prepared), leaving ``keep`` in FP32.

    ``layout`` (onnxruntime only): ``vnni`` or ``avx2`` weights; None picks this CPU's.
    """
    if profile not in PROFILES:
        raise DeployKitError(f"profile '{profile}' is not one of {', '.join(PROFILES)}")
    layout = check_layout(layout) if profile in CPU_PROFILES else None
    g = _Graph(model)
    kept = set(keep)
    unknown = kept - set(g.by_name)
    if unknown:
        raise DeployKitError(f"layers to keep in FP32 not found in the model: {', '.join(sorted(unknown))}")
    layers = [lay for lay in weighted_layers(model) if lay.name not in kept]
    if profile in ("tensorrt", "openvino"):
        return _plan_tensorrt(g, kept, layers, profile, layout)
    edges: dict[str, set[tuple[str, int]]] = defaultdict(set)
    uf = _UnionFind()
    quantise_input = _input_quantiser(g, edges, uf)

    # weighted layers: activation input (the weight is handled separately)
    for lay in layers:
        quantise_input(g.by_name[lay.name], 0)

    for n in g.nodes:
        if n.name in kept:
            continue
        if _two_activation_add(g, n):
            quantise_input(n, 0)
            quantise_input(n, 1)
        elif n.op_type == "Concat":
            # ORT's QLinearConcat can requantise, so only inputs written for the Concat alone share
            # its scale (_ort_concat_sharing): DenseNet's feature maps feed every later layer of
            # their block, and one scale for all of them would mix ranges across the whole block
            for i, t in enumerate(n.input):
                if g.is_activation(t):
                    quantise_input(n, i)

    # ORT runs pooling on uint8 (QLinearAveragePool, QLinearGlobalAveragePool, MaxPool) only
    # with a DQ in front of it and a Q behind it
    for n in g.nodes:
        if n.name not in kept and n.op_type in POOLS and g.is_activation(n.input[0]):
            quantise_input(n, 0)
    _ort_outputs(g, kept, layers, edges, uf)
    anchors = _ort_concat_sharing(g, kept, layers, uf)
    channel_pad = _ort_input_channel_pad(g, layers, edges)

    # MaxPool / shape-only ops pass the quantised scale through: quantise their input with the
    # same scale whenever their output is quantised (fixed point: chains of them).
    passthrough = ("MaxPool",) + SHAPE_ONLY
    changed = True
    while changed:
        changed = False
        for n in g.nodes:
            if n.name in kept or n.op_type not in passthrough or not n.output:
                continue
            y, x = n.output[0], n.input[0]
            if y not in edges or not g.is_activation(x):
                continue
            if (n.name, 0) not in edges.get(x, set()):
                quantise_input(n, 0)
                changed = True
            if uf.find(x) != uf.find(y):
                uf.union(x, y)
                changed = True

    groups = {t: uf.find(t) for t in uf.parent}
    weight_qdq = {lay.weight: (lay.name, lay.weight_axis) for lay in layers}
    return QuantPlan(
        profile=profile,
        layers=layers,
        kept=sorted(kept),
        edges=dict(edges),
        groups=groups,
        weight_qdq=weight_qdq,
        anchors=anchors,
        channel_pad=channel_pad,
        layout=layout,
    )


def _ort_outputs(g: _Graph, kept: set[str], layers: list[Layer], edges, uf) -> None:
    """ONNX Runtime fuses DQ->op->Q: quantise each quantisable op's output (after a fused Relu)."""
    layer_nodes = {lay.name for lay in layers}
    ops = []
    for n in g.nodes:
        if n.name in kept:
            continue
        if n.name in layer_nodes or n.op_type in ("Concat",) + POOLS:
            ops.append(n)
        elif _two_activation_add(g, n):
            ops.append(n)
    for n in ops:
        y = n.output[0]
        cons = g.consumers.get(y, [])
        if (
            n.op_type in WEIGHTED + ("Add",)
            and len(cons) == 1
            and cons[0][0].op_type == "Relu"
            and cons[0][0].name not in kept
        ):
            y = cons[0][0].output[0]
            cons = g.consumers.get(y, [])
        if y in g.graph_outputs or not cons or not g.is_activation(y):
            continue  # the model's outputs stay FP32; integer (shape) tensors are never quantised
        for c, i in cons:
            if c.name not in kept:
                edges[y].add((c.name, i))
        uf.find(y)


def _ort_concat_sharing(g: _Graph, kept: set[str], layers: list[Layer], uf) -> set[str]:
    """Put each Concat input that a requantising op writes for that Concat alone into the
    Concat output's scale group; return the Concat outputs whose statistics set those scales.

    QLinearConv/QGemm/QLinearAdd write their output at any scale at no cost, so quantising such
    an input at the output's scale turns QLinearConcat's per-input lookup into a copy. An input
    read by anything else (DenseNet's feature maps feed every later layer) keeps its own scale.
    """
    requantising = {lay.name for lay in layers}

    def written_by_requantising_op(t: str) -> bool:
        p = g.producer.get(t)
        if p is None or p.name in kept:
            return False
        if p.op_type == "Relu":  # absorbed into the op before it when that op feeds it alone
            return len(g.consumers.get(p.input[0], [])) == 1 and written_by_requantising_op(p.input[0])
        if p.op_type == "Add":
            return len(p.input) == 2 and all(g.is_activation(x) for x in p.input)
        return p.name in requantising or p.op_type == "Concat"  # QLinearConcat writes any scale

    anchors: set[str] = set()
    for n in g.nodes:  # topological: a nested Concat is seen before the one reading it
        if n.op_type != "Concat" or n.name in kept or not n.output:
            continue
        y = n.output[0]
        for t in n.input:
            if g.is_activation(t) and len(g.consumers.get(t, [])) == 1 and written_by_requantising_op(t):
                uf.union(t, y)
                anchors.add(y)
                anchors.discard(t)  # a nested Concat (Inception-v3's 3x3 splits) takes the outer range
    return anchors


def _ort_input_channel_pad(g: _Graph, layers: list[Layer], edges) -> dict[str, int]:
    """Graph inputs read only by ungrouped 2-D convs, with a channel count that is not a multiple
    of 4: the channel count to zero-pad each to (the convs' weights get zero channels to match)."""
    by_name = {lay.name: lay for lay in layers}
    # only inputs declared 4-D: the Pad needs the rank, and NCHW puts channels on axis 1
    graph_inputs = {
        i.name
        for i in g.model.graph.input
        if i.type.tensor_type.HasField("shape") and len(i.type.tensor_type.shape.dim) == 4
    } - g.consts
    out: dict[str, int] = {}
    for t, cons in edges.items():
        if t not in graph_inputs or not cons:
            continue
        readers = [by_name.get(node) for node, idx in cons]
        if any(lay is None or lay.op != "Conv" or idx != 0 for lay, (_, idx) in zip(readers, cons)):
            continue
        if any(g.attr(g.by_name[lay.name], "group", 1) != 1 for lay in readers):
            continue
        dims = {tuple(g.inits[lay.weight].dims) for lay in readers}
        if any(len(d) != 4 for d in dims) or len({d[1] for d in dims}) != 1:
            continue
        channels = next(iter(dims))[1]
        if channels % 4:
            out[t] = channels + (-channels) % 4
    return out


# ---------------------------------------------------------------------------------------- apply


def group_params(plan: QuantPlan, stats: dict, thresholds: dict[str, float]) -> dict[str, tuple[float, int, bool]]:
    """(scale, zero point, signed) per quantised tensor; tensors of one group share identical values.

    tensorrt: int8, symmetric. onnxruntime: uint8 over the calibrated [min, max]. openvino:
    symmetric, uint8 (zero point 0, 255 levels over [0, amax]) where every member of the group is
    non-negative in calibration (after a Relu), int8 otherwise: the types NNCF gives OpenVINO.
    """
    by_root: dict[str, list[str]] = defaultdict(list)
    for t, r in plan.groups.items():
        by_root[r].append(t)
    out: dict[str, tuple[float, int]] = {}
    for t in plan.edges:
        members = [m for m in by_root[plan.groups[t]] if m in thresholds]
        if not members:
            raise DeployKitError(f"no calibration statistics for tensor '{t}'")
        if plan.profile == "tensorrt":
            amax = max(thresholds[m] for m in members)
            out[t] = (symmetric_scale(amax), 0, True)
        elif plan.profile == "openvino":
            amax = max(thresholds[m] for m in members)
            signed = any(stats[m].min < 0 for m in members)
            out[t] = (symmetric_scale(amax), 0, True) if signed else (amax / UINT8_MAX if amax > 0 else 1.0, 0, False)
        else:
            # a Concat output sets its group's range: its distribution is the mixture the inputs
            # are quantised for, so their own (narrower) ranges must not widen or clip it
            members = [m for m in members if m in plan.anchors] or members
            lo = min(max(stats[m].min, -thresholds[m]) for m in members)
            hi = max(min(stats[m].max, thresholds[m]) for m in members)
            out[t] = (*asymmetric_params(lo, hi), False)
    return out


def apply_plan(
    model,
    plan: QuantPlan,
    stats: dict,
    thresholds: dict[str, float],
    per_channel: bool = True,
    drop_relus: bool = True,
):
    """Build the QDQ model of ``plan`` with scales from ``thresholds`` (and min/max for asymmetric).

    ``drop_relus=False`` keeps the Relus a zero-point-0 Q makes redundant (same outputs, bit for
    bit): per-layer analysis reads the Relu outputs, which the deployed file no longer has.
    """
    import onnx
    from onnx import helper, numpy_helper

    g = _Graph(model)
    params = group_params(plan, stats, thresholds)
    fp32_weights = plan.profile == "tensorrt"  # FP32 weights behind Q/DQ, float biases: TensorRT folds them
    int32_bias = plan.profile == "onnxruntime"  # QLinearConv/QGemm take the bias as int32 at x*w scale
    new_inits: list = []
    pre_nodes: list = []  # weight DQs, emitted first
    rename: dict[tuple[str, int], str] = {}

    def const(name: str, arr: np.ndarray) -> str:
        new_inits.append(numpy_helper.from_array(arr, name))
        return name

    # weights
    drop_inits: set[str] = set()
    pad_extra: dict[str, int] = {}  # padded graph input -> zero channels added (the plan made it 4-D)
    for lay in plan.layers:
        w = numpy_helper.to_array(g.inits[lay.weight]).astype(np.float32)
        if lay.input in plan.channel_pad:  # zero input channels to match the padded input
            extra = pad_extra[lay.input] = plan.channel_pad[lay.input] - w.shape[1]
            w = np.concatenate([w, np.zeros((w.shape[0], extra, *w.shape[2:]), np.float32)], axis=1)
        axis = lay.weight_axis if per_channel else None
        q, wscale = quantize_weight(w, axis=axis, qmax=plan.weight_max)
        bias = None
        if int32_bias and lay.bias is not None and lay.input in params:
            xs = params[lay.input][0]
            bias = numpy_helper.to_array(g.inits[lay.bias]).astype(np.float64).reshape(-1)
            # int32 bias = b / (x_scale * w_scale) must fit: where it would overflow (vanishing
            # activations), widen that channel's weight scale; the x*w term is then below one
            # part in 2^31 of the bias, so the coarser weight costs nothing measurable.
            need = np.abs(bias) / (xs * INT32_MAX) * (1 + 1e-6)
            if wscale.ndim == 0:
                need = np.array(need.max(initial=0.0))
            if need.shape == wscale.shape and (need > wscale).any():
                wscale = np.maximum(wscale, need).astype(np.float32)
                shape = [1] * w.ndim
                if wscale.ndim:
                    shape[axis] = -1
                q = np.clip(np.round(w / wscale.reshape(shape)), -plan.weight_max, plan.weight_max).astype(np.int8)
        axis_attr = {"axis": lay.weight_axis} if wscale.ndim else {}
        base = f"{lay.name}.weight"
        s_name = const(f"{base}_scale", wscale.astype(np.float32))
        z_name = const(f"{base}_zp", np.zeros(wscale.shape, dtype=np.int8))
        if fp32_weights:
            # FP32 weight behind Q/DQ: the layout TensorRT constant-folds into an INT8 weight
            pre_nodes.append(
                helper.make_node(
                    "QuantizeLinear", [lay.weight, s_name, z_name], [f"{base}_q"], name=f"{base}_Q", **axis_attr
                )
            )
            src = f"{base}_q"
        else:
            src = const(f"{base}_int8", q)
            drop_inits.add(lay.weight)
        pre_nodes.append(
            helper.make_node("DequantizeLinear", [src, s_name, z_name], [f"{base}_dq"], name=f"{base}_DQ", **axis_attr)
        )
        rename[(lay.name, 1)] = f"{base}_dq"
        if bias is not None:
            bscale = (wscale.astype(np.float64) * xs).reshape(-1)
            if bscale.size == 1:
                bscale = np.full(bias.shape, bscale[0])
            if bias.shape == bscale.shape:
                bscale32 = bscale.astype(np.float32)
                bq = np.clip(np.round(bias / bscale32), -INT32_MAX, INT32_MAX).astype(np.int32)
                bb = f"{lay.name}.bias"
                const(f"{bb}_int32", bq)
                const(f"{bb}_scale", bscale32)
                const(f"{bb}_zp", np.zeros(bscale.shape, np.int32))
                pre_nodes.append(
                    helper.make_node(
                        "DequantizeLinear",
                        [f"{bb}_int32", f"{bb}_scale", f"{bb}_zp"],
                        [f"{bb}_dq"],
                        name=f"{bb}_DQ",
                        axis=0,
                    )
                )
                rename[(lay.name, 2)] = f"{bb}_dq"
                drop_inits.add(lay.bias)

    # activations: one Q->DQ pair per tensor, emitted right after its producer
    act_nodes: dict[str, list] = defaultdict(list)
    dropped = _ort_redundant_relus(g, plan, params) if drop_relus and not fp32_weights else {}
    for t, cons in plan.edges.items():
        scale, zp, signed = params[t]
        s_name = const(f"{t}_scale", np.array(scale, dtype=np.float32))
        z_name = const(f"{t}_zp", np.array(zp, dtype=np.int8 if signed else np.uint8))
        src, nodes = (dropped[t].input[0] if t in dropped else t), []
        if t in plan.channel_pad:
            pads = np.array([0, 0, 0, 0, 0, pad_extra[t], 0, 0], np.int64)  # NCHW: channels, end side
            src = f"{t}_c{plan.channel_pad[t]}"
            nodes.append(helper.make_node("Pad", [t, const(f"{src}_pads", pads)], [src], name=f"{src}_Pad"))
        nodes += [
            helper.make_node("QuantizeLinear", [src, s_name, z_name], [f"{t}_q"], name=f"{t}_Q"),
            helper.make_node("DequantizeLinear", [f"{t}_q", s_name, z_name], [f"{t}_dq"], name=f"{t}_DQ"),
        ]
        producer = g.producer.get(t)
        act_nodes[producer.name if producer is not None else ""].extend(nodes)
        for c in cons:
            rename[c] = f"{t}_dq"

    out_nodes = list(pre_nodes) + act_nodes.get("", [])
    skip = {relu.name for relu in dropped.values()}
    for n in g.nodes:
        if n.name in skip:  # its Q/DQ pair still follows at this position
            out_nodes.extend(act_nodes.get(n.name, []))
            continue
        new = onnx.NodeProto()
        new.CopyFrom(n)
        for i in range(len(new.input)):
            if (n.name, i) in rename:
                new.input[i] = rename[(n.name, i)]
        out_nodes.append(new)
        out_nodes.extend(act_nodes.get(n.name, []))

    m = onnx.ModelProto()
    m.CopyFrom(model)
    still_used = {t for n in out_nodes for t in n.input}
    keep_inits = [i for i in m.graph.initializer if not (i.name in drop_inits and i.name not in still_used)]
    del m.graph.node[:]
    m.graph.node.extend(out_nodes)
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep_inits + new_inits)
    del m.graph.value_info[:]
    return m


def _ort_redundant_relus(g: _Graph, plan: QuantPlan, params: dict[str, tuple[float, int, bool]]) -> dict[str, Any]:
    """Relus whose output is quantised with zero point 0 and read only through that Q/DQ: tensor -> Relu.

    uint8 quantisation at zero point 0 clips negatives to 0 already, so Q(Relu(x)) == Q(x) exactly
    and the Relu is dropped (its Q reads the Relu's input), as quantize_static does. ONNX Runtime
    drops such a Relu itself when it fuses the QDQ graph; OpenVINO fuses it into the conv as an extra
    post-op. Outputs are bit-identical either way; the speed effect in OpenVINO was within 2% noise
    on Zen 4 (benchmarks/cpu/layout.py).
    """
    out: dict[str, Any] = {}
    kept = set(plan.kept)
    for t, cons in plan.edges.items():
        relu = g.producer.get(t)
        if relu is None or relu.op_type != "Relu" or relu.name in kept or params[t][1] != 0 or params[t][2]:
            continue
        if t in g.graph_outputs or t in plan.channel_pad:
            continue
        readers = {(c.name, i) for c, i in g.consumers.get(t, [])}
        if readers and readers <= set(cons):  # every reader takes the dequantised copy
            out[t] = relu
    return out


def count_ops(model) -> dict[str, int]:
    """How many nodes of each op type a model holds (tests, reports, fusion checks)."""
    out: dict[str, int] = defaultdict(int)
    for n in model.graph.node:
        out[n.op_type] += 1
    return dict(out)


def ort_fusion(model) -> dict[str, int]:
    """What ONNX Runtime's CPU provider turns a QDQ model into: op counts after its (extended)
    graph optimisation. Integer kernels (QLinearConv, QGemm...) mean the Q/DQ pairs were fused;
    a float Conv left over means that layer runs in FP32 between a DQ and a Q."""
    import os
    import tempfile

    import onnx

    from deploykit.onnx_io import ort_session

    with tempfile.TemporaryDirectory() as tmp:
        fused = os.path.join(tmp, "fused.onnx")
        ort_session(model, optimization="extended", optimized_model_path=fused)
        return count_ops(onnx.load(fused))


# ------------------------------------------------------------------------------ tensorrt profile


def _plan_tensorrt(
    g: _Graph, kept: set[str], layers: list[Layer], profile: str = "tensorrt", layout: str | None = None
) -> QuantPlan:
    """The TensorRT placement (module docstring, rules T1-T6): Q/DQ where TensorRT fuses it.

    The ``openvino`` profile places its pairs by the same rules (OpenVINO's CPU plugin fuses the
    same patterns: conv + residual sum, Concat on one scale); only the types differ (apply_plan).
    """
    edges: dict[str, set[tuple[str, int]]] = defaultdict(set)
    uf = _UnionFind()
    quantise_input = _input_quantiser(g, edges, uf)

    # T1: every weighted layer's activation input (its weight is handled by apply_plan)
    for lay in layers:
        quantise_input(g.by_name[lay.name], 0)

    # T2: a residual Add quantises its identity input only; the conv branch is fused into the conv.
    # O2 (openvino): both inputs, as NNCF places them: the CPU plugin fuses the sum into the conv
    # either way, and a uint8 identity spares it a float copy of the block input per block
    for n in g.nodes:
        if n.name in kept or not _two_activation_add(g, n):
            continue
        fused = residual_branch(g, n) if profile == "tensorrt" else None
        for i in (0, 1):
            if i != fused:
                quantise_input(n, i)

    # T3: a Concat read only in INT8 (directly or through pooling/shape ops) gets its inputs quantised
    # with one scale shared by inputs and output, so TensorRT eliminates it; outer Concats first,
    # so a nested Concat (Inception-v3) sees its consumer's decision
    # O3 (openvino): every Concat, as NNCF places it: the feature maps of a DenseNet block share
    # one scale, the Concat copies INT8, and its float reader (BatchNorm -> ReLU) reads INT8 and
    # dequantises in its own kernel instead of reading a float copy four times the size
    for n in reversed(g.nodes):
        if n.op_type != "Concat" or n.name in kept or not n.output:
            continue
        if profile == "tensorrt" and not _read_only_in_int8(g, n.output[0], edges, kept):
            continue
        if profile == "openvino" and not _safe_to_share(g, n.output[0], kept):
            continue
        for i, t in enumerate(n.input):
            if g.is_activation(t):
                quantise_input(n, i)
                uf.union(t, n.output[0])

    # T5: a Concat of dequantised inputs read only by another Concat needs no pair of its own:
    # requantising values already on the shared grid changes nothing (Inception-v3's splits)
    for n in g.nodes:
        if n.op_type == "Concat" and n.output and n.output[0] in edges and _all_dq(g, n, edges):
            y = n.output[0]
            readers = [g.by_name[c] for c, _ in edges[y]]
            if all(r.op_type == "Concat" and uf.find(r.output[0]) == uf.find(y) for r in readers):
                del edges[y]

    # T4: pooling and shape-only ops share their input's scale when that input carries INT8
    # anyway (a Q/DQ pair of its own, or a Concat of quantised inputs): the op then runs on
    # INT8 with no requantisation. They never get a pair of their own on the input (T5).
    int8_concats = {n.output[0] for n in g.nodes if n.op_type == "Concat" and n.output and _all_dq(g, n, edges)}
    passthrough = POOLS + SHAPE_ONLY
    changed = True
    while changed:
        changed = False
        for n in g.nodes:
            if n.name in kept or n.op_type not in passthrough or not n.output:
                continue
            x, y = n.input[0], n.output[0]
            if not g.is_activation(x) or not (x in edges or x in int8_concats):
                continue
            if not _read_in_int8(g, y, edges, kept):
                continue
            if x in edges and (n.name, 0) not in edges[x]:
                edges[x].add((n.name, 0))
                changed = True
            if n.op_type == "GlobalAveragePool":
                continue  # channel means span a fraction of the input's range: their own scale
            if uf.find(x) != uf.find(y):
                uf.union(x, y)
                changed = True

    if profile == "openvino":
        _pairs_before_pools(g, kept, edges, uf)
    groups = {t: uf.find(t) for t in uf.parent}
    return QuantPlan(
        profile=profile,
        layers=layers,
        kept=sorted(kept),
        edges=dict(edges),
        groups=groups,
        weight_qdq={lay.weight: (lay.name, lay.weight_axis) for lay in layers},
        layout=layout,
    )


def _pairs_before_pools(g: _Graph, kept: set[str], edges, uf: _UnionFind) -> None:
    """O4 (openvino): a pool read in INT8 takes a pair on its input: a MaxPool instead of the one
    on its output, an AveragePool beside it (an average leaves the grid, so its output keeps its
    own pair).

    OpenVINO runs a pool of quantised values in INT8 and carries the dequantisation on to its
    readers; a pair behind the pool instead leaves the pool in float on the conv's float output
    and adds a FakeQuantize (ResNet-50's stem: 0.14 ms against NNCF's 0.05 ms on Zen 4). The
    values are the same: the maximum of values on one grid is on that grid.

    A GlobalAveragePool whose output reaches an INT8 reader through shape-only ops (the classifier:
    GlobalAveragePool -> Flatten -> Gemm) gets one too, as NNCF gives it: otherwise the last
    block's residual conv writes float and OpenVINO reorders its uint8 identity input to float for
    the sum (ResNet-50 224, batch 1, Sapphire Rapids: a 0.024 ms reorder of 3.3 ms).
    """
    for n in g.nodes:
        if n.op_type not in POOLS or n.name in kept or not n.output:
            continue
        x, y = n.input[0], n.output[0]
        if not g.is_activation(x):
            continue
        if n.op_type == "GlobalAveragePool":
            if (n.name, 0) in edges.get(x, ()) or not _read_in_int8(g, y, edges, kept):
                continue
        elif y not in edges:
            continue
        if _int8_concat(g, x, edges):
            continue  # a Concat of dequantised inputs is INT8 already: a pair would only reformat (T5)
        edges[x].add((n.name, 0))
        if n.op_type == "MaxPool":
            uf.union(x, y)
            del edges[y]
        else:
            uf.find(x)  # an average leaves the grid: its output keeps its own pair


def _int8_concat(g: _Graph, t: str, edges) -> bool:
    """Whether ``t`` is a Concat's output whose every activation input is read through a DQ or is
    itself such a Concat (Inception-v3's nested splits, whose inner pair T5 removed)."""
    p = g.producer.get(t)
    if p is None or p.op_type != "Concat":
        return False
    ins = [(i, x) for i, x in enumerate(p.input) if g.is_activation(x)]
    return bool(ins) and all((p.name, i) in edges.get(x, ()) or _int8_concat(g, x, edges) for i, x in ins)


def _safe_to_share(g: _Graph, t: str, kept: set[str]) -> bool:
    """Whether a Concat output may carry quantised values: not a graph output, and no reader kept
    in FP32 by the fallback (it would read INT8 data)."""
    if t in g.graph_outputs:
        return False
    readers = g.consumers.get(t, [])
    return bool(readers) and not any(c.name in kept for c, _ in readers)


def _input_quantiser(g: _Graph, edges: dict[str, set[tuple[str, int]]], uf: _UnionFind):
    """``quantise(node, idx)``: put the node's input ``idx`` behind a Q/DQ pair when it is an activation."""

    def quantise(node, idx: int) -> None:
        t = node.input[idx]
        if g.is_activation(t):
            edges[t].add((node.name, idx))
            uf.find(t)

    return quantise


def _two_activation_add(g: _Graph, n) -> bool:
    return n.op_type == "Add" and len(n.input) == 2 and all(g.is_activation(t) for t in n.input)


def _all_dq(g: _Graph, n, edges) -> bool:
    """Whether every activation input of ``n`` is read through a DequantizeLinear."""
    ins = [(i, t) for i, t in enumerate(n.input) if g.is_activation(t)]
    return bool(ins) and all((n.name, i) in edges.get(t, ()) for i, t in ins)


def _read_only_in_int8(g: _Graph, t: str, edges, kept: set[str]) -> bool:
    """Whether every reader of ``t`` reads it in INT8: through its Q/DQ pair, or through a pool /
    shape-only op whose output is read only in INT8. A kept (FP32) reader, a float op or a graph
    output says no: quantising the Concat's inputs would feed it quantised values (and a layer
    returned to FP32 by the fallback would still read INT8 data)."""
    if t in g.graph_outputs:
        return False
    readers = g.consumers.get(t, [])
    if not readers:
        return False
    for c, i in readers:
        if c.name in kept:
            return False
        if (c.name, i) in edges.get(t, ()):
            continue
        if c.op_type in POOLS + SHAPE_ONLY and c.output and _read_only_in_int8(g, c.output[0], edges, kept):
            continue
        return False
    return True


def _read_in_int8(g: _Graph, t: str, edges, kept: set[str]) -> bool:
    """Whether ``t`` reaches an INT8 reader: a Q/DQ pair of its own, or a pool / shape-only op
    (not kept) whose output does, or a Concat whose inputs are quantised."""
    seen: set[str] = set()
    todo = [t]
    while todo:
        u = todo.pop()
        if u in seen:
            continue
        seen.add(u)
        if u in edges:
            return True
        for c, _ in g.consumers.get(u, []):
            if c.name in kept or not c.output:
                continue
            if c.op_type in POOLS + SHAPE_ONLY:
                todo.append(c.output[0])
    return False


def _conv_backbone(g: _Graph, t: str):
    """The Conv whose output ``t`` is, seen through ops TensorRT fuses into the conv's epilogue
    (BatchNormalization, a constant bias Add/Mul, Relu), with no other reader on the way; or None."""
    while True:
        p = g.producer.get(t)
        if p is None or len(g.consumers.get(t, [])) != 1:
            return None
        if p.op_type == "Conv":
            return p
        if p.op_type in ("BatchNormalization", "Relu") or (
            p.op_type in ("Add", "Mul") and sum(g.is_activation(x) for x in p.input) == 1
        ):
            t = next(x for x in p.input if g.is_activation(x))
            continue
        return None


def _ancestor_depths(g: _Graph, t: str) -> dict[str, int]:
    """Shortest distance (in nodes) from ``t``'s producer back to each ancestor node."""
    out: dict[str, int] = {}
    p = g.producer.get(t)
    frontier = [p] if p is not None else []
    d = 0
    while frontier:
        nxt = []
        for n in frontier:
            if n.name in out:
                continue
            out[n.name] = d
            nxt.extend(g.producer[x] for x in n.input if x in g.producer)
        frontier = nxt
        d += 1
    return out


def residual_branch(g: _Graph, add) -> int | None:
    """Which input of a two-activation ``Add`` TensorRT fuses into its producing conv (the one
    to leave without Q/DQ), or None when it is no residual Add.

    An input is fusible when a Conv writes it for this Add alone (through BatchNormalization /
    bias / Relu, which TensorRT fuses too). When both are (ResNet's downsampling block: main
    branch and projection shortcut), the main branch is the fused one: the input farther from
    the two inputs' nearest common ancestor, the same test NVIDIA's Model Optimizer applies.
    When the only fusible input's conv is itself the common ancestor, the Add is no residual.
    """
    convs = [_conv_backbone(g, t) for t in add.input]
    if convs[0] is None and convs[1] is None:
        return None
    if convs[0] is not None and convs[1] is not None and convs[0].name == convs[1].name:
        return None
    d0, d1 = _ancestor_depths(g, add.input[0]), _ancestor_depths(g, add.input[1])
    common = set(d0) & set(d1)
    lca = min(common, key=lambda k: (d0[k] + d1[k], k)) if common else None
    if convs[0] is not None and convs[1] is not None:
        if lca is None:
            return 0
        return 0 if d0[lca] >= d1[lca] else 1
    i = 0 if convs[0] is not None else 1
    if lca is not None and lca == convs[i].name:
        return None
    return i
