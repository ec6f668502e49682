"Keras: cautious Adam/Nadam and the gradient filters on the active backend (model.fit, jit, saving, builder)"
import numpy as np
import pytest
from dl_optim.cautious_keras import Adam, Nadam
from dl_optim.grokking_keras import gradient_filters, with_gradient_filters
from dl_optim.optimizers import optimizer_builder
from dl_optim.config import ConfigError
import keras
from keras import ops

pytestmark = pytest.mark.keras

def data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype('float32')
    return x, (x[:, :3].sum(1) > 0).astype('int32')

def model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(32, activation='relu'), keras.layers.Dense(2)])

@pytest.mark.parametrize('cls', [Adam, Nadam])
def test_cautious_step_never_against_the_gradient(cls):
    var = keras.Variable(np.zeros(400, 'float32'))
    opt = cls(learning_rate=0.1, weight_decay=0.0)
    g1 = np.random.default_rng(3).normal(size=400).astype('float32')
    for _ in range(4): opt.apply([ops.convert_to_tensor(g1)], [var])
    g2 = np.where(np.arange(400) % 3 == 0, -g1, g1).astype('float32')
    before = ops.convert_to_numpy(var).copy(); opt.apply([ops.convert_to_tensor(g2)], [var])
    step = before - ops.convert_to_numpy(var)
    assert (step * g2 >= 0).all() and 0 < np.mean(step != 0) < 1

@pytest.mark.parametrize('make', [lambda: Adam(3e-3), lambda: Nadam(3e-3),
                                  lambda: gradient_filters(keras.optimizers.AdamW(3e-3, weight_decay=0.1), grokfast=True, orthograd=True),
                                  lambda: gradient_filters(Nadam(3e-3), grokfast=dict(alpha=0.9, lamb=1.0, warmup_steps=3))])
def test_fit_jit_save_load(make, tmp_path):
    "model.fit with the backend's compiled train step learns, and saving restores every optimizer variable"
    x, y = data()
    m = model(); m.compile(make(), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'], jit_compile='auto')
    h = m.fit(x, y, epochs=15, batch_size=64, verbose=0)
    assert h.history['accuracy'][-1] > 0.9
    m.save(tmp_path / 'm.keras'); m2 = keras.saving.load_model(tmp_path / 'm.keras')
    assert type(m2.optimizer) is type(m.optimizer)
    assert m2.optimizer.get_config() == m.optimizer.get_config()
    for a, b in zip(m.optimizer.variables, m2.optimizer.variables): np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))

def test_grokfast_in_keras_equals_the_torch_formula():
    var = keras.Variable(np.zeros(3, 'float32'))
    opt = gradient_filters(keras.optimizers.SGD(1.0), grokfast=dict(alpha=0.9, lamb=5.0, warmup_steps=2))
    grads = [np.array(g, 'float32') for g in ([1, -1, 2], [0.5, 0.5, 0.5], [-2, 1, 0], [1, 1, 1])]
    ema = None
    for t, g in enumerate(grads, 1):
        ema = g.copy() if ema is None else 0.9 * ema + 0.1 * g
        expect = g + 5.0 * ema if t > 2 else g
        before = ops.convert_to_numpy(var).copy(); opt.apply([ops.convert_to_tensor(g)], [var])
        np.testing.assert_allclose(before - ops.convert_to_numpy(var), expect, rtol=1e-6, atol=1e-6)

def test_orthograd_in_keras():
    w0 = np.array([[3.0, 4.0], [1.0, -2.0]], 'float32')
    var = keras.Variable(w0)
    opt = gradient_filters(keras.optimizers.SGD(1.0), orthograd=True)
    g = np.array([[1.0, 1.0], [0.5, 2.0]], 'float32')
    opt.apply([ops.convert_to_tensor(g)], [var])
    step = w0 - ops.convert_to_numpy(var)
    assert abs(float((step * w0).sum())) < 1e-5
    np.testing.assert_allclose(np.linalg.norm(step), np.linalg.norm(g), rtol=1e-6)

def test_builder_caution_and_errors():
    o = optimizer_builder({'type': 'nadam', 'caution': True}, 1e-3)
    assert type(o) is Nadam and o.caution and o.beta_2 == 0.999 and o.epsilon == 1e-7
    plain = optimizer_builder({'type': 'adam'}, 1e-3)
    assert isinstance(plain, keras.optimizers.Adam) and not isinstance(plain, Adam)
    assert with_gradient_filters(type(plain)) is with_gradient_filters(keras.optimizers.Adam)
    with pytest.raises(ConfigError, match='caution'): optimizer_builder({'type': 'adam', 'caution': 'False'}, 1e-3)
    with pytest.raises(ConfigError, match='caution'): optimizer_builder({'type': 'sgd', 'caution': True}, 1e-3)
    with pytest.raises(ConfigError, match='beta_1'): Adam(beta_1=1.0)
    with pytest.raises(ConfigError, match='caution'): Nadam(caution=1)
    with pytest.raises(TypeError): with_gradient_filters(object)
    used = keras.optimizers.SGD(0.1); used.build([keras.Variable(np.zeros(2, 'float32'))])
    with pytest.raises(ValueError, match='not been used'): gradient_filters(used, orthograd=True)
