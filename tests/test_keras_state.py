"Nothing lost in Keras: weight-decay exclusions survive save/load, and every registered optimizer reloads as itself"
import numpy as np
import pytest
import dl_optim  # noqa: F401  (picks the Keras backend)
import keras
from keras import ops
from dl_optim.optimizers import optimizer_builder
from dl_optim.grokking_keras import gradient_filters, _FILTERED

pytestmark = pytest.mark.keras

def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype('float32')
    return x, (x @ rng.normal(size=(6, 3))).astype('float32')

def model():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, name='hidden'),
                             keras.layers.LayerNormalization(name='norm'), keras.layers.Dense(3, name='head')])

BUILDERS = {
    'adamw': lambda: optimizer_builder({"type": "adamw", "weight_decay": 0.3, "exclude_from_weight_decay": ["bias", "gamma"]}, 1e-2),
    'muon': lambda: optimizer_builder({"type": "muon", "weight_decay": 0.3, "exclude_from_weight_decay": ["bias", "gamma"]}, 1e-2),
    'cautious': lambda: optimizer_builder({"type": "adam", "caution": True, "weight_decay": 0.3,
                                           "exclude_from_weight_decay": ["bias"]}, 1e-2),
    'filtered': lambda: gradient_filters(optimizer_builder({"type": "adamw", "weight_decay": 0.3,
                                                            "exclude_from_weight_decay": ["bias", "gamma"]}, 1e-2), orthograd=True),
    'filtered_plain': lambda: _plain_with_exclusions(),
}

def _plain_with_exclusions():
    opt = keras.optimizers.AdamW(1e-2, weight_decay=0.3)
    opt.exclude_from_weight_decay(var_names=['bias', 'gamma'])
    return gradient_filters(opt, grokfast=True)

@pytest.mark.parametrize('kind', list(BUILDERS))
def test_exclusions_survive_save_load_bit_exact(kind, tmp_path):
    x, y = data()
    m = model(); m.compile(BUILDERS[kind](), 'mse')
    m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    excluded = [m.optimizer._use_weight_decay(v) for v in m.trainable_variables]   # hidden kernel, bias, norm gamma, beta, head
    assert excluded[:2] == [True, False]
    m.save(tmp_path / 'm.keras')
    loaded = keras.saving.load_model(tmp_path / 'm.keras')
    assert type(loaded.optimizer) is type(m.optimizer)
    assert [loaded.optimizer._use_weight_decay(v) for v in loaded.trainable_variables] == excluded
    m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(m.trainable_variables, loaded.trainable_variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))

def test_every_registered_name_is_unique():
    "Each class dl_optim registers resolves back to itself: no two share a name"
    from dl_optim.keras_muon import Muon
    from dl_optim.cautious_keras import Adam, Nadam
    from dl_optim.schedules import WarmupSchedule
    classes = [Muon, Adam, Nadam, WarmupSchedule, *_FILTERED.values()]
    names = [keras.saving.get_registered_name(c) for c in classes]
    assert len(set(names)) == len(names), names
    for c, n in zip(classes, names): assert keras.saving.get_registered_object(n) is c, n

@pytest.mark.parametrize('base', ['Adam', 'Nadam', 'Muon'])
def test_filtered_optimizers_reload_as_themselves(base, tmp_path):
    "Keras's Adam and dl_optim's cautious Adam, filtered, are two classes and each reloads as itself"
    from dl_optim import cautious_keras, keras_muon
    ours = getattr(cautious_keras, base, None) or getattr(keras_muon, base)
    for cls in [getattr(keras.optimizers, base, None), ours]:
        if cls is None: continue
        x, y = data(); m = model()
        m.compile(gradient_filters(cls(learning_rate=1e-3), orthograd=True), 'mse')
        m.fit(x, y, epochs=1, verbose=0)
        m.save(tmp_path / 'f.keras')
        assert type(keras.saving.load_model(tmp_path / 'f.keras').optimizer) is type(m.optimizer)
