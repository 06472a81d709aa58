"""Activation statistics in one streaming pass: running min/max and a re-binned |x| histogram.

Every tensor to be quantised is added as a graph output, the calibration batches are streamed
through ONNX Runtime once, and each tensor keeps a fixed number of histogram bins over
``[0, range)``. When a batch exceeds the range, the range grows by an integer factor and old bins
are merged in groups of that factor, so counts are preserved exactly and memory stays bounded
whatever the size of the calibration set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from deploykit.errors import DeployKitError

DEFAULT_BINS = 2048


@dataclass
class TensorStats:
    """Streaming statistics of one tensor: exact min/max/absmax and a histogram of |x|."""

    name: str
    num_bins: int = DEFAULT_BINS
    min: float = math.inf
    max: float = -math.inf
    count: int = 0
    hist_range: float = 0.0  # histogram covers |x| in [0, hist_range)
    hist: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.hist is None:
            self.hist = np.zeros(self.num_bins, dtype=np.int64)

    @property
    def amax(self) -> float:
        """Largest |x| seen."""
        if self.count == 0:
            return 0.0
        return float(max(abs(self.min), abs(self.max)))

    @property
    def bin_width(self) -> float:
        return self.hist_range / self.num_bins if self.hist_range > 0 else 0.0

    def update(self, x: np.ndarray) -> None:
        """Fold one batch of values into the statistics; NaN/Inf is a one-line error."""
        x = np.asarray(x)
        if x.size == 0:
            return
        if not np.isfinite(x).all():
            bad = "NaN" if np.isnan(x).any() else "Inf"
            raise DeployKitError(
                f"tensor '{self.name}' holds {bad} values on the calibration data; "
                "check the model weights and the calibration images"
            )
        a = np.abs(x.astype(np.float32, copy=False)).ravel()
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        self.count += a.size
        batch_amax = float(a.max())
        if batch_amax >= self.hist_range:
            self._grow(batch_amax)
        idx = np.minimum((a * (self.num_bins / self.hist_range)).astype(np.int64), self.num_bins - 1)
        self.hist += np.bincount(idx, minlength=self.num_bins)

    def _grow(self, needed: float) -> None:
        """Widen the range to exceed ``needed``, merging old bins so their counts are kept."""
        if self.hist_range <= 0:
            # First data: leave headroom so small growth does not force a re-bin every batch.
            self.hist_range = needed * 1.0001 if needed > 0 else 1e-8
            return
        factor = int(math.floor(needed / self.hist_range)) + 1
        new_hist = np.zeros(self.num_bins, dtype=np.int64)
        # old bin i covers [i*w, (i+1)*w); new bin width is factor*w, so it lands in i // factor
        np.add.at(new_hist, np.arange(self.num_bins) // factor, self.hist)
        self.hist = new_hist
        self.hist_range *= factor

    def edges(self) -> np.ndarray:
        """Bin edges of the |x| histogram (num_bins + 1 values)."""
        return np.linspace(0.0, self.hist_range, self.num_bins + 1)

    def to_dict(self) -> dict:
        return {"name": self.name, "min": self.min, "max": self.max, "amax": self.amax, "count": self.count}


def add_graph_outputs(model, names: Iterable[str]):
    """A copy of ``model`` whose graph also outputs the named intermediate tensors."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    existing = {o.name for o in m.graph.output}
    known = {vi.name: vi for vi in m.graph.value_info}
    for name in names:
        if name in existing:
            continue
        if name in known:
            m.graph.output.append(known[name])
        else:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        existing.add(name)
    return m


def make_session(model, threads: int | None = None):
    """A CPU ONNX Runtime session over an in-memory model (graph optimisations off so every
    requested intermediate tensor is produced exactly as the graph defines it)."""
    from deploykit.onnx_io import ort_session

    return ort_session(model, threads=threads or None, inter_op_threads=1 if threads else None, optimization="disable")


def collect_stats(
    model,
    tensor_names: Iterable[str],
    batches: Iterable[np.ndarray],
    num_bins: int = DEFAULT_BINS,
    threads: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, TensorStats]:
    """Stream ``batches`` (NCHW float32) through ``model`` once and gather every tensor's stats."""
    # graph order, so NaN/Inf is reported at the first tensor where it appears
    order = {i.name: -1 for i in model.graph.input}
    for k, node in enumerate(model.graph.node):
        for o in node.output:
            order.setdefault(o, k)
    names = sorted(dict.fromkeys(tensor_names), key=lambda n: order.get(n, len(order)))
    sess = make_session(add_graph_outputs(model, names), threads=threads)
    input_name = sess.get_inputs()[0].name
    stats = {n: TensorStats(n, num_bins=num_bins) for n in names}
    seen = 0
    for x in batches:
        outs = sess.run(names, {input_name: np.ascontiguousarray(x, dtype=np.float32)})
        for n, v in zip(names, outs):
            stats[n].update(v)
        seen += len(x)
        if on_batch is not None:
            on_batch(len(x))
    if seen == 0:
        raise DeployKitError("calibration set is empty: no batch reached the model")
    return stats


def iter_arrays(x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Split an (N, C, H, W) array into batches (tests and small in-memory calibration sets)."""
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size]
