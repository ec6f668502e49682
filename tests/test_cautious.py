"Cautious updates (torch side): the sign property, AdamW parity, Muon's cautious AdamW side, state round trips"
import copy
import pytest
import torch
from hypothesis import given, settings, strategies as st
from dl_optim.cautious import cautious, AdamW
from dl_optim.config import ConfigError
from dl_optim.muon import Muon

@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 10**6), bias=st.floats(-1, 1))
def test_cautious_never_keeps_a_disagreeing_component(n, seed, bias):
    g = torch.Generator().manual_seed(seed)
    grad, u = torch.randn(n, generator=g), torch.randn(n, generator=g)
    u = u + bias * grad
    c = cautious(u, grad)
    assert bool(((c * grad) >= 0).all())
    kept = (u * grad > 0)
    assert torch.equal(c != 0, kept & (u != 0))
    if kept.any(): torch.testing.assert_close(c[kept], u[kept] * n / int(kept.sum()))

def test_cautious_adamw_steps_never_go_against_the_gradient():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(500))
    opt = AdamW([p], lr=0.1, weight_decay=0.0)
    for t in range(12):
        g = torch.randn(500) if t % 3 else -p.grad if p.grad is not None else torch.randn(500)
        p.grad = g.clone(); before = p.detach().clone(); opt.step()
        assert bool(((before - p.detach()) * g >= -1e-12).all())

def test_plain_adamw_equals_torch_and_state_dict_round_trip():
    torch.manual_seed(1)
    a, b = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3); b.load_state_dict(a.state_dict())
    ours, ref = AdamW(a.parameters(), lr=3e-2, weight_decay=0.1, caution=False), torch.optim.AdamW(b.parameters(), lr=3e-2, weight_decay=0.1)
    for _ in range(6):
        x = torch.randn(8, 6)
        for m, o in ((a, ours), (b, ref)): o.zero_grad(); m(x).square().mean().backward(); o.step()
    for pa, pb in zip(a.parameters(), b.parameters()): torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    c = copy.deepcopy(a); oc = AdamW(c.parameters(), lr=3e-2, weight_decay=0.1, caution=False); oc.load_state_dict(copy.deepcopy(ours.state_dict()))
    x = torch.randn(8, 6)
    for m, o in ((a, ours), (c, oc)): o.zero_grad(); m(x).square().mean().backward(); o.step()
    for pa, pc in zip(a.parameters(), c.parameters()): assert torch.equal(pa, pc)

@pytest.mark.parametrize('kw,fragment', [(dict(lr=-1), 'lr'), (dict(betas=(0.9, 1.0)), 'betas'), (dict(caution='yes'), 'caution'),
                                         (dict(eps=0), 'eps'), (dict(weight_decay=-0.1), 'weight_decay')])
def test_adamw_bad_arguments(kw, fragment):
    with pytest.raises(ConfigError, match=fragment): AdamW([torch.nn.Parameter(torch.zeros(2))], **kw)

def test_muon_caution_routes_adamw_side_through_adamw_step():
    "Muon(caution=True): its AdamW-side parameters follow dl_optim's cautious AdamW exactly; caution=False keeps torch's AdamW"
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Flatten(), torch.nn.Linear(16, 16), torch.nn.Linear(16, 20))
    twin = copy.deepcopy(net)
    mu = Muon(net, lr=0.0, caution=True, adam_lr=1e-2, adam_weight_decay=0.01, adam_eps=1e-8)   # Muon side frozen: both nets see the same hidden weights
    adam_params = [p for g in mu.param_groups if not g['use_muon'] for p in g['params']]
    idx = {id(p): i for i, p in enumerate(net.parameters())}
    twin_params = list(twin.parameters())
    ref = AdamW([twin_params[idx[id(p)]] for p in adam_params], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, caution=True)
    x, y = torch.randint(0, 20, (32, 2)), torch.randint(0, 20, (32,))
    for _ in range(5):
        for m, o in ((net, mu), (twin, ref)):
            o.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward()
        mu.step(); ref.step()
    for p in adam_params: torch.testing.assert_close(p, twin_params[idx[id(p)]])
    sd = mu.state_dict(); mu2 = Muon(copy.deepcopy(net), caution=True); mu2.load_state_dict(sd)
    assert all(g['caution'] for g in mu2.param_groups if not g['use_muon'])
