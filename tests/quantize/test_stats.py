"""Streaming statistics: exact extremes, re-binning that keeps counts, bounded memory, NaN/Inf."""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.errors import DeployKitError
from deploykit.quantize.stats import TensorStats, collect_stats, iter_arrays

from .graphs import residual_block


def test_min_max_and_count_are_exact(rng):
    st = TensorStats("t", num_bins=64)
    chunks = [rng.normal(size=1000) * s for s in (0.1, 3.0, 0.5)]
    for c in chunks:
        st.update(c)
    allx = np.concatenate(chunks)
    assert st.min == pytest.approx(allx.min()) and st.max == pytest.approx(allx.max())
    assert st.amax == pytest.approx(np.abs(allx).max())
    assert st.count == allx.size


def test_rebinning_preserves_counts_and_placement(rng):
    st = TensorStats("t", num_bins=128)
    st.update(rng.uniform(0, 1, size=5000))
    first_range = st.hist_range
    st.update(rng.uniform(-7, 7, size=3000))  # range grows: old bins merge by an integer factor
    assert st.hist_range > 7 and st.hist.sum() == 8000 == st.count
    factor = st.hist_range / first_range
    assert factor == pytest.approx(round(factor))
    # the histogram still says where the mass is: compare to a direct histogram of |x| on the same edges
    rng2 = np.random.default_rng(0)
    a = np.abs(np.concatenate([rng2.uniform(0, 1, 5000), rng2.uniform(-7, 7, 3000)]))
    direct, _ = np.histogram(a, bins=st.edges())
    assert np.abs(direct - st.hist).sum() == 0


def test_memory_is_bounded_whatever_the_data(rng):
    st = TensorStats("t", num_bins=256)
    for scale in np.geomspace(1e-3, 1e6, 40):
        st.update(rng.normal(size=100) * scale)
    assert st.hist.shape == (256,) and st.hist.sum() == 4000


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_is_a_one_line_error_naming_the_tensor(bad):
    st = TensorStats("layer3/conv2_out")
    x = np.ones(10, np.float32)
    x[3] = bad
    with pytest.raises(DeployKitError, match="layer3/conv2_out") as e:
        st.update(x)
    assert "\n" not in str(e.value)


def test_collect_stats_streams_intermediate_tensors(rng):
    model = residual_block()
    x = rng.normal(size=(20, 4, 8, 8)).astype(np.float32)
    stats = collect_stats(model, ["r0", "s", "x"], iter_arrays(x, 6))
    assert set(stats) == {"r0", "s", "x"}
    assert stats["x"].count == x.size and stats["x"].max == pytest.approx(x.max())
    assert stats["r0"].min >= 0  # a ReLU output
    assert stats["s"].count == 20 * 8 * 8 * 8


def test_collect_stats_refuses_an_empty_stream():
    with pytest.raises(DeployKitError, match="empty"):
        collect_stats(residual_block(), ["r0"], iter([]))
