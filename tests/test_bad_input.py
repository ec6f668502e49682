"""Nothing silent: every public builder, constructor and CLI subcommand answers bad input with a `ConfigError` that
names the key (or the documented exception type), never another exception and never silent acceptance; what it
accepts gives finite numbers from finite input. One regression test per class of defect follows the fuzz suite."""
import json, math, subprocess, sys, time
import numpy as np
import pytest
import torch
from hypothesis import given, settings, HealthCheck, strategies as st
from dl_optim.config import ConfigError, FLOAT32_MAX
from dl_optim.schedules import learning_rate_schedule_builder, schedule_values, SCHEDULE_SCHEMAS
from dl_optim.deep_supervision import deep_supervision_schedule_builder, DeepSupervisionSchedule, STRATEGIES
from dl_optim.sled import sled_builder, SledLogitsProcessor, SLED_SCHEMA
from dl_optim.muon import Muon, MomentumWarmup
from dl_optim.cautious import AdamW
from dl_optim.grokking import GrokFast, OrthoGrad, orthograd, grokfast_ema, attach_gradient_filters
from dl_optim.experiments.race import RaceConfig
from dl_optim.cli import main

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# junk of every kind a config file or a careless call can carry
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**400, 10**400), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=6), st.lists(st.floats(-10, 10), max_size=3), st.just({}), st.just(''), st.just('False'),
                 st.sampled_from([1e300, -1e300, 1e-300, 1e39, 2**64, -1, 0, 0.5, 1, 10]))

def fails_with_key(fn, key):
    "Call fn: fine, or a ConfigError naming `key`; anything else fails the test. Returns the result or None"
    try: return fn()
    except ConfigError as e:
        assert repr(key)[1:-1] in str(e), f'ConfigError does not name {key!r}: {e}'
        return None

# ---- fuzz: learning-rate schedules -------------------------------------------------------------------------------
BASE_SCHEDULES = {'cosine_decay': dict(learning_rate=1e-3, decay_steps=100), 'constant': dict(learning_rate=1e-3),
                  'exponential_decay': dict(learning_rate=1e-3, decay_steps=100, decay_rate=0.5),
                  'cosine_decay_restarts': dict(learning_rate=1e-3, decay_steps=100),
                  'wsd': dict(learning_rate=1e-3, stable_steps=50, decay_steps=100)}

@FUZZ
@given(st.sampled_from(sorted(BASE_SCHEDULES)), st.data())
def test_fuzz_schedule_builder(kind, data):
    key = data.draw(st.sampled_from(sorted(SCHEDULE_SCHEMAS[kind]) + ['warmup_steps', 'warmup_start_lr']))
    value = data.draw(JUNK)
    cfg = {'type': kind, **BASE_SCHEDULES[kind], key: value}
    s = fails_with_key(lambda: learning_rate_schedule_builder(cfg), key)
    if s is not None:
        v = schedule_values(s, np.array([0, 1, 10, 99, 1000, 10**6]))
        assert np.isfinite(v).all() and (v >= 0).all(), (cfg, v)

# ---- fuzz: deep supervision -----------------------------------------------------------------------------------------
@FUZZ
@given(st.sampled_from(sorted(STRATEGIES)), st.data())
def test_fuzz_deep_supervision(kind, data):
    keys = sorted(STRATEGIES[kind][1]) or ['config']
    key = data.draw(st.sampled_from(keys))
    value = data.draw(JUNK)
    cfg = {'type': kind, 'config': {key: value}} if key != 'config' else {'type': kind, 'config': value}
    s = fails_with_key(lambda: deep_supervision_schedule_builder(cfg, 4), key)
    if s is not None:
        for p in (0.0, 0.25, 0.5, 0.999, 1.0):
            w = s(p)
            assert np.isfinite(w).all() and abs(w.sum() - 1) < 1e-9 and (w >= 0).all(), (cfg, p, w)
        assert DeepSupervisionSchedule.from_config(s.get_config()).get_config() == s.get_config()

# ---- fuzz: SLED ----------------------------------------------------------------------------------------------------
LOGITS = torch.tensor(np.random.default_rng(0).normal(size=(3, 2, 40)) * 5, dtype=torch.float32)

@FUZZ
@given(st.sampled_from(sorted(SLED_SCHEMA) + ['evolution_lower_bound']), JUNK)
def test_fuzz_sled(key, value):
    proc = fails_with_key(lambda: sled_builder({'type': 'sled_v1', 'config': {key: value}}), key)
    if proc is not None:
        out = proc(LOGITS)
        assert torch.isfinite(out).all()
        top = LOGITS[-1].topk(min(proc.evolution_scale, 40)).indices
        assert (top == out.argmax(-1, keepdim=True)).any(-1).all()   # never a token outside the top-k
        assert SledLogitsProcessor.from_config(proc.get_config()).get_config() == proc.get_config()

# ---- fuzz: torch optimizers ----------------------------------------------------------------------------------------
MUON_KEYS = ['lr', 'momentum', 'nesterov', 'ns_steps', 'coefficients', 'weight_decay', 'adjust_lr', 'ns_dtype',
             'cautious_weight_decay', 'adam_lr', 'adam_betas', 'adam_eps', 'adam_weight_decay', 'caution',
             'exclude_embedding_names', 'head_names', 'muon_names', 'adamw_names']

def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

def one_step(opt, model):
    model(torch.randn(4, 6)).pow(2).mean().backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())

@FUZZ
@given(st.sampled_from(MUON_KEYS), JUNK)
def test_fuzz_muon(key, value):
    m = small_model()
    opt = fails_with_key(lambda: Muon(m, **{key: value}), key)
    if opt is not None and all(torch.isfinite(torch.as_tensor(g.get('lr', 0))) for g in opt.param_groups):
        if key in ('lr', 'adam_lr') and value > 1e3: return   # a huge learning rate may overflow a weight; not a config defect
        one_step(opt, m)

@FUZZ
@given(st.sampled_from(['lr', 'betas', 'eps', 'weight_decay', 'caution']), JUNK)
def test_fuzz_cautious_adamw(key, value):
    m = small_model()
    opt = fails_with_key(lambda: AdamW(m.parameters(), **{key: value}), key)
    if opt is not None and not (key == 'lr' and value > 1e3): one_step(opt, m)

@FUZZ
@given(st.sampled_from(['alpha', 'lamb', 'warmup_steps']), JUNK)
def test_fuzz_grokfast(key, value):
    fails_with_key(lambda: GrokFast(**{key: value}), key)

@FUZZ
@given(st.sampled_from(['start', 'end', 'warmup_steps']), JUNK)
def test_fuzz_momentum_warmup(key, value):
    fails_with_key(lambda: MomentumWarmup(Muon(small_model()), **{key: value}), key)

@FUZZ
@given(st.sampled_from(['steps', 'seed', 'threads', 'eval_every', 'batch', 'ctx']), JUNK)
def test_fuzz_race_config(key, value):
    fails_with_key(lambda: RaceConfig(**{key: value}), key)

# ---- fuzz: the command line ----------------------------------------------------------------------------------------
ARG = st.one_of(st.sampled_from(['-5', '0', '1e300', 'nan', '', 'x', '-1', '99999999999999999999999']), st.text(max_size=4))

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmd_opt=st.sampled_from([('ns', '--lower'), ('ns', '--steps'), ('ns', '--safety'), ('race', '--steps'), ('race', '--seed'),
                        ('race', '--processes'), ('race', '--threads'), ('race', '--nproc'), ('race', '--eval-every'),
                        ('race', '--optimizers'), ('plot', '--steps'), ('plot', '--outputs'), ('sled-eval', '--limit')]), value=ARG)
def test_fuzz_cli_never_a_traceback(cmd_opt, value, tmp_path_factory):
    "Every bad option value exits non-zero with a one-line message, before any work (race: before training)"
    cmd, opt = cmd_opt
    d = tmp_path_factory.mktemp('cli')
    (d / 'c.json').write_text(json.dumps({"type": "constant", "learning_rate": 1e-3}))
    argv = {'ns': ['ns', opt, value], 'race': ['race', '--out', str(d / 'o'), '--quiet', opt, value],
            'plot': ['plot', 'lr', str(d / 'c.json'), '-o', str(d / 'p.png'), opt, value],
            'sled-eval': ['sled-eval', '--out', str(d / 's'), opt, value]}[cmd]
    status, err = _run_main(argv)
    assert 'Traceback' not in err
    if status != 0: assert status == 2 and err.strip().startswith(('dl-optim', 'usage:')), err

def _run_main(argv):
    "main(argv) in-process, stderr captured; argparse's own exit counts as its status; reaching the work counts as 0"
    import io, contextlib
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try: status = main(argv)
        except SystemExit as e: status = e.code
        except _Reached: status = 0
    return status, err.getvalue()

class _Reached(Exception): pass

@pytest.fixture(autouse=True)
def _no_real_work(monkeypatch):
    "The CLI fuzz must not train or download: reaching the work is 'accepted' (all checks passed)"
    import dl_optim.experiments.race as R, dl_optim.experiments.sled_eval as S
    def reached(*a, **k): raise _Reached()
    monkeypatch.setattr(R, 'run_race', reached)
    monkeypatch.setattr(S, 'run_cli', reached)
    import dl_optim.experiments.distributed as D
    monkeypatch.setattr(D, 'run_race_distributed', reached)

# ---- regression tests, one per class ---------------------------------------------------------------------------
def test_cli_bad_files_are_messages_not_tracebacks(tmp_path, capsys):
    (tmp_path / 'bin.json').write_bytes(bytes(range(256)))
    (tmp_path / 'u16.json').write_bytes(json.dumps({"type": "constant", "learning_rate": 1e-3}).encode('utf-16'))
    (tmp_path / 'list.json').write_text('[1, 2]')
    (tmp_path / 'ok.json').write_text(json.dumps({"type": "constant", "learning_rate": 1e-3}))
    (tmp_path / 'file').write_text('x')
    cases = [(['plot', 'lr', str(tmp_path / 'bin.json')], 'UTF-8'), (['plot', 'lr', str(tmp_path / 'u16.json')], 'UTF-8'),
             (['plot', 'lr', str(tmp_path / 'list.json')], 'JSON object'), (['plot', 'lr', str(tmp_path)], 'folder'),
             (['plot', 'lr', str(tmp_path / 'ok.json'), '-o', str(tmp_path / 'x.nope')], 'ending in'),
             (['plot', 'lr', str(tmp_path / 'ok.json'), '-o', str(tmp_path / 'missing' / 'x.png')], 'does not exist'),
             (['race', '--corpus', str(tmp_path / 'nope.txt')], 'no such file'), (['race', '--corpus', str(tmp_path)], 'folder'),
             (['race', '--out', str(tmp_path / 'file')], "'out'"), (['race', '--seed', '-5', '--nproc', '2'], "'seed' is -5"),
             (['race', '--processes', '-2'], "'--processes' is -2"), (['race', '--steps', '0'], "'steps' is 0"),
             (['ns', '--plot', str(tmp_path / 'x.nope')], 'ending in')]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and 'Traceback' not in err, (argv, err)
        assert err.count(f'dl-optim {argv[0]}') == 1, err   # the prefix once, not "dl-optim plot: dl-optim plot:"

def test_dead_rank_is_an_error_not_a_hang():
    "A rank that dies (here: exits at once) ends the wait with ChildProcessError within seconds"
    import multiprocessing as mp
    from dl_optim.experiments.distributed import _wait_for_ranks
    ctx = mp.get_context('spawn'); q = ctx.SimpleQueue()
    procs = [ctx.Process(target=sys.exit, args=(3,)), ctx.Process(target=time.sleep, args=(60,))]
    for p in procs: p.start()
    t0 = time.perf_counter()
    with pytest.raises(ChildProcessError, match='exit codes'): _wait_for_ranks(procs, q, lambda m: None)
    assert time.perf_counter() - t0 < 30
    for p in procs: p.join(5)
    assert not any(p.is_alive() for p in procs)

def test_cli_race_nproc_bad_seed_exits_fast():
    "A hang once seen: `dl-optim race --nproc 2 --seed -5` now fails in the parent before any rank starts"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, '-c', 'import sys; from dl_optim.cli import main; sys.exit(main())',
                        'race', '--nproc', '2', '--seed', '-5', '--steps', '2'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and "'seed' is -5" in r.stderr, r.stderr
    assert time.perf_counter() - t0 < 120

def test_grads_synced_is_a_strict_boolean():
    from dl_optim.distributed import DistMuon
    for bad in ('False', None, 0):
        with pytest.raises(ConfigError, match='grads_synced'): DistMuon(small_model(), grads_synced=bad)

def test_none_has_one_meaning_per_key():
    from dl_optim.optimizers import optimizer_builder
    assert optimizer_builder({"type": "muon", "adjust_lr": None}, 0.02).adjust_lr is None
    assert optimizer_builder({"type": "adamw", "weight_decay": None}, 1e-3).weight_decay == 0.0

def test_empty_patterns_are_errors():
    from dl_optim.optimizers import optimizer_builder
    for call in (lambda: Muon(small_model(), adamw_names=['']), lambda: Muon(small_model(), muon_names=[' ']),
                 lambda: optimizer_builder({"type": "adamw", "exclude_from_weight_decay": ['']}, 1e-3)):
        with pytest.raises(ConfigError, match='match every name'): call()

def test_deep_supervision_from_config_is_strict():
    s = deep_supervision_schedule_builder({'type': 'linear_low_to_high'}, 3)
    with pytest.raises(ConfigError, match='invrt_order'): DeepSupervisionSchedule.from_config({**s.get_config(), 'invrt_order': True})
    with pytest.raises(ConfigError, match="'no_outputs' is missing"): DeepSupervisionSchedule.from_config({'type': 'constant_equal'})

@pytest.mark.parametrize('k', [2000.0, 1e-20, 1e30])
@pytest.mark.parametrize('rescale', [False, True])
def test_sigmoid_schedule_every_k(k, rescale):
    s = deep_supervision_schedule_builder({'type': 'custom_sigmoid_low_to_high', 'config': {'k': k, 'rescale': rescale}}, 5)
    for p in np.linspace(0, 1, 41): assert np.isfinite(s(p)).all()

def test_orthograd_half_precision_and_grokfast_nan():
    w, g = (torch.randn(32, 32) * 2).half(), (torch.randn(32, 32) * 50).half()
    assert torch.isfinite(orthograd(w, g)).all()
    p = torch.nn.Parameter(torch.ones(3)); opt = torch.optim.SGD([p], lr=0.1)
    gf = GrokFast(alpha=0.5, lamb=1.0); attach_gradient_filters(opt, gf)
    for g_ in ([1.0, 1.0, 1.0], [float('nan'), 1.0, 1.0], [1.0, 1.0, 1.0]):
        p.grad = torch.tensor(g_); opt.step()
    assert torch.isfinite(gf.ema[0]).all()   # the NaN step did not enter the filter

def test_momentum_warmup_refuses_sgd():
    sgd = torch.optim.SGD(small_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match='has none'): MomentumWarmup(sgd)

def test_muon_add_param_group_validates_and_routes():
    m = small_model(); opt = Muon([{'params': [m[0].weight], 'use_muon': True}])
    with pytest.raises(ConfigError, match="did you mean 'momentum'"): opt.add_param_group({'params': [m[2].weight], 'moment': 0.9})
    opt.add_param_group({'params': [m[2].weight, m[2].bias]})
    one_step(opt, m)

def test_checkpoint_with_schedule_object_loads_weights_only(tmp_path):
    from dl_optim.newton_schulz import polar_express_schedule
    m = small_model(); opt = Muon(m, coefficients=polar_express_schedule(lower=1e-2))
    one_step(opt, m); torch.save(opt.state_dict(), tmp_path / 'o.pt')
    opt2 = Muon(small_model(), coefficients=polar_express_schedule(lower=1e-2))
    opt2.load_state_dict(torch.load(tmp_path / 'o.pt', weights_only=True))

def test_zero_size_matrix():
    w = torch.nn.Parameter(torch.zeros(4, 0)); opt = Muon([w]); w.grad = torch.zeros(4, 0); opt.step()
    assert opt.routing_report()[0].route == 'adamw'

def test_cautious_adamw_betas_checked_at_construction():
    with pytest.raises(ConfigError, match="'betas'"): AdamW(small_model().parameters(), betas=(0.9,))

def test_huge_integers_are_config_errors():
    with pytest.raises(ConfigError, match='limited to 2'): Muon(small_model(), ns_steps=10**400)
    with pytest.raises(ConfigError): learning_rate_schedule_builder({'type': 'constant', 'learning_rate': 10**400})

def test_plot_of_a_huge_schedule_is_bounded():
    from dl_optim.schedules import plot_schedule, PLOT_POINTS
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig = plot_schedule({"type": "cosine_decay_restarts", "learning_rate": 1e-3, "decay_steps": 10**10, "t_mul": 1000.0})
    assert len(fig.axes[0].lines[0].get_xdata()) <= PLOT_POINTS
    plt.close(fig)

@pytest.mark.keras
def test_keras_optimizers_check_the_learning_rate():
    from dl_optim.keras_muon import Muon as KerasMuon
    from dl_optim.cautious_keras import Adam
    for cls in (KerasMuon, Adam):
        for bad in (-1.0, float('nan'), 1e300, 'x'):
            with pytest.raises(ConfigError, match="'learning_rate'"): cls(learning_rate=bad)

@pytest.mark.keras
@FUZZ
@given(st.sampled_from(['momentum', 'nesterov', 'ns_steps', 'adam_learning_rate', 'adam_beta_1', 'adam_beta_2',
                        'adam_epsilon', 'weight_decay', 'exclude_embedding_names', 'adam_lr_ratio', 'exclude_layers',
                        'exclude_embeddings', 'caution', 'use_nadam', 'coefficients', 'adjust_lr', 'ns_dtype', 'head_names',
                        'adam_weight_decay', 'learning_rate', 'exclude_from_weight_decay']), JUNK)
def test_fuzz_keras_muon_and_builder(key, value):
    from dl_optim.keras_muon import Muon as KerasMuon
    from dl_optim.optimizers import optimizer_builder
    opt = fails_with_key(lambda: KerasMuon(**{key: value}), key)
    if opt is not None: assert type(opt).from_config(opt.get_config()).get_config() == opt.get_config()
    if key != 'learning_rate':
        fails_with_key(lambda: optimizer_builder({'type': 'muon', key: value}, 0.02), key)
