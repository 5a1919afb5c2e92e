import numpy as np
import pytest

from merger.formats.base_model import Architecture
from merger.formats.lora import random_lora
from merger.search.merge import merge_elementwise, merge_updates

ARCH = Architecture(fingerprint="f" * 64, n_layers=2, hidden=32, ffn=64, n_heads=4, n_kv_heads=2, head_dim=8, vocab=10)


def loras(n=3, rank=4, modules=("attn_q", "attn_v")):
    out = [random_lora(ARCH, rank=rank, seed=i, modules=modules, alpha=2.0 * rank) for i in range(n)]
    return out


def test_update_merge_is_the_weighted_sum_of_updates():
    adapters, weights = loras(), [0.7, -1.2, 0.3]
    merged = merge_updates(adapters, weights)
    assert merged.rank == 12 and merged.scale == 1.0
    for key in merged.weights:
        expected = sum(w * lora.delta(key) for w, lora in zip(weights, adapters))
        np.testing.assert_allclose(merged.delta(key), expected, rtol=1e-4, atol=1e-5)


def test_elementwise_merge_has_cross_terms():
    adapters, weights = loras(2), [0.5, 0.5]
    merged = merge_elementwise(adapters, weights)
    assert merged.rank == 4
    key = "blk.0.attn_q"
    (a1, b1), (a2, b2) = [(a, b * lora.scale) for lora in adapters for a, b in [lora.weights[key]]]
    cross = 0.25 * (b1 @ a1 + b1 @ a2 + b2 @ a1 + b2 @ a2)
    np.testing.assert_allclose(merged.delta(key), cross, rtol=1e-4, atol=1e-6)
    updates = merge_updates(adapters, weights).delta(key)
    assert not np.allclose(merged.delta(key), updates), "the two ways are different functions"


def test_svd_truncation_is_the_best_low_rank_approximation():
    adapters, weights = loras(3), [1.0, 0.5, -0.8]
    exact = merge_updates(adapters, weights)
    small = merge_updates(adapters, weights, rank=4)
    assert small.rank == 4
    for key in exact.weights:
        full = exact.delta(key)
        s = np.linalg.svd(full, compute_uv=False)
        error = np.linalg.norm(full - small.delta(key))
        assert error == pytest.approx(np.sqrt((s[4:] ** 2).sum()), rel=1e-3)


def test_modules_missing_from_one_adapter_count_as_zero():
    a = random_lora(ARCH, rank=2, seed=0, modules=("attn_q",))
    b = random_lora(ARCH, rank=2, seed=1, modules=("attn_v",))
    merged = merge_updates([a, b], [1.0, 2.0])
    np.testing.assert_allclose(merged.delta("blk.1.attn_v"), 2.0 * b.delta("blk.1.attn_v"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(merged.delta("blk.1.attn_q"), a.delta("blk.1.attn_q"), rtol=1e-5, atol=1e-6)


def test_refusals():
    with pytest.raises(ValueError, match="equal ranks"):
        merge_elementwise([random_lora(ARCH, rank=2), random_lora(ARCH, rank=4)], [1, 1])
    other = random_lora(Architecture(**{**ARCH.__dict__, "fingerprint": "0" * 64}), rank=2)
    with pytest.raises(ValueError, match="different base models"):
        merge_updates([random_lora(ARCH, rank=2), other], [1, 1])


@pytest.mark.parametrize("merge", [merge_elementwise, merge_updates])
def test_one_weight_per_adapter_and_layer(merge):
    """PriME's per-layer option: layer 0 takes the first adapter alone, layer 1 the second;
    the search's flat vector (adapter by adapter) means the same as the matrix."""
    adapters = loras(2)
    matrix = np.array([[1.0, 0.0], [0.0, 1.0]])
    merged = merge(adapters, matrix)
    for key in merged.weights:
        expected = adapters[0].delta(key) if key.startswith("blk.0.") else adapters[1].delta(key)
        np.testing.assert_allclose(merged.delta(key), expected, rtol=1e-4, atol=1e-5)
    flat = merge(adapters, matrix.ravel())
    for key in merged.weights:
        np.testing.assert_array_equal(flat.delta(key), merged.delta(key))
    with pytest.raises(ValueError, match="weights for 1 layers"):
        merge(adapters, np.array([[1.0], [1.0]]))
