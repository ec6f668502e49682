"GrokFast and OrthoGrad (torch): formulas, hooks, checkpoint round trips, argument checks, a tiny grokking run"
import copy
import pytest
import torch
from hypothesis import given, settings, strategies as st
from dl_optim.config import ConfigError
from dl_optim.grokking import GrokFast, OrthoGrad, attach_gradient_filters, orthograd
from dl_optim.experiments.grokking import grokking_run, GROKKING_METHODS, grokking_table

@settings(max_examples=100, deadline=None)
@given(shape=st.sampled_from([(7,), (3, 5), (2, 3, 4)]), seed=st.integers(0, 10**6))
def test_orthograd_is_orthogonal_and_keeps_the_norm(shape, seed):
    g = torch.Generator().manual_seed(seed)
    w, grad = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)
    o = orthograd(w, grad)
    assert abs(float((o * w).sum())) < 1e-10 * float(w.norm() * grad.norm())
    torch.testing.assert_close(o.norm(), grad.norm())

def test_orthograd_through_an_optimizer_per_parameter():
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 3)
    opt = torch.optim.SGD(net.parameters(), lr=1.0); attach_gradient_filters(opt, OrthoGrad())
    net(torch.randn(4, 5)).square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]; before = [p.detach().clone() for p in net.parameters()]
    opt.step()
    for b, p, g in zip(before, net.parameters(), grads):
        step = b - p.detach()
        assert abs(float((step * b).sum())) < 1e-5
        torch.testing.assert_close(step.norm(), g.norm())

def test_grokfast_equals_its_formula_and_warmup():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=1.0); attach_gradient_filters(opt, GrokFast(alpha=0.9, lamb=5.0, warmup_steps=2))
    grads = [torch.tensor([1.0, -1.0, 2.0]), torch.tensor([0.5, 0.5, 0.5]), torch.tensor([-2.0, 1.0, 0.0]), torch.tensor([1.0, 1.0, 1.0])]
    ema = None
    for t, g in enumerate(grads, 1):
        ema = g.clone() if ema is None else 0.9 * ema + 0.1 * g
        expect = g + 5.0 * ema if t > 2 else g
        before = p.detach().clone(); p.grad = g.clone(); opt.step()
        torch.testing.assert_close(before - p.detach(), expect)

def test_checkpoint_round_trip_with_adamw():
    "optimizer.state_dict() carries the GrokFast buffers; a resumed run continues bit for bit"
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2); attach_gradient_filters(opt, OrthoGrad(), GrokFast())
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    def step(m, o): o.zero_grad(); (m(x) - y).square().mean().backward(); o.step()
    for _ in range(3): step(net, opt)
    sd = copy.deepcopy(opt.state_dict())
    assert len(sd['gradient_filters']) == 2 and len(sd['gradient_filters'][1]['ema']) == 4
    net2 = copy.deepcopy(net)
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-2); attach_gradient_filters(opt2, OrthoGrad(), GrokFast())
    opt2.load_state_dict(sd)
    for _ in range(3): step(net, opt); step(net2, opt2)
    for a, b in zip(net.parameters(), net2.parameters()): assert torch.equal(a, b)
    opt3 = torch.optim.AdamW(copy.deepcopy(net).parameters(), lr=1e-2); attach_gradient_filters(opt3, GrokFast())
    with pytest.raises(ValueError, match='filter'): opt3.load_state_dict(sd)

@pytest.mark.parametrize('kw,fragment', [(dict(alpha=1.0), 'alpha'), (dict(alpha=-0.1), 'alpha'), (dict(lamb=-1), 'lamb'),
                                         (dict(warmup_steps=1.5), 'warmup_steps'), (dict(lamb='2'), 'lamb')])
def test_grokfast_bad_arguments(kw, fragment):
    with pytest.raises(ConfigError, match=fragment): GrokFast(**kw)

def test_attach_rejects_non_filters():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError): attach_gradient_filters(opt)
    with pytest.raises(TypeError): attach_gradient_filters(opt, 'grokfast')

def test_tiny_grokking_run_every_method():
    "A small modular-addition run trains on every method (training accuracy rises); the table renders"
    results = [grokking_run(m, seed=0, p=13, max_steps=150, eval_every=50) for m in GROKKING_METHODS]
    for r in results: assert r['train_acc'][-1] > 0.5, r['method']
    table = grokking_table(results)
    assert all(m in table for m in GROKKING_METHODS)
    with pytest.raises(ConfigError): grokking_run('sgd', max_steps=1)
