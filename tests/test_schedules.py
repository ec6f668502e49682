"Learning-rate schedules: exact values (Keras and torch), serialization, jit on the active backend, properties"
import json, math
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from dl_optim.config import ConfigError
from dl_optim.schedules import learning_rate_schedule_builder, to_torch_scheduler, schedule_values
import keras
from keras import ops

pytestmark = pytest.mark.keras
BACKEND = keras.backend.backend()

def primary(kind, t, lr=1e-3, D=None, **kw):
    "The dl_techniques guide's formulas in float64"
    if kind == 'cosine_decay':
        a = kw.get('alpha', 1e-4); return lr * ((1 - a) * 0.5 * (1 + math.cos(math.pi * min(t, D) / D)) + a)
    if kind == 'exponential_decay': return lr * kw['decay_rate'] ** (t / D)
    if kind == 'cosine_decay_restarts':
        t_mul, m_mul, a = kw.get('t_mul', 2.0), kw.get('m_mul', 0.9), kw.get('alpha', 1e-3)
        cf = t / D
        i = math.floor(math.log(1 - cf * (1 - t_mul)) / math.log(t_mul))
        cf = (cf - (1 - t_mul ** i) / (1 - t_mul)) / t_mul ** i
        return lr * ((1 - a) * 0.5 * m_mul ** i * (1 + math.cos(math.pi * cf)) + a)

def expected(cfg, t):
    W, s0 = cfg.get('warmup_steps', 0), cfg.get('warmup_start_lr', 1e-8)
    kw = {k: v for k, v in cfg.items() if k not in ('type', 'warmup_steps', 'warmup_start_lr', 'learning_rate', 'decay_steps')}
    P = lambda s: primary(cfg['type'], s, cfg['learning_rate'], cfg['decay_steps'], **kw)
    return s0 + (P(0) - s0) * t / W if t < W else P(t - W)

SEED_CONFIGS = [
    {"type": "cosine_decay", "warmup_steps": 1000, "warmup_start_lr": 1e-8, "learning_rate": 1e-3, "decay_steps": 10000},
    {"type": "exponential_decay", "warmup_steps": 1000, "warmup_start_lr": 1e-8, "learning_rate": 1e-3, "decay_steps": 1000, "decay_rate": 0.9},
    {"type": "cosine_decay_restarts", "warmup_steps": 1000, "warmup_start_lr": 1e-8, "learning_rate": 1e-3, "decay_steps": 5000},
]
STEPS = [0, 1, 500, 999, 1000, 1001, 6000, 11000, 16000, 21000, 50000]

@pytest.mark.parametrize('cfg', SEED_CONFIGS, ids=lambda c: c['type'])
def test_seed_types_exact_through_keras(cfg):
    s = learning_rate_schedule_builder(cfg)
    got = [float(ops.convert_to_numpy(s(t))) for t in STEPS]
    np.testing.assert_allclose(got, [expected(cfg, t) for t in STEPS], rtol=5e-5)

@pytest.mark.parametrize('cfg', SEED_CONFIGS, ids=lambda c: c['type'])
def test_seed_types_exact_through_torch(cfg):
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=cfg['learning_rate'])
    sched = to_torch_scheduler(cfg, opt)
    got = {}
    for t in range(1002):   # step through warmup and its end; far steps via the same factor the scheduler applies
        if t in STEPS: got[t] = opt.param_groups[0]['lr']
        opt.step(); sched.step()
    got.update({t: cfg['learning_rate'] * sched.factor(t) for t in STEPS if t > 1001})
    np.testing.assert_allclose([got[t] for t in STEPS], [expected(cfg, t) for t in STEPS], rtol=5e-5)

@pytest.mark.parametrize('cfg', SEED_CONFIGS + [
    {"type": "wsd", "warmup_steps": 10, "learning_rate": 0.02, "stable_steps": 50, "decay_steps": 40, "decay_shape": "cosine", "alpha": 0.1},
    {"type": "constant", "warmup_steps": 5, "learning_rate": 3e-4}], ids=lambda c: c['type'])
def test_serialization_roundtrip(cfg):
    s = learning_rate_schedule_builder(cfg)
    blob = json.dumps(keras.optimizers.schedules.serialize(s))
    s2 = keras.optimizers.schedules.deserialize(json.loads(blob))
    assert type(s2).__name__ == 'WarmupSchedule'   # by name: executing the notebook re-registers its own copy of the class
    steps = ops.convert_to_tensor(np.array(STEPS, dtype='float32'))
    np.testing.assert_array_equal(ops.convert_to_numpy(s(steps)), ops.convert_to_numpy(s2(steps)))

def test_jit_traceable_on_active_backend():
    s = learning_rate_schedule_builder({"type": "wsd", "warmup_steps": 10, "learning_rate": 0.02, "stable_steps": 50, "decay_steps": 40})
    steps = np.arange(120, dtype='float32')
    eager = ops.convert_to_numpy(s(ops.convert_to_tensor(steps)))
    if BACKEND == 'jax':
        import jax; fn = jax.jit(s.__call__)
    elif BACKEND == 'tensorflow':
        import tensorflow as tf; fn = tf.function(s.__call__, jit_compile=True)
    else: fn = torch.compile(s.__call__, fullgraph=True)
    np.testing.assert_allclose(ops.convert_to_numpy(fn(ops.convert_to_tensor(steps))), eager, rtol=1e-6)

def test_model_save_load_restores_schedule_and_step(tmp_path):
    cfg = {"type": "cosine_decay", "warmup_steps": 4, "learning_rate": 1e-2, "decay_steps": 20}
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=learning_rate_schedule_builder(cfg)), loss='mse')
    x, y = np.random.default_rng(0).normal(size=(32, 3)).astype('float32'), np.zeros((32, 1), 'float32')
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = tmp_path / 'm.keras'; model.save(path)
    loaded = keras.saving.load_model(path)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 8
    assert type(loaded.optimizer._learning_rate).__name__ == 'WarmupSchedule'   # the schedule itself came back
    lr = lambda m: float(ops.convert_to_numpy(m.optimizer.learning_rate))
    assert lr(loaded) == lr(model)
    for a, b in zip(model.get_weights(), loaded.get_weights()): np.testing.assert_array_equal(a, b)

def test_bad_configs():
    base = {"type": "cosine_decay", "learning_rate": 1e-3, "decay_steps": 100}
    for bad, msg in [({**base, 'type': 'cosine'}, "'type'"), ({**base, 'warmup_steps': -1}, "'warmup_steps'"),
                     ({**base, 'decay_steps': 0}, "'decay_steps'"), ({**base, 'lr': 1}, "'lr'"),
                     ({k: v for k, v in base.items() if k != 'learning_rate'}, "'learning_rate' is missing"),
                     ({**base, 'alpha': 2.0}, "'alpha'"), ({**base, 'warmup_steps': True}, "'warmup_steps'")]:
        with pytest.raises(ConfigError, match=msg): learning_rate_schedule_builder(bad)

configs = st.one_of(
    st.builds(lambda w, s0, lr, d, a: {"type": "cosine_decay", "warmup_steps": w, "warmup_start_lr": s0, "learning_rate": lr, "decay_steps": d, "alpha": a},
              st.integers(1, 200), st.floats(0, 1e-4), st.floats(1e-4, 1.0), st.integers(1, 300), st.floats(0, 0.5)),
    st.builds(lambda w, s0, lr, st_, d, a, shape: {"type": "wsd", "warmup_steps": w, "warmup_start_lr": s0, "learning_rate": lr,
                                                   "stable_steps": st_, "decay_steps": d, "alpha": a, "decay_shape": shape},
              st.integers(1, 200), st.floats(0, 1e-4), st.floats(1e-4, 1.0), st.integers(0, 100), st.integers(1, 300),
              st.floats(0, 0.5), st.sampled_from(['linear', 'cosine'])),
    st.builds(lambda w, s0, lr: {"type": "constant", "warmup_steps": w, "warmup_start_lr": s0, "learning_rate": lr},
              st.integers(1, 200), st.floats(0, 1e-4), st.floats(1e-4, 1.0)))

@settings(max_examples=40, deadline=None)
@given(configs)
def test_properties(cfg):
    W = cfg['warmup_steps']
    total = W + cfg.get('stable_steps', 0) + cfg.get('decay_steps', 0)
    y = schedule_values(cfg, total + 50)
    assert (y >= 0).all()
    warm = y[:W + 1]
    assert (np.diff(warm) >= -1e-7 * warm.max()).all()                          # warmup is monotone (rising here)
    assert abs(y[W] - y[W - 1]) <= abs(y[W] - cfg['warmup_start_lr']) / W * 1.01 + 1e-7   # continuous: one warmup step
    floor = cfg['learning_rate'] * cfg.get('alpha', 1.0 if cfg['type'] == 'constant' else 0.0)
    np.testing.assert_allclose(y[-1], floor, rtol=1e-5, atol=1e-9)               # ends at its floor
