"Gram and AOL-preconditioned Newton–Schulz: finite on every finite input, the same map as standard NS, options validated, in Muon"
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from dl_optim.config import ConfigError
from dl_optim.newton_schulz import orthogonalize, resolve_schedule, matrix_with_spectrum, ns_method_for
from dl_optim.gram_ns import gram_newton_schulz, ns_products, gram_pays, restart_steps
from dl_optim.preconditioned_ns import aol_start
from dl_optim.ops import TORCH
from dl_optim.muon import Muon

DTYPES = [torch.float32, torch.bfloat16, torch.float16]

@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 24), n=st.integers(1, 24), batch=st.integers(0, 2), kind=st.sampled_from(['randn', 'zero', 'rank1', 'tiny', 'huge', 'zero_rows']),
       dtype=st.sampled_from(DTYPES), method=st.sampled_from(['gram', 'standard', 'auto']), pre=st.sampled_from([None, 'aol']),
       coefficients=st.sampled_from(['polar_express', 'jordan', 'cubic', [(3.0, -3.2, 1.2)] * 4]))
def test_finite_on_finite_input(m, n, batch, kind, dtype, method, pre, coefficients):
    g = torch.Generator().manual_seed(m * 100 + n)
    shape = ((batch,) if batch else ()) + (m, n)
    G = {'randn': lambda: torch.randn(shape, generator=g), 'zero': lambda: torch.zeros(shape),
         'rank1': lambda: torch.randn(shape[:-1] + (1,), generator=g) * torch.randn(shape[:-2] + (1, n), generator=g),
         'tiny': lambda: torch.randn(shape, generator=g) * 1e-30, 'huge': lambda: torch.randn(shape, generator=g) * 1e30,
         'zero_rows': lambda: torch.randn(shape, generator=g) * (torch.arange(m) % 2).view(m, 1)}[kind]()
    Y = orthogonalize(G, coefficients, dtype=dtype, method=method, precondition=pre)
    assert Y.shape == G.shape and torch.isfinite(Y).all()
    if kind == 'zero': assert (Y == 0).all()
    s = torch.linalg.svdvals(Y.double())
    assert float(s.max()) <= 3.0, float(s.max())   # every accepted schedule keeps singular values bounded (MAX_GAIN)

@pytest.mark.parametrize('shape', [(16, 64), (64, 16), (3, 24, 96), (2, 2, 8, 40)])
@pytest.mark.parametrize('coefficients', ['polar_express', 'jordan', 'cubic'])
def test_gram_is_the_standard_polynomial_in_float64(shape, coefficients):
    G = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for pre in (None, 'aol'):
        a = orthogonalize(G, coefficients, dtype=torch.float64, method='gram', precondition=pre)
        b = orthogonalize(G, coefficients, dtype=torch.float64, method='standard', precondition=pre)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)

def test_muon_update_same_within_float32_tolerance():
    "One Muon step with Gram NS equals the step with standard NS to float32's tolerance (relative Frobenius 1e-4)"
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(64, 192), torch.nn.GELU(), torch.nn.Linear(192, 64), torch.nn.Linear(64, 8)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    x = torch.randn(32, 64)
    for net, method in zip(nets, ('gram', 'standard')):
        opt = Muon(net, lr=0.02, ns_method=method, ns_dtype=torch.float32)
        for _ in range(3): opt.zero_grad(); net(x).square().mean().backward(); opt.step()
    for (n, a), b in zip(nets[0].named_parameters(), nets[1].parameters()):
        assert float((a - b).norm() / b.norm()) < 1e-4, n

def test_cost_model_and_choice():
    pe = resolve_schedule('polar_express').coefficients
    for m, n in [(768, 3072), (3072, 768), (768, 2304)]:
        assert ns_products(m, n, pe, 'gram', restart_steps('float32', 5)) < 0.75 * ns_products(m, n, pe)
        assert ns_method_for((m, n), resolve_schedule('polar_express'), torch.float32) == 'gram'
    assert ns_method_for((768, 768), resolve_schedule('polar_express'), torch.float32) == 'standard'
    assert not gram_pays(768, 3072, pe, 'bfloat16')   # 16-bit: measured less accurate, never automatic

def test_aol_bound_and_reuse():
    X = matrix_with_spectrum('power_law', 40, 120, 0)
    X = X / X.norm()
    Xs, A = aol_start(TORCH, X)
    assert float(torch.linalg.matrix_norm(Xs, 2)) <= 1 + 1e-12
    torch.testing.assert_close(A, Xs @ Xs.mT)

def test_options_validated_everywhere():
    with pytest.raises(ConfigError, match="'method'"): orthogonalize(torch.randn(4, 8), method='fast')
    with pytest.raises(ConfigError, match="'precondition'"): orthogonalize(torch.randn(4, 8), precondition='turbo')
    with pytest.raises(ConfigError, match="'ns_method'"): Muon([torch.nn.Parameter(torch.randn(4, 8))], ns_method=1)
    with pytest.raises(ConfigError, match="'ns_precondition'"): Muon([torch.nn.Parameter(torch.randn(4, 8))], ns_precondition='aoll')
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Linear(256, 64), torch.nn.Linear(64, 64), torch.nn.Linear(64, 4))
    assert 'gram on 2 matrices, standard on 1 matrices' in repr(Muon(net, ns_dtype=torch.float32))
    assert Muon(net, ns_method='standard', ns_dtype=torch.float32).ns_plan() == {'standard': 3}

@pytest.mark.keras
@pytest.mark.parametrize('method, pre', [('gram', None), ('standard', 'aol'), ('gram', 'aol')])
def test_keras_muon_matches_torch_and_round_trips(method, pre):
    "The Keras Muon with the same NS options gives the torch Muon's weights; the options survive get_config and the builder"
    import keras
    from dl_optim.keras_muon import Muon as KerasMuon
    from dl_optim.optimizers import optimizer_builder
    rng = np.random.default_rng(0); K0 = rng.standard_normal((24, 80)).astype('float32')
    gs = [rng.standard_normal((24, 80)).astype('float32') for _ in range(3)]
    kv = keras.Variable(K0.copy(), name='w')
    ko = KerasMuon(learning_rate=0.02, ns_method=method, ns_precondition=pre, ns_steps=4, ns_dtype='float32', head_names=['zzz'])
    for g in gs: ko.apply_gradients([(keras.ops.convert_to_tensor(g), kv)])
    W = torch.nn.Parameter(torch.from_numpy(K0.T.copy()))   # Keras kernels are (in, out)
    to = Muon([{'params': [W], 'use_muon': True}], lr=0.02, ns_method=method, ns_precondition=pre, ns_steps=4, ns_dtype=torch.float32)
    for g in gs: W.grad = torch.from_numpy(g.T.copy()); to.step()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kv), W.detach().numpy().T, atol=1e-5)
    back = KerasMuon.from_config(ko.get_config())
    assert (back.ns_method, back.ns_precondition, back.ns_steps) == (method, pre, 4)
    built = optimizer_builder({'type': 'muon', 'ns_method': method, 'ns_precondition': pre, 'ns_steps': 4}, 0.02)
    assert (built.ns_method, built.ns_precondition) == (method, pre)
    with pytest.raises(ConfigError, match="'ns_precondition'"): optimizer_builder({'type': 'muon', 'ns_precondition': 'AOL2'}, 0.02)

def _dist_gram(rank, world, tmp):
    from test_distributed import Net, loss_of, reference, KW, STEPS
    from dl_optim.distributed import DistMuon
    kw = {**KW, 'ns_method': 'gram'}
    torch.manual_seed(0)
    model = Net(); opt = DistMuon(model, **kw)
    for step in range(STEPS):
        opt.zero_grad(); loss_of(model, rank, step).backward(); opt.step()
    ref, _ = reference(world, STEPS, make=lambda m: Muon(m, **kw))
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-4, msg=lambda m: f'{n}: {m}')

@pytest.mark.distributed
def test_dist_muon_with_gram_equals_single_process():
    from test_distributed import _run
    _run(_dist_gram, 2)
