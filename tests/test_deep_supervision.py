"Deep-supervision schedules: properties over every type, and the Keras glue on the active backend"
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from dl_optim.config import ConfigError
from dl_optim.deep_supervision import deep_supervision_schedule_builder, DEEP_SUPERVISION_TYPES, DeepSupervisionSchedule, weighted_loss

extra = {'custom_sigmoid_low_to_high': st.fixed_dictionaries({}, optional={'k': st.floats(0.1, 50), 'x0': st.floats(0, 1),
                                                                            'transition_point': st.floats(0, 1), 'rescale': st.booleans()}),
         'cosine_annealing': st.fixed_dictionaries({}, optional={'frequency': st.floats(0.1, 10), 'final_ratio': st.floats(0, 1), 'drift': st.booleans()}),
         'curriculum': st.fixed_dictionaries({}, optional={'max_active_outputs': st.integers(-2, 15),
                                                           'activation_strategy': st.sampled_from(['linear', 'exp', 'quadratic'])}),
         'step_wise': st.fixed_dictionaries({}, optional={'threshold': st.floats(0, 1)})}
configs = st.sampled_from(DEEP_SUPERVISION_TYPES).flatmap(
    lambda t: st.builds(lambda c: {'type': t, 'config': c}, extra.get(t, st.just({}))))

@settings(max_examples=500, deadline=None)
@given(configs, st.integers(1, 12), st.booleans(), st.floats(allow_nan=False))
def test_weights_are_a_distribution(cfg, n, invert, p):
    w = deep_supervision_schedule_builder(cfg, n, invert)(p)
    assert w.shape == (n,) and w.dtype == np.float64 and w.flags['C_CONTIGUOUS']
    assert np.isfinite(w).all() and (w >= 0).all() and abs(w.sum() - 1) < 1e-12

@settings(max_examples=100, deadline=None)
@given(configs, st.integers(1, 12), st.floats(0, 1))
def test_invert_order_reverses_and_roundtrip(cfg, n, p):
    s, r = deep_supervision_schedule_builder(cfg, n), deep_supervision_schedule_builder(cfg, n, invert_order=True)
    np.testing.assert_array_equal(r(p), s(p)[::-1])
    np.testing.assert_array_equal(DeepSupervisionSchedule.from_config(r.get_config())(p), r(p))

def anchor(kind, p, n, **c):
    "The original module's formulas (transcribed from the dl_techniques module), valid for p in [0, 1]"
    def norm(w): s = w.sum(); return np.full(len(w), 1 / len(w)) if s <= 1e-8 else w / s
    def mix(f): return norm((1 - f) * np.arange(1, n + 1.0) + f * np.arange(n, 0, -1.0))
    if kind == 'constant_equal': return np.ones(n) / n
    if kind == 'constant_low_to_high': return mix(1.0)
    if kind == 'constant_high_to_low': return mix(0.0)
    if kind == 'linear_low_to_high': return mix(p)
    if kind == 'non_linear_low_to_high': return mix(p * p)
    if kind == 'custom_sigmoid_low_to_high':
        k, x0, tp = c.get('k', 10.0), c.get('x0', .5), c.get('transition_point', .25)
        return mix(0.0 if (p < tp or tp >= 1) else 1 / (1 + np.exp(-k * ((p - tp) / (1 - tp) - x0))))
    if kind == 'scale_by_scale_low_to_high':
        w = np.zeros(n); w[n - 1 - min(int(np.floor(p * n)), n - 1)] = 1; return w
    if kind == 'cosine_annealing':
        F, r = c.get('frequency', 3.0), c.get('final_ratio', .5)
        ci = np.arange(n)[::-1] - (n - 1) / 2
        return norm(np.maximum(1 + ci * np.cos(2 * np.pi * F * p) * (1 - (1 - r) * p) / n, 0))
    if kind == 'curriculum':
        m = c.get('max_active_outputs', n); m = n if (m is None or m <= 0) else min(m, n)
        a = int(m * (p * p if c.get('activation_strategy', 'linear') == 'exp' else p))
        a = m if p >= 1 else max(1, a)
        w = np.zeros(n); w[n - a:] = 1; return norm(w)
    if kind == 'step_wise':
        t = c.get('threshold', .5)
        if p >= t or t <= 1e-8: w = np.zeros(n); w[0] = 1; return w
        return mix(p / t)

@settings(max_examples=400, deadline=None)
@given(configs, st.integers(1, 12), st.floats(0, 1))
def test_equals_original_on_unit_interval(cfg, n, p):
    c = cfg['config']
    if c.get('rescale') or c.get('drift') or c.get('activation_strategy') == 'quadratic': return   # opt-in variants
    np.testing.assert_allclose(deep_supervision_schedule_builder(cfg, n)(p), anchor(cfg['type'], p, n, **c), atol=1e-12)

def test_bad_inputs():
    with pytest.raises(ConfigError): deep_supervision_schedule_builder({'type': 'curriculum', 'config': {'max_active_outputs': 2.5}}, 5)
    with pytest.raises(ConfigError): deep_supervision_schedule_builder({'type': 'step_wise', 'extra': 1}, 5)
    with pytest.raises(ConfigError): deep_supervision_schedule_builder({'type': 'step_wise'}, 0)
    with pytest.raises(ConfigError): deep_supervision_schedule_builder({'type': 'step_wise'}, 3)(float('nan'))
    with pytest.raises(ConfigError): deep_supervision_schedule_builder({'type': 'step_wise'}, 3)('0.5')
    with pytest.raises(ConfigError): weighted_loss([1.0, 2.0], deep_supervision_schedule_builder({'type': 'step_wise'}, 3), 0.5)

@pytest.mark.keras
@pytest.mark.parametrize('update', ['epoch', 'step'])
def test_keras_fit_applies_the_schedule(update, tmp_path):
    import keras
    from dl_optim.deep_supervision_keras import KerasDeepSupervision
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,)); h = keras.layers.Dense(8, activation='relu')(inp)
    model = keras.Model(inp, [keras.layers.Dense(1, name='a')(h), keras.layers.Dense(1, name='b')(inp)])
    ds = KerasDeepSupervision(model, deep_supervision_schedule_builder({'type': 'step_wise', 'config': {'threshold': 0.5}}, 2), update=update)
    model.compile(optimizer='adam', loss=ds.losses('mse'))
    X = np.random.default_rng(0).standard_normal((64, 4)).astype('float32'); y = X[:, :1]
    cb = ds.callback()
    hist = model.fit(X, [y, y], batch_size=16, epochs=4, verbose=0, callbacks=[cb]).history
    assert len(cb.applied) == (4 if update == 'epoch' else 16)
    np.testing.assert_allclose(cb.applied[-1][2], [1.0, 0.0])
    if update == 'epoch':
        assert hist['b_loss'][-1] == 0.0 and hist['b_loss'][0] > 0   # output b switched off once the threshold is passed
    model.save(tmp_path / 'm.keras')
    loaded = keras.saving.load_model(tmp_path / 'm.keras')
    for a, b in zip(model.predict(X, verbose=0), loaded.predict(X, verbose=0)): np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(RuntimeError, match='wire the loaded model again'): loaded.fit(X, [y, y], epochs=1, verbose=0)
    ds2 = KerasDeepSupervision(loaded, ds.schedule, update=update)
    loaded.compile(optimizer='adam', loss=ds2.losses('mse'))
    loaded.fit(X, [y, y], batch_size=16, epochs=1, verbose=0, callbacks=[ds2.callback()])
