"SLED processor: the reference, row independence, dtypes, non-finite input, config checks (torch path, no Keras)"
import math
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from dl_optim.config import ConfigError
from dl_optim.sled import SledLogitsProcessor, sled_builder, sled_reference

def layers(L, B, V, scale=3.0, seed=0):
    "L early layers and a final one, `[L+1, B, V]` float64"
    rng = np.random.default_rng(seed)
    final = rng.normal(size=(B, V)) * scale
    early = [final + rng.normal(size=(B, V)) * scale * rng.uniform(0.2, 2) for _ in range(L)]
    return np.stack(early + [final])

def test_hand_worked_example():
    "A worked example, computed by hand (V = 4, k = 2, alpha = 1, eta = -100)"
    x = torch.tensor([[[0., 2., 0., -1.]], [[2., 1., 0., -1.]]])
    cfg = dict(evolution_rate=1.0, evolution_scale=2, inactive_logit_value=-100.0)
    torch.testing.assert_close(SledLogitsProcessor(**cfg)(x), torch.tensor([[2.356086, 0.763117, -100, -100]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(SledLogitsProcessor(**cfg, num_steps=10)(x), torch.tensor([[3.093204, 0.320883, -100, -100]]), atol=1e-5, rtol=0)

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(V=st.integers(50, 32000), L=st.integers(1, 31), k=st.integers(1, 50), T=st.sampled_from([1, 10]),
       B=st.integers(2, 4), alpha=st.sampled_from([0.5, 2.0]), seed=st.integers(0, 10**6))
def test_rows_are_independent(V, L, k, T, B, alpha, seed):
    "Every row of a batch equals that row run alone (vocab 50..32000, 2..32 layers, k 1..50, T 1 and 10)"
    x = torch.tensor(layers(L, B, V, seed=seed), dtype=torch.float32)
    proc = SledLogitsProcessor(evolution_rate=alpha, evolution_scale=k, num_steps=T)
    batch = proc(x)
    for b in range(B):
        torch.testing.assert_close(batch[b:b + 1], proc(x[:, b:b + 1]), rtol=1e-6, atol=1e-6)

@settings(max_examples=25, deadline=None)
@given(V=st.integers(50, 3000), L=st.integers(1, 12), k=st.integers(1, 50), T=st.sampled_from([1, 10]),
       tau=st.sampled_from([0.7, 1.0, 1.5]), tau_u=st.booleans(), seed=st.integers(0, 10**6))
def test_matches_literal_reference(V, L, k, T, tau, tau_u, seed):
    "The O(V) closed form equals the literal [L, k, V] algorithm: 1e-10 in float64, float32 rounding in float32"
    x = layers(L, 2, V, seed=seed)
    cfg = dict(evolution_rate=2.0, evolution_scale=k, num_steps=T, temperature=tau, use_tau_in_update=tau_u,
               inactive_logit_value=-1000.0)
    ref = np.stack([sled_reference(x[:, b], **cfg) for b in range(2)])
    np.testing.assert_allclose(SledLogitsProcessor(**cfg)(torch.tensor(x)).numpy(), ref, atol=1e-9, rtol=0)
    np.testing.assert_allclose(SledLogitsProcessor(**cfg)(torch.tensor(x, dtype=torch.float32)).numpy(), ref, atol=2e-4, rtol=0)

@pytest.mark.parametrize('scale', [3.0, 10.0, 30.0])
def test_float16_equals_float32_within_fp16_rounding(scale):
    "Large logit gaps overflow a float16 norm; the processor computes in float32 and rounds once at the end"
    x16 = torch.tensor(layers(12, 3, 32000, scale=scale, seed=1)).half()
    proc = SledLogitsProcessor(evolution_rate=2.0, evolution_scale=20)
    out16, out32 = proc(x16), proc(x16.float())
    assert out16.dtype == torch.float16 and torch.isfinite(out16).all()
    keep = out32 > -1e8
    assert int(keep.sum()) == 3 * 20
    torch.testing.assert_close(out16[keep].float(), out32[keep].half().float(), rtol=0, atol=0)
    assert set(out16[~keep].tolist()) == {-65504.0}
    bf = proc(x16.bfloat16())
    torch.testing.assert_close(bf[keep].float(), proc(x16.bfloat16().float())[keep].bfloat16().float(), rtol=0, atol=0)

def test_output_is_masked_to_top_k_and_keeps_the_ranking_source():
    x = torch.tensor(layers(4, 3, 500, seed=2), dtype=torch.float32)
    out = SledLogitsProcessor(evolution_scale=7, inactive_logit_value=-123.0)(x)
    top = x[-1].topk(7).indices
    for b in range(3):
        kept = (out[b] != -123.0).nonzero().flatten()
        assert sorted(kept.tolist()) == sorted(top[b].tolist())

def test_step_bounded_by_alpha():
    "One step moves each kept logit by at most alpha / tau_u (two probabilities differ by at most 1)"
    x = torch.tensor(layers(6, 4, 2000, seed=3))
    for alpha, tau in [(0.5, 1.0), (2.0, 1.0), (2.0, 0.5)]:
        out = SledLogitsProcessor(evolution_rate=alpha, temperature=tau, evolution_scale=50)(x)
        keep = out > -1e8
        assert (out[keep] - x[-1][keep]).abs().max() <= alpha / tau + 1e-12

def test_no_signal_is_the_official_behaviour():
    "Early layers equal to the final one: P_latent = 0, output still masked, z_N - alpha p_N on the top-k"
    z = torch.randn(2, 300, dtype=torch.float64)
    out = SledLogitsProcessor(evolution_rate=2.0, evolution_scale=5, inactive_logit_value=-50.0)(torch.stack([z, z, z]))
    top = z.topk(5).indices
    expect = torch.take_along_dim(z - 2.0 * torch.softmax(z, -1), top, -1)
    torch.testing.assert_close(torch.take_along_dim(out, top, -1), expect)
    assert int((out == -50.0).sum()) == 2 * 295

def test_k_larger_than_vocab_does_not_mutate():
    proc = SledLogitsProcessor(evolution_scale=50)
    small = proc(torch.tensor(layers(2, 1, 10, seed=4)))
    assert (small > -1e8).all()
    assert proc.evolution_scale == 50
    assert int((proc(torch.tensor(layers(2, 1, 100, seed=4))) > -1e8).sum()) == 50

@pytest.mark.parametrize('bad', [math.inf, -math.inf, math.nan])
def test_non_finite_input_is_an_error(bad):
    x = torch.tensor(layers(3, 2, 100, seed=5))
    x[1, 1, 7] = bad
    with pytest.raises(ValueError, match=r'layers \[1\]'): SledLogitsProcessor()(x)

def test_non_finite_rows_under_torch_compile_are_nan():
    "Under a trace nothing can be inspected: a row with a non-finite input comes out NaN, the others are exact"
    x = torch.tensor(layers(3, 3, 200, seed=6), dtype=torch.float32)
    proc = SledLogitsProcessor(evolution_rate=2.0, num_steps=2)
    clean = proc(x)
    x[0, 1, 3] = -math.inf
    out = torch.compile(proc.__call__, fullgraph=True, backend='eager')(x)
    assert torch.isnan(out[1]).all()
    torch.testing.assert_close(out[[0, 2]], clean[[0, 2]])

def test_torch_compile_inductor_matches_eager():
    x = torch.tensor(layers(5, 2, 1000, seed=8), dtype=torch.float32)
    proc = SledLogitsProcessor(evolution_rate=2.0, num_steps=3)
    torch.testing.assert_close(torch.compile(proc.__call__, fullgraph=True)(x), proc(x), rtol=1e-5, atol=1e-5)

def test_input_structures():
    x = torch.tensor(layers(3, 2, 60, seed=9), dtype=torch.float32)
    proc = SledLogitsProcessor()
    torch.testing.assert_close(proc(list(x)), proc(x))
    torch.testing.assert_close(proc(tuple(x)), proc(x))
    with pytest.raises(ValueError, match='at least two'): proc(x[:1])
    with pytest.raises(ValueError, match='at least two'): proc([])
    with pytest.raises(ValueError, match=r'\[layers, \.\.\., vocab\]'): proc(x[0])
    with pytest.raises(ValueError, match="final layer's shape"): proc([x[0], x[1, :, :50]])

@pytest.mark.parametrize('key,value,fragment', [
    ('evolution_rate', 0, '> 0'), ('evolution_rate', '0.5', 'a finite number'), ('evolution_scale', 0, '>= 1'),
    ('evolution_scale', 2.5, 'an integer'), ('evolution_scale', True, 'an integer'), ('temperature', -1.0, '> 0'),
    ('use_tau_in_update', 'False', 'a boolean'), ('use_tau_in_update', 1, 'a boolean'), ('inactive_logit_value', math.inf, 'finite'),
    ('num_steps', 0, '>= 1'), ('evolution_scal', 10, 'evolution_scale'),
])
def test_bad_config_raises(key, value, fragment):
    with pytest.raises(ConfigError, match=fragment) as e: sled_builder({'type': 'sled_v1', 'config': {key: value}})
    assert key in str(e.value)

def test_builder_structure_errors():
    for cfg in [None, [], {'config': {}}, {'type': 3}, {'type': 'dola'}, {'type': 'sled_v1', 'cfg': {}}, {'type': 'sled_v1', 'config': []}]:
        with pytest.raises(ConfigError): sled_builder(cfg)

def test_official_lower_bound_name_and_round_trip():
    p = sled_builder({'type': 'sled_v1', 'config': {'evolution_lower_bound': -2500, 'num_steps': 10}})
    assert p.inactive_logit_value == -2500 and p.num_steps == 10
    assert SledLogitsProcessor.from_config(p.get_config()).get_config() == p.get_config()

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(V=st.integers(4, 400), L=st.integers(1, 6), k=st.integers(1, 12), T=st.sampled_from([1, 10]),
       gap=st.floats(4.0, 34.0), which=st.integers(0, 10**6), alpha=st.floats(0.5, 3.0), seed=st.integers(0, 10**6),
       dtype=st.sampled_from([torch.float32, torch.float16]))
def test_confident_early_layers_equal_the_literal_algorithm(V, L, k, T, gap, which, alpha, seed, dtype):
    """Early layers nearly one-hot (top softmax probability up to 1 − 1e-12): float32 within 1e-4 of the float64 literal
    algorithm, float16 within its own rounding of it"""
    rng = np.random.default_rng(seed)
    final = rng.normal(size=(2, V)) * 3
    early = rng.normal(size=(L, 2, V))
    early[:, np.arange(2), (which + np.arange(2)) % V] = early.max(-1) + gap   # one confident token per row and layer
    if which % 3 == 0: early[0] = final          # sometimes a layer equals the final one (no signal from it)
    x = torch.tensor(np.concatenate([early, final[None]]), dtype=dtype)
    cfg = dict(evolution_rate=alpha, evolution_scale=k, num_steps=T, inactive_logit_value=-1000.0)
    got = SledLogitsProcessor(**cfg)(x).double().numpy()
    ref = np.stack([sled_reference(x.double().numpy()[:, b], **cfg) for b in range(2)])
    keep = ref > -1000
    if dtype == torch.float16:   # the float32 result rounded once: within half a float16 ulp of the reference, plus 1e-4
        assert (np.abs(got - ref)[keep] <= 2.0 ** -11 * np.abs(ref[keep]) + 1e-4).all()
    else: assert np.abs(got - ref)[keep].max() <= 1e-4 * max(1.0, np.abs(ref[keep]).max())
