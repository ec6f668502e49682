"""Nothing silent, round 2: one fuzz test per class of defect (checkpoints, scale, dtypes, groups, hooks, QK-clip,
aliases, CLI), each trying inputs of the class, not the one example that found it. A checkpoint with a wrong shape is
loaded and stepped in a subprocess too, so that a regression that reached torch's fused kernel would show up as a
crash of that process, not of the test run."""
import copy, json, os, subprocess, sys, textwrap, warnings
import numpy as np
import pytest
import torch
from torch import nn
from hypothesis import given, settings, HealthCheck, strategies as st
from dl_optim.config import ConfigError
from dl_optim.muon import Muon, MomentumWarmup
from dl_optim.normuon import NorMuon
from dl_optim.cautious import AdamW
from dl_optim.distributed import DistAdamW, DistMuon
from dl_optim.newton_schulz import orthogonalize
from dl_optim.step_hooks import StepHook, attach_step_hooks
from dl_optim.grokking import GrokFast, OrthoGrad, attach_gradient_filters
from dl_optim.muonclip import QKClip, QKBlock, attach_qk_clip, qk_block
from test_distributed import _run

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

class Net(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.emb, self.fc, self.norm, self.head = nn.Embedding(20, 8), nn.Linear(8, width), nn.LayerNorm(width), nn.Linear(width, 20)
        self.scale = nn.Parameter(torch.tensor(1.0))      # a 0-D parameter
    def forward(self, x): return self.head(self.norm(torch.tanh(self.fc(self.emb(x))))) * self.scale

def stepped(make, steps=2, width=16):
    torch.manual_seed(0); m = Net(width); opt = make(m)
    for _ in range(steps):
        opt.zero_grad(); nn.functional.cross_entropy(m(torch.arange(10) % 20), torch.arange(10)).backward(); opt.step()
    return m, opt

MAKERS = {
    'Muon': lambda m: Muon(m, ns_dtype=torch.float32),
    'NorMuon': lambda m: NorMuon(m, ns_dtype=torch.float32),
    'AdamW': lambda m: AdamW(m.parameters()),
    'DistAdamW': lambda m: DistAdamW(m.parameters()),
    'DistMuon': lambda m: DistMuon(m, ns_dtype=torch.float32),
}

def snapshot(opt): return copy.deepcopy(opt.state_dict())

def same_state(a, b):
    assert a['state'].keys() == b['state'].keys()
    for k in a['state']:
        for n, t in a['state'][k].items(): assert torch.equal(t, b['state'][k][n]), (k, n)

# ---- checkpoints: every tensor of the wrong shape, dtype or kind is refused before a kernel sees it --------------
@FUZZ
@given(name=st.sampled_from(sorted(MAKERS)), data=st.data())
def test_fuzz_checkpoint_tensors(name, data):
    m, opt = stepped(MAKERS[name])
    sd = snapshot(opt)
    idx = data.draw(st.sampled_from(sorted(sd['state'])))
    key = data.draw(st.sampled_from(sorted(sd['state'][idx])))
    good = sd['state'][idx][key]
    kind = data.draw(st.sampled_from(['shape', 'int', 'complex', 'list', 'drop', 'extra', 'nan_step']))
    entry = dict(sd['state'][idx])
    if kind == 'shape':
        shape = data.draw(st.lists(st.integers(0, 40), max_size=3).filter(lambda s: tuple(s) != tuple(good.shape)))
        entry[key] = torch.randn(*shape) if shape else torch.randn(())
    elif kind == 'int': entry[key] = torch.ones(good.shape, dtype=torch.int64) if key != 'step' else torch.tensor(True)
    elif kind == 'complex': entry[key] = torch.ones(good.shape, dtype=torch.complex64)
    elif kind == 'list': entry[key] = good.tolist() if good.ndim else 'one'
    elif kind == 'drop':
        if len(entry) == 1 or key not in ('step', 'exp_avg', 'exp_avg_sq', 'momentum_buffer'): return
        del entry[key]
    elif kind == 'extra': entry['max_exp_avg_sq'] = good.clone()
    else:
        if key != 'step': return
        entry[key] = torch.tensor(float('nan'))
    bad = {**sd, 'state': {**sd['state'], idx: entry}}
    before = snapshot(opt)
    with pytest.raises(ConfigError): opt.load_state_dict(bad)
    same_state(before, opt.state_dict())            # nothing was loaded

@FUZZ
@given(name=st.sampled_from(sorted(MAKERS)), data=st.data())
def test_fuzz_checkpoint_groups(name, data):
    "Saved hyper-parameters go through the constructor's validators, at load time"
    m, opt = stepped(MAKERS[name])
    sd = snapshot(opt)
    gi = data.draw(st.integers(0, len(sd['param_groups']) - 1))
    group = sd['param_groups'][gi]
    checked = ('lr', 'betas', 'eps', 'weight_decay', 'momentum', 'ns_steps', 'caution', 'nesterov', 'beta2',
               'normuon_eps', 'ns_dtype', 'ns_method', 'ns_precondition', 'adjust_lr', 'coefficients',
               'cautious_weight_decay', 'initial_lr')
    key = data.draw(st.sampled_from(sorted(k for k in group if k in checked)))
    value = data.draw(st.sampled_from(['fast', -1.0, float('nan'), None, [0.9], 1e40, 'x', True]))
    # None is a real setting of these ('off' or 'the device default'); True a number nowhere
    if value is None and key in ('ns_dtype', 'ns_precondition', 'adjust_lr'): return
    if value is True and key in ('caution', 'nesterov', 'cautious_weight_decay'): return
    bad = {**sd, 'param_groups': [dict(g) for g in sd['param_groups']]}
    bad['param_groups'][gi][key] = value
    with pytest.raises(ConfigError, match=f'param_groups\\[{gi}\\].{key}'): opt.load_state_dict(bad)
    # a whole checkpoint of another shape of model (a narrower one) is refused too
    narrow = stepped(MAKERS[name], width=12)[1].state_dict()
    with pytest.raises(ConfigError, match='shape'): opt.load_state_dict(narrow)

WRONG_SHAPES = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_checkpoints_and_silent import MAKERS, stepped
from dl_optim.config import ConfigError
g = torch.Generator().manual_seed(0)
tries = 0
for name in sorted(MAKERS):
    m, opt = stepped(MAKERS[name])
    sd = opt.state_dict()
    for idx in sd['state']:
        for key, t in sd['state'][idx].items():
            for shape in ((3,), (1,) + tuple(t.shape), tuple(s // 2 for s in t.shape), (4096,) * max(1, t.ndim)):
                if tuple(shape) == tuple(t.shape): continue
                bad = {{**sd, 'state': {{**sd['state'], idx: {{**sd['state'][idx], key: torch.zeros(shape)}}}}}}
                tries += 1
                try: opt.load_state_dict(bad)
                except ConfigError: pass
                else: raise SystemExit(f'{{name}}: state[{{idx}}].{{key}} of shape {{shape}} was loaded')
                opt.zero_grad()
                m(torch.arange(10) % 20).sum().backward(); opt.step()      # the optimizer still steps on its own state
print(tries)
"""

def test_wrong_shape_checkpoints_in_a_subprocess():
    "Truncated, narrower, broadcastable and huge moments: refused, and the process never crashes"
    tests = os.path.dirname(__file__)
    r = subprocess.run([sys.executable, '-c', WRONG_SHAPES.format(tests=tests)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, 'DL_OPTIM_CPU_FAST_BF16': '0'})
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-1000:]
    assert int(r.stdout.split()[-1]) > 100

def test_cross_loading_fills_or_refuses():
    "Muon → NorMuon loads with the variant's defaults; NorMuon → Muon is refused; torch AdamW → DistAdamW loads"
    m, plain = stepped(MAKERS['Muon'])
    nor = NorMuon(m, ns_dtype=torch.float32, beta2=0.9)
    nor.load_state_dict(plain.state_dict())
    assert all(g['beta2'] == 0.9 for g in nor.param_groups if g['use_muon'])      # the optimizer's own value
    nor.zero_grad(); m(torch.arange(10) % 20).sum().backward(); nor.step()         # no KeyError at step time
    with pytest.raises(ConfigError, match="'normuon'"): Muon(m).load_state_dict(nor.state_dict())
    ref = torch.optim.AdamW(m.parameters()); m(torch.arange(10) % 20).sum().backward(); ref.step()
    d = DistAdamW(m.parameters(), caution=True); d.load_state_dict(ref.state_dict()); d.step()
    assert d.param_groups[0]['caution'] is True
    hooked = torch.optim.SGD(m.parameters(), lr=0.1); attach_gradient_filters(hooked, GrokFast())
    with pytest.raises(ConfigError, match='attach them first'):
        Muon(m).load_state_dict({**plain.state_dict(), 'gradient_filters': [{'steps': 0, 'ema': {}}]})

@FUZZ
@given(st.sampled_from(['steps', 'ema']), st.sampled_from([None, -1, 'x', 1.5, {'a': torch.ones(1)}, {0: 'x'}, []]))
def test_fuzz_hook_and_warmup_state(key, value):
    gf = GrokFast()
    with pytest.raises(ConfigError): gf.load_state_dict({'steps': 0, 'ema': {}, key: value})
    with pytest.raises(ConfigError): OrthoGrad().load_state_dict({key: value})
    mw = MomentumWarmup(Muon(Net()))
    with pytest.raises(ConfigError): mw.load_state_dict({**mw.state_dict(), 'last_step': value})

# ---- scale: Newton–Schulz and the Muon family on gradients of any finite size ------------------------------------
@FUZZ
@given(exponent=st.integers(-2, 37), m=st.integers(2, 24), n=st.integers(2, 24), method=st.sampled_from(['standard', 'gram']),
       aol=st.booleans())
def test_fuzz_ns_scale(exponent, m, n, method, aol):
    G = torch.randn(m, n, generator=torch.Generator().manual_seed(m * 100 + n))
    kw = dict(dtype=torch.float32, method=method, precondition='aol' if aol else None)
    big, unit = orthogonalize(G * 10.0**exponent, **kw), orthogonalize(G, **kw)
    assert torch.isfinite(big).all() and big.abs().max() > 0.1
    torch.testing.assert_close(big, unit, atol=2e-3, rtol=0)

@pytest.mark.parametrize('cls', [Muon, NorMuon])
@pytest.mark.parametrize('scale', [1e20, 1e30, 3e37])
def test_huge_gradients_still_update(cls, scale):
    W = nn.Parameter(torch.randn(16, 32)); before = W.detach().clone()
    opt = cls([{'params': [W], 'use_muon': True}], lr=0.02)
    W.grad = torch.randn(16, 32) * scale; opt.step()
    delta = (W.detach() - before).abs().max()
    assert torch.isfinite(W).all() and delta > 1e-4, delta

@pytest.mark.parametrize('dtype', [torch.int8, torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128])
def test_non_float_input_refused(dtype):
    with pytest.raises(ConfigError, match='dtype'): orthogonalize(torch.ones(4, 6).to(dtype))

# ---- cautious AdamW on shards equals the single-process one -------------------------------------------------------
def _cautious_shards(rank, world, tmp):
    torch.manual_seed(0)
    model, ref = nn.Linear(64, 64), nn.Linear(64, 64)      # 4096-element weight: sharded state at world 2
    ref.load_state_dict(model.state_dict())
    opt, ref_opt = DistAdamW(model.parameters(), lr=1e-2, caution=True), AdamW(ref.parameters(), lr=1e-2, caution=True)
    assert model.weight in opt._adam_sharded
    for step in range(3):
        xs = [torch.randn(8, 64, generator=torch.Generator().manual_seed(10 * step + r)) for r in range(world)]
        opt.zero_grad(); model(xs[rank]).pow(2).mean().backward(); opt.step()
        ref_opt.zero_grad(); (sum(ref(x).pow(2).mean() for x in xs) / world).backward(); ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()): torch.testing.assert_close(p, q, rtol=0, atol=1e-6)

@pytest.mark.distributed
def test_cautious_dist_adamw_on_two_ranks_equals_one_process(): _run(_cautious_shards, 2)

# ---- param groups: honoured or refused, never replaced silently -------------------------------------------------
@FUZZ
@given(wd_ctor=st.sampled_from([0.0, 0.05, 0.1]), wd_groups=st.lists(st.sampled_from([0.0, 0.01, 0.1]), min_size=1, max_size=3),
       lr_in_group=st.booleans(), with_model=st.booleans())
def test_fuzz_param_groups(wd_ctor, wd_groups, lr_in_group, with_model):
    m = Net()
    params = [p for n, p in m.named_parameters() if n != 'scale']
    chunks = [params[i::len(wd_groups)] for i in range(len(wd_groups))]
    groups = [{'params': c, 'weight_decay': wd, **({'lr': 0.01} if lr_in_group else {})} for c, wd in zip(chunks, wd_groups)]
    groups = [g for g in groups if g['params']]
    kw = dict(model=m) if with_model else {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try: opt = Muon(groups, weight_decay=wd_ctor, **kw)
        except ConfigError as e:
            msg = str(e)
            assert ("every group sets its own" in msg and wd_ctor != 0.0) or ("'adam_lr'" in msg and lr_in_group), msg
            return
    assert wd_ctor == 0.0, 'a constructor weight_decay that every group overrides was accepted'
    for g in opt.param_groups:   # each tensor decays at its own group's rate, whichever route it took
        owner = next(ug for ug in groups if any(p is g['params'][0] for p in ug['params']))
        assert g['weight_decay'] == owner['weight_decay'], (g['use_muon'], g['weight_decay'], owner['weight_decay'])

def test_hugging_face_trainer_groups():
    "Trainer without model= passes two weight-decay groups: a constructor weight_decay they both override is refused"
    pytest.importorskip('accelerate')
    from transformers import Trainer, TrainingArguments, GPT2Config, GPT2LMHeadModel
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=32))
    import tempfile
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        args = TrainingArguments(d, report_to=[], use_cpu=True)               # weight_decay 0.0 (the default)
        t = Trainer(model=model, args=args, optimizer_cls_and_kwargs=(Muon, dict(weight_decay=0.1)))
        with pytest.raises(ConfigError, match='every group sets its own'): t.create_optimizer()
        args = TrainingArguments(d, report_to=[], use_cpu=True, weight_decay=0.1)
        t = Trainer(model=model, args=args, optimizer_cls_and_kwargs=(Muon, dict(lr=0.02)))
        opt = t.create_optimizer()
        assert {g['weight_decay'] for g in opt.param_groups if g['use_muon']} == {0.1}   # as TrainingArguments says

# ---- step hooks -------------------------------------------------------------------------------------------------
@FUZZ
@given(st.one_of(st.sampled_from(['state', 'param_groups', '', '1x', 'a b']), st.integers(), st.none()))
def test_fuzz_step_hook_keys(key):
    opt = torch.optim.SGD([nn.Parameter(torch.ones(2))], lr=0.1)
    with pytest.raises(ConfigError, match="'key'"): attach_step_hooks(opt, StepHook(), key=key)
    assert 'state' in opt.state_dict()

# ---- QK-clip ----------------------------------------------------------------------------------------------------
@FUZZ
@given(heads=st.integers(-2, 6), kv=st.integers(-1, 6), dim=st.integers(-17, 9), q0=st.integers(-3, 10**6), k0=st.integers(-3, 10**6),
       axis=st.integers(-1, 3))
def test_fuzz_qk_block(heads, kv, dim, q0, k0, axis):
    W = torch.ones(24, 24)
    try: b = QKBlock('x', W, W, heads, kv, dim, q_start=q0, k_start=k0, out_axis=axis)
    except ConfigError: return
    # accepted: every head's rows lie inside the tensor
    assert 0 <= b.q_start and b.q_start + b.num_heads * b.head_dim <= 24
    assert 0 <= b.k_start and b.k_start + b.num_kv_heads * b.head_dim <= 24 and b.num_heads % b.num_kv_heads == 0
    b.scale_query(b.num_heads - 1, 2.0); b.scale_key(b.num_kv_heads - 1, 0.5)

def test_qk_clip_bias_k_is_scaled():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True, add_bias_kv=True)
    with torch.no_grad(): mha.bias_k.mul_(20)          # the extra key dominates the logits
    x = torch.randn(2, 5, 16)
    probe = QKClip(mha, tau=None); mha(x, x, x); top = float(probe.max_logits.get('', probe.pending()[''] ).max()); probe.remove()
    clip = QKClip(mha, tau=top / 4); mha(x, x, x); clip.after_step()
    clip.remove(); check = QKClip(mha, tau=None)
    with torch.no_grad(): mha(x, x, x)
    assert float(check.pending()[''].max()) <= top / 4 * (1 + 1e-4)

def test_one_qk_clip_per_model_and_copies():
    mha = nn.MultiheadAttention(16, 2)
    opt = torch.optim.SGD(mha.parameters(), lr=0.1)
    clip = attach_qk_clip(opt, mha, tau=1.0)
    with pytest.raises(ConfigError, match='one clip per model'): QKClip(mha)
    with pytest.raises(ValueError, match="saved under 'qk_clip'"): attach_qk_clip(opt, nn.MultiheadAttention(16, 2))
    copy.deepcopy(mha)                                   # a copy carries no live clip: a new one attaches
    QKClip(copy.deepcopy(mha)).remove()
    clip.remove(); QKClip(mha).remove()                  # after remove(), another may attach
    with pytest.raises(ConfigError, match="'optimizer'"): attach_qk_clip(None, mha)
    assert getattr(mha, '_qk_clip', None) is None        # the refused call left no hooks behind
    for bad in (None, [p for p in mha.parameters()], 'x'):
        with pytest.raises(ConfigError): QKClip(bad)
    with pytest.raises(ConfigError, match="'blocks'"): QKClip(mha, blocks='x')

def test_qk_clip_evaluation_never_decides():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(2, 5, 16)
    clip = QKClip(mha, tau=1e-3, remeasure=False)
    with torch.no_grad(): mha(x, x, x)                   # evaluation only
    w = mha.in_proj_weight.detach().clone(); clip.after_step()
    assert torch.equal(w, mha.in_proj_weight) and clip.clipped == {} and clip.metrics()['qk_clip/max_logit'] != clip.metrics()['qk_clip/max_logit']
    mha(x, x, x); clip.after_step()                      # a training forward decides
    assert clip.clipped

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_qk_clip_keeps_gpt2_upcast_logits(dtype):
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32, reorder_and_upcast_attn=True,
                     attn_implementation='eager')
    torch.manual_seed(0); model = GPT2LMHeadModel(cfg).to(dtype).eval()
    x = torch.randint(0, 64, (2, 12))
    with torch.no_grad(): before = model(x).logits
    clip = QKClip(model, tau=None)
    with torch.no_grad(): during = model(x).logits
    assert torch.equal(before, during)
    assert clip.pending()
    clip.remove()

# ---- sparse gradients: a clear error from every optimizer and filter ---------------------------------------------
@pytest.mark.parametrize('make', [lambda ps: DistAdamW(ps), lambda ps: AdamW(ps), lambda ps: DistMuon(ps),
                                  lambda ps: torch.optim.SGD(ps, lr=0.1)])
def test_sparse_gradients(make):
    emb = nn.Embedding(10, 4, sparse=True)
    opt = make(list(emb.parameters()))
    if isinstance(opt, torch.optim.SGD): attach_gradient_filters(opt, GrokFast(), OrthoGrad())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises((RuntimeError, ValueError), match='sparse'): opt.step()

def test_filters_skip_empty_parameters():
    p, q = nn.Parameter(torch.zeros(0, 3)), nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p, q], lr=0.1); attach_gradient_filters(opt, OrthoGrad(), GrokFast())
    p.grad, q.grad = torch.zeros(0, 3), torch.ones(3); opt.step()
    assert torch.isfinite(q).all()

# ---- the CLI: bad input is exit 2 with a message naming the argument ---------------------------------------------
def _cli(*args, env=None):
    return subprocess.run(['dl-optim', *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})

@pytest.mark.parametrize('backend,says', [('nonsense', 'one of'), ('openvino', 'an installed backend')])
def test_cli_bad_keras_backend(backend, says):
    r = _cli('info', env={'KERAS_BACKEND': backend})
    assert r.returncode == 2 and 'KERAS_BACKEND' in r.stderr and says in r.stderr and 'Traceback' not in r.stderr, r.stderr

def test_cli_plot_duplicate_keys_and_outputs(tmp_path):
    cfg = tmp_path / 'c.json'
    cfg.write_text('{"type": "cosine_decay", "learning_rate": 0.1, "decay_steps": 10, "learning_rate": 0.2}')
    r = _cli('plot', 'lr', str(cfg), '-o', str(tmp_path / 'x.png'))
    assert r.returncode == 2 and "'learning_rate'" in r.stderr and 'twice' in r.stderr, r.stderr
    cfg.write_text('{"type": "constant_equal"}')
    r = _cli('plot', 'ds', str(cfg), '--outputs', '1000000', '-o', str(tmp_path / 'x.png'))
    assert r.returncode == 2 and '--outputs' in r.stderr, r.stderr

@pytest.mark.parametrize('content', [b'', b'{"prompt": ', bytes(range(256)), b'[1, 2]\n'])
def test_cli_sled_eval_bad_facts(tmp_path, content):
    f = tmp_path / 'facts.jsonl'; f.write_bytes(content)
    r = _cli('sled-eval', '--facts', str(f), '--out', str(tmp_path / 'out'))
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr

def test_grokfast_state_of_another_model():
    "Slow gradients of the wrong shape (another model's checkpoint) never broadcast into this one's gradients"
    p = nn.Parameter(torch.ones(3, 4)); opt = torch.optim.SGD([p], lr=0.1); gf = GrokFast()
    attach_gradient_filters(opt, gf)
    gf.load_state_dict({'steps': 1, 'ema': {0: torch.ones(1)}})
    p.grad = torch.ones(3, 4)
    with pytest.raises(ConfigError, match=r"'ema\[0\].shape' is \(1,\)"): opt.step()

def test_schedule_state_checked():
    from dl_optim.schedules import to_torch_scheduler
    p = nn.Parameter(torch.ones(2)); opt = torch.optim.SGD([p], lr=0.1)
    s = to_torch_scheduler({'type': 'cosine_decay', 'learning_rate': 0.1, 'decay_steps': 10}, opt)
    for key, bad in (('last_epoch', 'x'), ('last_epoch', -5), ('base_lrs', []), ('peak', float('nan'))):
        with pytest.raises(ConfigError, match=key): s.load_state_dict({**s.state_dict(), key: bad})

def test_orthogonalize_edges():
    "Empty matrices give empty results; a compute dtype that is not a float is refused"
    for shape in ((0, 4), (4, 0), (2, 0, 3)): assert orthogonalize(torch.zeros(shape)).shape == shape
    for dtype in (torch.int32, torch.bool, torch.complex64):
        with pytest.raises(ConfigError, match="'dtype'"): orthogonalize(torch.ones(4, 4), dtype=dtype)

def test_hook_state_count_checked():
    opt = torch.optim.SGD([nn.Parameter(torch.ones(2))], lr=0.1); attach_step_hooks(opt, StepHook())
    sd = opt.state_dict()
    for bad in ([{}, {}], {}, 'x'):
        with pytest.raises(ConfigError, match="'step_hooks'"): opt.load_state_dict({**sd, 'step_hooks': bad})
