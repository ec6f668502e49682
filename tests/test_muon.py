"Muon for PyTorch: routing, parity, shapes, ecosystem (schedulers, state_dict, compile), bad input"
import copy, math
import pytest
import torch
from torch import nn
from hypothesis import given, settings, strategies as st
from dl_optim.config import ConfigError
from dl_optim.muon import Muon, MomentumWarmup, muon_momentum

def kj_reference(W0, grads, lr=0.02, mu=0.95, wd=0.0, nesterov=True):
    "Keller Jordan's Muon in float64 (EMA momentum, lerp Nesterov, NS5 Jordan, sqrt(max(1, out/in)))"
    W, B = W0.double().clone(), torch.zeros_like(W0, dtype=torch.float64)
    for g in grads:
        g = g.double(); B = mu * B + (1 - mu) * g
        U = (1 - mu) * g + mu * B if nesterov else B
        M = U.reshape(U.size(0), -1)
        X = M.T if M.size(0) > M.size(1) else M
        X = X / (X.norm() + 1e-7)
        for _ in range(5):
            A = X @ X.T; X = 3.4445 * X + (-4.7750 * A + 2.0315 * A @ A) @ X
        X = X.T if M.size(0) > M.size(1) else X
        W = W * (1 - lr * wd) - lr * max(1, M.size(0) / M.size(1)) ** 0.5 * X.reshape(W.shape)
    return W

@settings(max_examples=25, deadline=None)
@given(st.sampled_from([(48, 32), (32, 48), (16, 4, 3, 3), (20, 20)]), st.booleans(), st.floats(0, 0.1), st.integers(0, 999))
def test_matches_keller_jordan_fp64(shape, nesterov, wd, seed):
    g = torch.Generator().manual_seed(seed)
    W = nn.Parameter(torch.randn(*shape, generator=g))
    grads = [torch.randn(*shape, generator=g) for _ in range(3)]
    W0 = W.detach().clone()
    opt = Muon([{'params': [W], 'use_muon': True}], coefficients='jordan', ns_dtype=torch.float32, nesterov=nesterov,
               weight_decay=wd, adjust_lr='original')
    for gr in grads: W.grad = gr.clone(); opt.step()
    ref = kj_reference(W0, grads, wd=wd, nesterov=nesterov)
    assert ((W.double() - ref).norm() / (ref - W0.double()).norm()) < 1e-4

def test_matches_torch_optim_muon_in_bf16_tolerance():
    torch.manual_seed(0)
    W0 = torch.randn(64, 32)
    grads = [torch.randn(64, 32) for _ in range(5)]
    for adjust in ('original', 'match_rms_adamw'):
        W1, W2 = nn.Parameter(W0.clone()), nn.Parameter(W0.clone())
        a = Muon([{'params': [W1], 'use_muon': True}], coefficients='jordan', ns_dtype=torch.float32, weight_decay=0.1, adjust_lr=adjust)
        b = torch.optim.Muon([W2], lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust)
        for g in grads: W1.grad, W2.grad = g.clone(), g.clone(); a.step(); b.step()
        assert ((W1 - W2).norm() / (W2 - W0).norm()) < 0.03

class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.conv = nn.Embedding(50, 16), nn.Conv2d(1, 8, 3)
        self.fc1, self.fc2, self.norm, self.out = nn.Linear(16, 32), nn.Linear(32, 16), nn.LayerNorm(16), nn.Linear(16, 5)
    def loss(self, x, idx):
        h = self.norm(self.fc2(torch.relu(self.fc1(x + self.emb(idx)))))
        return self.out(h).square().mean() + self.conv(x[:, None, :, None].expand(-1, 1, 16, 3)).square().mean()

def test_issue_routing_example():
    rep = Muon(Mixed()).routing_report()
    assert sorted(r.name for r in rep if r.route == 'muon') == ['conv.weight', 'fc1.weight', 'fc2.weight']
    assert {r.name: r.reason for r in rep}['out.weight'] == 'output head (last linear layer)'
    assert all(set(row) == {'name', 'shape', 'route', 'reason', 'view', 'by_shape'} for row in rep.rows())
    assert 'conv.weight' in str(rep)

def test_tied_head_follows_embedding():
    m = nn.ModuleDict(dict(wte=nn.Embedding(30, 8), hidden=nn.Linear(8, 8), lm_head=nn.Linear(8, 30, bias=False)))
    m.lm_head.weight = m.wte.weight
    rep = Muon(m).routing_report()
    assert [(r.name, r.route) for r in rep if r.shape == (30, 8)] == [('wte.weight (= lm_head.weight)', 'adamw')]

def test_conv_lr_scale_uses_flattened_shape():
    # Conv2d(4 -> 64, 3x3): flattened (64, 36) -> scale sqrt(64/36); the kernel dims must not enter it
    W = nn.Parameter(torch.randn(64, 4, 3, 3))
    opt = Muon([W], ns_dtype=torch.float32, coefficients='svd', lr=0.1)
    W.grad = torch.randn_like(W); W0 = W.detach().clone(); opt.step()
    step = (W - W0).reshape(64, 36)
    s = torch.linalg.svdvals(step)
    assert torch.allclose(s, torch.full_like(s, 0.1 * math.sqrt(64 / 36)), rtol=1e-4)

def test_moe_stack_orthogonalized_per_expert():
    W = nn.Parameter(torch.randn(4, 24, 16))
    opt = Muon([W], ns_dtype=torch.float32, coefficients='svd', lr=1.0, adjust_lr=None)
    W.grad = torch.randn_like(W); W0 = W.detach().clone(); opt.step()
    for e in range(4):
        s = torch.linalg.svdvals(W[e] - W0[e])
        assert torch.allclose(s, torch.ones_like(s), atol=1e-4)

def test_same_shape_batched_equals_one_by_one():
    torch.manual_seed(0)
    ps = [nn.Parameter(torch.randn(32, 16)) for _ in range(3)]
    qs = [nn.Parameter(p.detach().clone()) for p in ps]
    a = Muon(ps, ns_dtype=torch.float32)
    bs = [Muon([q], ns_dtype=torch.float32) for q in qs]
    for _ in range(3):
        for p, q in zip(ps, qs): p.grad = torch.randn_like(p); q.grad = p.grad.clone()
        a.step(); [b.step() for b in bs]
    for p, q in zip(ps, qs): torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)

def test_grad_never_modified_and_missing_grads_skipped():
    m = Mixed(); opt = Muon(m)
    x, idx = torch.randn(3, 16), torch.randint(0, 50, (3,))
    m.loss(x, idx).backward()
    m.fc2.weight.grad = None
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    before = m.fc2.weight.detach().clone()
    opt.step()
    assert all(torch.equal(grads[n], p.grad) for n, p in m.named_parameters() if p.grad is not None)
    assert torch.equal(before, m.fc2.weight) and m.fc2.weight not in opt.state

def test_state_dict_exact_continuation():
    torch.manual_seed(3)
    m1 = Mixed(); m2 = copy.deepcopy(m1)
    o1 = Muon(m1, weight_decay=0.05, adam_weight_decay=0.05, cautious_weight_decay=True)
    data = [(torch.randn(3, 16), torch.randint(0, 50, (3,))) for _ in range(6)]
    for x, i in data[:3]: o1.zero_grad(); m1.loss(x, i).backward(); o1.step()
    m2.load_state_dict(m1.state_dict())
    o2 = Muon(m2, weight_decay=0.05, adam_weight_decay=0.05, cautious_weight_decay=True)
    o2.load_state_dict(torch.load(_roundtrip(o1.state_dict()), weights_only=True))
    for x, i in data[3:]:
        for m, o in ((m1, o1), (m2, o2)): o.zero_grad(); m.loss(x, i).backward(); o.step()
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))

def _roundtrip(obj):
    import io
    buf = io.BytesIO(); torch.save(obj, buf); buf.seek(0); return buf

def test_schedulers_scale_every_group():
    m = Mixed(); opt = Muon(m, lr=0.02, adam_lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(5): opt.step(); sched.step()
    lrs = {g['use_muon']: g['lr'] for g in opt.param_groups}
    assert lrs[True] / 0.02 == pytest.approx(lrs[False] / 1e-3) == pytest.approx(0.5)

def test_momentum_warmup():
    opt = Muon(Mixed()); mw = MomentumWarmup(opt, warmup_steps=10)
    assert [g['momentum'] for g in opt.param_groups if g['use_muon']] == [0.85]
    for _ in range(20): mw.step()
    assert [g['momentum'] for g in opt.param_groups if g['use_muon']] == [pytest.approx(0.95)]
    assert muon_momentum(150) == pytest.approx(0.9)
    with pytest.raises(ConfigError): MomentumWarmup(opt, start=1.5)

def test_bf16_params():
    W = nn.Parameter(torch.randn(16, 8, dtype=torch.bfloat16)); b = nn.Parameter(torch.zeros(8, dtype=torch.bfloat16))
    opt = Muon([W, b])
    W.grad, b.grad = torch.randn_like(W), torch.randn_like(b)
    opt.step()
    assert W.dtype == b.dtype == torch.bfloat16 and torch.isfinite(W).all()

def test_gradient_accumulation_equals_big_batch():
    torch.manual_seed(0)
    m1 = Mixed(); m2 = copy.deepcopy(m1)
    o1, o2 = Muon(m1, ns_dtype=torch.float32), Muon(m2, ns_dtype=torch.float32)
    x, i = torch.randn(4, 16), torch.randint(0, 50, (4,))
    m1.loss(x, i).backward(); o1.step()
    (m2.loss(x[:2], i[:2]) / 2).backward(); (m2.loss(x[2:], i[2:]) / 2).backward(); o2.step()
    # the conv loss is a mean over the batch and the head loss too, so halves add up to the full gradient
    for a, b in zip(m1.parameters(), m2.parameters()): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

def test_bad_input():
    m = Mixed()
    with pytest.raises(ConfigError, match="'lr'"): Muon(m, lr=-1)
    with pytest.raises(ConfigError, match="'momentum'"): Muon(m, momentum=-0.1)
    with pytest.raises(ConfigError, match="'adam_betas'"): Muon(m, adam_betas=(0.9, 1.0))
    with pytest.raises(ConfigError, match="'nesterov'"): Muon(m, nesterov='True')
    with pytest.raises(ConfigError, match="'ns_dtype'"): Muon(m, ns_dtype='bf16')
    with pytest.raises(ConfigError, match="did you mean 'weight_decay'"): Muon([{'params': m.parameters(), 'weight_decy': 0.1}])
    with pytest.raises(ValueError, match='sparse'): Muon([torch.randn(4, 4).to_sparse().requires_grad_()])
    with pytest.raises(ValueError, match='complex'): Muon([nn.Parameter(torch.randn(4, 4, dtype=torch.complex64))])
    with pytest.raises(ValueError, match='more than one group'):
        Muon([{'params': [m.fc1.weight]}, {'params': [m.fc1.weight]}])
    with pytest.raises(TypeError): Muon(m.fc1.weight)

def test_nan_gradient_documented_behaviour():
    W, b = nn.Parameter(torch.randn(8, 8)), nn.Parameter(torch.zeros(8))
    opt = Muon([W, b], ns_dtype=torch.float32)
    W.grad = torch.randn(8, 8); W.grad[0, 0] = float('nan')
    b.grad = torch.randn(8); b.grad[0] = float('nan')
    opt.step()
    assert W.isnan().all() and b[0].isnan() and not b[1:].isnan().any()

def test_compiled_step_no_recompile_when_lr_changes():
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset(); counters.clear()
    torch.manual_seed(0)
    m1 = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)); m2 = copy.deepcopy(m1)
    o1 = Muon(m1, lr=torch.tensor(0.02), adam_lr=torch.tensor(1e-3), ns_dtype=torch.float32)
    o2 = Muon(m2, lr=torch.tensor(0.02), adam_lr=torch.tensor(1e-3), ns_dtype=torch.float32)
    s1 = torch.optim.lr_scheduler.LambdaLR(o1, lambda s: 1 / (1 + s)); s2 = torch.optim.lr_scheduler.LambdaLR(o2, lambda s: 1 / (1 + s))
    compiled = torch.compile(o1.step)
    for _ in range(6):
        x = torch.randn(8, 16)
        for m, o in ((m1, o1), (m2, o2)): o.zero_grad(); m(x).square().mean().backward()
        compiled(); o2.step(); s1.step(); s2.step()
    assert counters['stats']['unique_graphs'] <= 2   # first step (state created) and the steady state; no LR recompiles
    for a, b in zip(m1.parameters(), m2.parameters()): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
