"Keras Muon and optimizer_builder on the active Keras backend (CI runs this file under torch, JAX and TensorFlow)"
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from dl_optim.config import ConfigError
from dl_optim.keras_muon import Muon
from dl_optim.optimizers import optimizer_builder
from dl_optim.muon import Muon as TorchMuon
from dl_optim.schedules import learning_rate_schedule_builder
import keras
from keras import ops

pytestmark = pytest.mark.keras
BACKEND = keras.backend.backend()

def issue_model():
    return keras.Sequential([keras.Input((8,), dtype='int32'), keras.layers.Embedding(100, 16, name='token_emb'),
                             keras.layers.Dense(32, name='hidden'), keras.layers.LayerNormalization(name='norm'),
                             keras.layers.Dense(10, name='head')])

def test_issue_routing():
    m = issue_model(); opt = Muon()
    assert [v.path.split('/')[-2:] for v in m.trainable_variables if opt._should_use_muon(v)] == [['hidden', 'kernel']]

def test_slots_one_for_muon_two_for_adam():
    m = issue_model(); opt = Muon(); opt.build(m.trainable_variables)
    n_muon = sum(opt._should_use_muon(v) for v in m.trainable_variables)
    n_adam = len(m.trainable_variables) - n_muon
    own = [v for v in opt.variables if v.name not in ('iteration', 'learning_rate')]   # slots only
    assert len(own) == n_muon + 2 * n_adam

@pytest.mark.parametrize('shape', [(24, 40), (40, 24)])
def test_matches_torch_muon_on_transposed_weight(shape):
    rng = np.random.default_rng(0)
    K0 = rng.standard_normal(shape).astype('float32')
    grads = [rng.standard_normal(shape).astype('float32') for _ in range(3)]
    kv = keras.Variable(K0, name='kernel')
    kopt = Muon(learning_rate=0.02, coefficients='jordan', adjust_lr='original', ns_dtype='float32', weight_decay=0.01)
    for g in grads: kopt.apply_gradients([(ops.convert_to_tensor(g), kv)])
    W = torch.nn.Parameter(torch.from_numpy(K0.T.copy()))
    topt = TorchMuon([{'params': [W], 'use_muon': True}], lr=0.02, coefficients='jordan', adjust_lr='original',
                     ns_dtype=torch.float32, weight_decay=0.01)
    for g in grads: W.grad = torch.from_numpy(g.T.copy()); topt.step()
    K = ops.convert_to_numpy(kv)
    assert np.linalg.norm(K - W.detach().numpy().T) / np.linalg.norm(K - K0) < 1e-4

def _data(n=256):
    r = np.random.default_rng(0)
    X = r.standard_normal((n, 12)).astype('float32')
    return X, (X[:, :1] * 2 - X[:, 1:2]).astype('float32')

def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(32, activation='tanh', name='h'),
                             keras.layers.Dense(32, activation='tanh', name='h2'), keras.layers.Dense(1, name='head')])

@pytest.mark.parametrize('jit', [False, True] if BACKEND in ('jax', 'tensorflow') else [False])
def test_fit_trains(jit):
    X, y = _data()
    m = _model(); m.compile(optimizer=Muon(learning_rate=0.01, adam_lr_ratio=0.1), loss='mse', jit_compile=jit)
    hist = m.fit(X, y, batch_size=32, epochs=4, verbose=0).history['loss']
    assert hist[-1] < 0.5 * hist[0]

def test_save_load_with_warmup_schedule_is_exact(tmp_path):
    X, y = _data()
    sched = learning_rate_schedule_builder({"type": "cosine_decay", "warmup_steps": 5, "learning_rate": 0.02, "decay_steps": 50})
    m = _model(); m.compile(optimizer=Muon(learning_rate=sched, adam_lr_ratio=0.05, weight_decay=0.01), loss='mse')
    m.fit(X, y, batch_size=32, epochs=1, verbose=0)
    m.save(tmp_path / 'm.keras'); m2 = keras.saving.load_model(tmp_path / 'm.keras')
    assert type(m2.optimizer).__name__ == 'Muon' and int(m2.optimizer.iterations) == int(m.optimizer.iterations) == 8
    lr = lambda mm: float(ops.convert_to_numpy(mm.optimizer.learning_rate))
    assert lr(m2) == lr(m)
    for a, b in zip(m.get_weights(), m2.get_weights()): np.testing.assert_array_equal(a, b)
    for a, b in zip(m.optimizer.variables, m2.optimizer.variables): np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    m.fit(X, y, batch_size=32, epochs=1, verbose=0, shuffle=False); m2.fit(X, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(m.get_weights(), m2.get_weights()): np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

def test_config_roundtrip():
    opt = Muon(learning_rate=learning_rate_schedule_builder({"type": "constant", "learning_rate": 0.01, "warmup_steps": 3}),
               exclude_layers=['proj'], caution=True, use_nadam=True, coefficients='jordan', adjust_lr='spectral', ns_dtype='float32')
    cfg = keras.optimizers.serialize(opt)
    opt2 = keras.optimizers.deserialize(cfg)
    assert opt2.get_config() == opt.get_config()

def test_optimizer_builder_types_and_clipping():
    for kind, cls in [('adam', 'Adam'), ('adamw', 'AdamW'), ('rmsprop', 'RMSprop'), ('adadelta', 'Adadelta'), ('nadam', 'Nadam'), ('sgd', 'SGD'), ('muon', 'Muon')]:
        opt = optimizer_builder({'type': kind, 'gradient_clipping_by_norm_local': 2.0}, 0.01)
        assert type(opt).__name__ == cls and opt.clipnorm == 2.0
    with pytest.raises(ConfigError, match='one clipping key only'):
        optimizer_builder({'type': 'adam', 'gradient_clipping_by_value': 1.0, 'gradient_clipping_by_norm': 1.0}, 0.01)

junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=6), st.lists(st.integers(), max_size=2))

@settings(max_examples=150, deadline=None)
@given(st.sampled_from(['adam', 'adamw', 'rmsprop', 'adadelta', 'nadam', 'sgd', 'muon', 'bogus', 5]),
       st.dictionaries(st.sampled_from(['beta_1', 'epsilon', 'rho', 'momentum', 'nesterov', 'weight_decay', 'amsgrad',
                                        'gradient_clipping_by_norm', 'ns_steps', 'centered', 'junk_key']), junk, max_size=3))
def test_builder_junk_raises_only_config_error(kind, extra):
    try: optimizer_builder({'type': kind, **extra}, 0.01)
    except ConfigError: pass
