"Property tests of the Newton–Schulz derivation and the torch kernel"
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from dl_optim.config import ConfigError
from dl_optim.newton_schulz import (orthogonalize, polar_express_coefficients, polar_express_schedule, resolve_schedule,
                                    minimax_quintic, worst_case_error, quintic, JORDAN, matrix_with_spectrum, polar_error)

REFERENCE = [(8.156554524902461, -22.48329292557795, 15.878769915207462),
             (4.042929935166739, -2.808917465908714, 0.5000178451051316),
             (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
             (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
             (2.3465413258596377, -1.7097828382687081, 0.42323551169305323)]

def test_reproduces_published_polar_express():
    got = np.array(polar_express_coefficients())
    assert np.abs(got - REFERENCE).max() / np.abs(REFERENCE).max() < 1e-4
    np.testing.assert_allclose(got, REFERENCE, rtol=1e-9)

@settings(max_examples=30, deadline=None)
@given(st.floats(1e-4, 0.5), st.floats(0.05, 1.0))
def test_minimax_equioscillates(lo_frac, hi):
    lo = lo_frac * hi
    a, b, c = minimax_quintic(lo, hi)
    x = np.linspace(lo, hi, 20001)
    err = 1 - quintic(x, a, b, c)
    E = np.abs(err).max()
    assert err[0] == pytest.approx(E, rel=1e-6, abs=1e-12) and err[-1] == pytest.approx(-E, rel=1e-6, abs=1e-12)
    # no other odd quintic through small perturbations does better
    rng = np.random.default_rng(0)
    for d in rng.normal(size=(20, 3)) * 1e-3:
        assert np.abs(1 - quintic(x, a + d[0], b + d[1], c + d[2])).max() >= E - 1e-12

@settings(max_examples=20, deadline=None)
@given(st.floats(1e-4, 0.2), st.integers(1, 8), st.floats(0, 0.05), st.floats(0, 0.1))
def test_derivation_is_a_function_of_its_arguments(lower, steps, safety, cushion):
    s = polar_express_schedule(lower, steps, safety, cushion)
    assert len(s.coefficients) == steps and s.input_scale == pytest.approx(1 + safety)
    # more steps never make the worst case worse (greedy optimality)
    if steps > 1:
        shorter = polar_express_schedule(lower, steps - 1, safety, cushion)
        assert worst_case_error(s, lower, points=20001) <= worst_case_error(shorter, lower, points=20001) + 1e-9

def test_polar_express_beats_jordan():
    for lo in (1e-3, 1e-2):
        assert worst_case_error(resolve_schedule('polar_express'), lo) < worst_case_error(resolve_schedule('jordan'), lo)
    G = matrix_with_spectrum('ill_conditioned', 96, 192, seed=3)
    assert polar_error(G, 'polar_express') < polar_error(G, 'jordan')

shapes = st.tuples(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 24), st.integers(1, 24))

@settings(max_examples=40, deadline=None)
@given(shapes, st.sampled_from(['polar_express', 'jordan', 'cubic']), st.integers(0, 2**31 - 1))
def test_singular_values_follow_the_scalar_map(shape, name, seed):
    "Kernel ↔ derivation: in float64, output singular values are the schedule applied to normalised input ones"
    batch, m, n = shape
    G = torch.randn(*batch, m, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    out = orthogonalize(G, name, dtype=torch.float64, eps=0)
    assert out.shape == G.shape and out.dtype == G.dtype
    s_in = (torch.linalg.svdvals(G) / torch.linalg.matrix_norm(G)[..., None]).numpy()
    expected = np.sort(resolve_schedule(name)(s_in), axis=-1)
    got = np.sort(torch.linalg.svdvals(out).numpy(), axis=-1)
    np.testing.assert_allclose(got, expected, atol=1e-9)

@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(2, 40), st.integers(2, 40))
def test_batched_tall_wide_consistent(b, m, n):
    G = torch.randn(b, m, n)
    Y = orthogonalize(G, dtype=torch.float32)
    for i in range(b): torch.testing.assert_close(Y[i], orthogonalize(G[i], dtype=torch.float32), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(orthogonalize(G.mT, dtype=torch.float32), Y.mT, atol=2e-5, rtol=1e-4)

@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize('shape', [(7, 5), (5, 7), (2, 3, 4, 6)])
def test_zero_input_gives_zeros(dtype, shape):
    out = orthogonalize(torch.zeros(shape, dtype=dtype))
    assert out.dtype == dtype and not out.isnan().any() and (out == 0).all()

def test_bf16_compute_close_to_fp32():
    G = torch.randn(48, 96)
    a = orthogonalize(G, dtype=torch.float32)
    b = orthogonalize(G, dtype=torch.bfloat16)
    assert b.dtype == torch.float32
    assert (a - b).norm() / a.norm() < 0.03
    assert orthogonalize(G.bfloat16(), dtype=torch.float32).dtype == torch.bfloat16

def test_svd_reference_rank_deficient():
    G = matrix_with_spectrum('rank_deficient', 40, 60)
    P = orthogonalize(G, 'svd')
    s = torch.linalg.svdvals(P)
    r = int((torch.linalg.svdvals(G) > 1e-10).sum())
    assert torch.allclose(s[:r], torch.ones(r, dtype=s.dtype)) and s[r:].abs().max() < 1e-10

def test_bad_arguments():
    with pytest.raises(ValueError, match='matrix or a batch'): orthogonalize(torch.ones(3))
    with pytest.raises(ConfigError, match="did you mean 'jordan'"): orthogonalize(torch.ones(3, 3), 'jordn')
    with pytest.raises(ConfigError, match="'steps'"): orthogonalize(torch.ones(3, 3), steps=0)
    with pytest.raises(ConfigError, match="'cushion'"): polar_express_coefficients(cushion=1.0)
    assert resolve_schedule(JORDAN, steps=3).coefficients == (JORDAN,) * 3
