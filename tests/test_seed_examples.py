"The published examples dl_optim's API follows, run as written (only the import changed)"
import warnings
import numpy as np
import pytest
import torch
from torch import nn

@pytest.mark.keras
def test_keras_muon_example_of_the_optimizers_repository():
    "subtotechnoblade/Optimizers' README: its Muon arguments (muon_beta, exclude_layers, ...) and its model"
    import dl_optim  # noqa: F401
    import keras as tf_keras
    from dl_optim.keras_muon import Muon
    optimizer = Muon(
        learning_rate=1e-3,
        adam_lr_ratio=1.0,
        use_nadam=True,
        weight_decay=0.004,
        exclude_layers=["layer_1", "out_layer"],
        exclude_embeddings=True,
        caution=True,
        nesterov=True,
        adam_beta_1=0.9,
        adam_beta_2=0.995,
        muon_beta=0.95)
    model = tf_keras.Sequential([
        tf_keras.layers.Dense(64, activation="relu", name="layer_1"),  # uses Adam/Nadam
        tf_keras.layers.Dense(512, activation="relu"),                 # hidden layer, uses muon
        tf_keras.layers.Dense(10, name="out_layer")                    # uses Adam/Nadam
    ])
    model.compile(optimizer=optimizer, loss='mse')
    x = np.random.default_rng(0).normal(size=(32, 8)).astype('float32')
    model.fit(x, np.zeros((32, 10), 'float32'), epochs=1, verbose=0)
    routes = {r.name: r.route for r in optimizer.routing_report(model.trainable_variables)}
    kernels = [layer.kernel.path for layer in model.layers]   # layer_1, the unnamed hidden Dense, out_layer
    assert [routes[k] for k in kernels] == ['adamw', 'muon', 'adamw']
    assert [k for k, v in routes.items() if v == 'muon'] == kernels[1:2]
    assert optimizer.momentum == 0.95

@pytest.mark.keras
def test_keras_aliases_of_the_optimizers_repository():
    import dl_optim  # noqa: F401
    from dl_optim.keras_muon import Muon
    from dl_optim.cautious_keras import Adam, Nadam
    from dl_optim.config import ConfigError
    m = Muon(muon_a=3.0, muon_b=-3.2, muon_c=1.2, epsilon=1e-8)
    assert m.coefficients == (3.0, -3.2, 1.2) and m.adam_epsilon == 1e-8
    assert Muon.from_config(m.get_config()).get_config() == m.get_config()
    with pytest.warns(DeprecationWarning, match='cation'): assert Muon(cation=True).caution is True
    for cls in (Adam, Nadam):
        with pytest.warns(DeprecationWarning, match='cation'): assert cls(cation=False).caution is False
    with pytest.raises(ConfigError, match='muon_beta'): Muon(muon_beta=0.9, momentum=0.8)
    with pytest.raises(ConfigError, match="'muon_beta'"): Muon(muon_beta='0.9')

def test_mamba_trainer_factory_and_presets_as_written():
    "The Mamba trainer guide's create_muon_optimizer call and its presets, with the import changed"
    from dl_optim.recipes import create_muon_optimizer, build_preset, TRAINING_PRESETS
    model = nn.Sequential(nn.Embedding(64, 16), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 64))
    optimizer = create_muon_optimizer(
        model,
        lr=3e-3,              # Learning rate (10x higher than Adam!)
        momentum=0.95,        # Momentum factor (0.9-0.95 recommended)
        weight_decay=0.01,    # Weight decay
        nesterov=True,        # Use Nesterov momentum (recommended)
        backend='newtonschulz5',  # Orthogonalization method
        decoupled_wd=True     # Decouple weight decay (like AdamW)
    )
    x = torch.randint(0, 64, (4, 5))
    model(x).logsumexp(-1).mean().backward(); optimizer.step()
    for name in ('muon_fast', 'muon_default', 'muon_careful', 'fast', 'default', 'careful'):
        opt, sched, p = build_preset(name, model, max_steps=50)
        assert p == {**TRAINING_PRESETS[name], 'max_steps': 50, 'warmup_steps': 5}
        opt.step(); sched.step()
