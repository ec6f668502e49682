"QK-clip for Keras MultiHeadAttention on the active backend (CI runs it under torch, JAX and TensorFlow): eager steps"
import numpy as np
import pytest
import keras
from keras import ops
from dl_optim.config import ConfigError
from dl_optim.keras_muon import Muon
from dl_optim.muonclip_keras import KerasQKClip, keras_max_logits
from dl_optim.optimizers import optimizer_builder

pytestmark = pytest.mark.keras
BACKEND = keras.backend.backend()

def attention_model(seed=0, causal=True):
    keras.utils.set_random_seed(seed)
    x = keras.Input((12,), dtype='int32')
    h = keras.layers.Embedding(50, 32)(x)
    h = h + keras.layers.MultiHeadAttention(4, 8, name='mha')(h, h, use_causal_mask=causal)
    h = h + keras.layers.MultiHeadAttention(2, 16, name='mha2')(h, h)
    return keras.Model(x, keras.layers.Dense(50, name='head')(h))

def loss_fn(model, x, training=True):
    return ops.mean(keras.losses.sparse_categorical_crossentropy(x, model(x, training=training), from_logits=True))

def grads(model, x):
    "Gradients of the loss on the active backend, eagerly"
    if BACKEND == 'torch':
        for v in model.trainable_variables: v.value.grad = None
        loss_fn(model, x).backward()
        return [v.value.grad for v in model.trainable_variables]
    if BACKEND == 'tensorflow':
        import tensorflow as tf
        with tf.GradientTape() as tape: loss = loss_fn(model, x)
        return tape.gradient(loss, model.trainable_variables)
    import jax
    tv, ntv = [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]
    def f(tv):
        y, _ = model.stateless_call(tv, ntv, x, training=True)
        return ops.mean(keras.losses.sparse_categorical_crossentropy(x, y, from_logits=True))
    g = jax.grad(f)(tv)
    model(x, training=True)   # the measured forward pass (stateless_call under jax.grad is traced)
    return g

def step(model, opt, x): opt.apply(grads(model, x), model.trainable_variables)

X = np.random.default_rng(0).integers(0, 50, (4, 12)).astype('int32')

def test_measured_logits_are_the_layers_own():
    "The recorded maxima equal the logits computed by hand from the layer's kernels (padding and causal masks)"
    model = attention_model()
    clip = KerasQKClip(model, remeasure=False)
    model(X)
    layer = model.get_layer('mha')
    emb = ops.convert_to_numpy(model.layers[1](X)).astype(np.float64)
    W, b = (ops.convert_to_numpy(v).astype(np.float64) for v in (layer.query_dense.kernel, layer.query_dense.bias))
    Wk, bk = (ops.convert_to_numpy(v).astype(np.float64) for v in (layer.key_dense.kernel, layer.key_dense.bias))
    q, k = np.einsum('btd,dhe->bthe', emb, W) + b, np.einsum('btd,dhe->bthe', emb, Wk) + bk
    s = np.einsum('bthe,bshe->bhts', q, k) / np.sqrt(8)
    s = np.where(np.tril(np.ones((12, 12), bool)), s, -np.inf)
    np.testing.assert_allclose(clip.pending()['mha'], s.max(axis=(0, 2, 3)), rtol=1e-4)

@pytest.mark.parametrize('remeasure', [True, False])
def test_clip_caps_heads_and_leaves_others_bitwise(remeasure):
    plain, clipped = attention_model(), attention_model()
    step(plain, Muon(learning_rate=0.02), X)
    probe = KerasQKClip(attention_model(), remeasure=False)
    for a, b in zip(probe.model.trainable_variables, plain.trainable_variables): a.assign(b)
    probe.model(X); tau = float(np.median(np.concatenate(list(probe.pending().values()))))
    clip = KerasQKClip(clipped, tau=tau, remeasure=remeasure)
    opt = Muon(learning_rate=0.02, step_hooks=[clip])
    step(clipped, opt, X)
    assert clip.last_clipped and sum(map(len, clip.last_clipped.values())) < 6
    clip.model(X); after = clip.pending(); clip._seen, clip._seen_eval = {}, {}
    for name, hit in clip.last_clipped.items():
        if remeasure:   # K2's rule (remeasure=False) caps the pre-update logits; the update may move them (see the torch tests)
            for h in hit: assert after[name][h] <= tau * (1 + 1e-4), (name, h, after[name][h], tau)
        for dense in ('query_dense', 'key_dense'):
            a, b = (ops.convert_to_numpy(getattr(m.get_layer(name), dense).kernel) for m in (plain, clipped))
            for h in set(range(a.shape[-2])) - set(hit): np.testing.assert_array_equal(a[..., h, :], b[..., h, :])
    m = clip.metrics(per_head=True)
    assert m['qk_clip/max_logit'] >= max(m[f'qk_clip/max_logit/{n}'] for n in ('mha', 'mha2'))

def test_builder_muonclip_and_config_round_trip():
    model = attention_model()
    opt = optimizer_builder({'type': 'muonclip', 'qk_clip_tau': 30.0, 'qk_clip_alpha': 0.25}, 0.01, model=model)
    hook = opt.step_hooks[0]
    assert isinstance(hook, KerasQKClip) and hook.tau == 30.0 and hook.alpha == 0.25 and hook.model is model
    back = Muon.from_config(opt.get_config())
    assert back.step_hooks[0].get_config() == dict(tau=30.0, alpha=0.25, remeasure=True, clipped={})
    with pytest.raises(RuntimeError, match='bind'): back.step_hooks[0].apply()
    hook.unbind(); back.step_hooks[0].bind(model)   # one clip per model: the old one lets go first
    with pytest.raises(ConfigError, match="'model'"): optimizer_builder({'type': 'muonclip'}, 0.01)
    with pytest.raises(ConfigError, match="'qk_clip_tau'"): optimizer_builder({'type': 'muonclip', 'qk_clip_tau': -1}, 0.01, model=model)
    with pytest.raises(ConfigError, match="'qk_clip_tau'"): optimizer_builder({'type': 'muonclip', 'qk_clip_tau': '100'}, 0.01, model=model)

def test_fit_on_the_torch_backend_or_a_clear_error_when_traced():
    model = attention_model()
    clip = KerasQKClip(model, tau=1e-3)
    model.compile(optimizer=Muon(learning_rate=0.01, step_hooks=[clip]), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=BACKEND != 'torch')
    model.fit(X, X, epochs=1, batch_size=4, verbose=0)
    assert clip.clipped and clip.max_logits
    if BACKEND != 'torch':
        traced = attention_model()
        traced.compile(optimizer=Muon(learning_rate=0.01, step_hooks=[KerasQKClip(traced, tau=1e-3)]),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=BACKEND == 'jax')
        with pytest.raises(Exception, match='run_eagerly'): traced.fit(X, X, epochs=1, batch_size=4, verbose=0)

def test_callback_for_any_optimizer():
    model = attention_model()
    clip = KerasQKClip(model, tau=1e-3)
    if BACKEND == 'jax':
        with pytest.raises(RuntimeError, match='step_hooks'): clip.callback()
        return
    model.compile(optimizer=keras.optimizers.AdamW(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=BACKEND != 'torch')
    model.fit(X, X, epochs=1, batch_size=4, verbose=0, callbacks=[clip.callback()])
    assert clip.clipped

def test_bad_inputs():
    with pytest.raises(ConfigError, match="'tau'"): KerasQKClip(tau=0)
    with pytest.raises(ConfigError, match="'alpha'"): KerasQKClip(alpha=2)
    with pytest.raises(ValueError, match='MultiHeadAttention'): KerasQKClip(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    np.testing.assert_allclose(keras_max_logits(np.ones((1, 2, 1, 2)), np.ones((1, 2, 1, 2)), 0.5), [1.0])

def test_clip_counts_survive_save_load_and_bind(tmp_path):
    "model.save → load_model → bind: the counts of clipped heads go on, as the torch clip's do"
    model = attention_model()
    clip = KerasQKClip(model, tau=1e-3)
    opt = Muon(learning_rate=0.01, step_hooks=[clip])
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=BACKEND != 'torch')
    model.fit(X, X, epochs=1, batch_size=4, verbose=0)
    counts = dict(clip.clipped)
    assert counts
    model.save(tmp_path / 'm.keras')
    back = keras.models.load_model(tmp_path / 'm.keras')
    hook = back.optimizer.step_hooks[0].bind(back)
    assert hook.clipped == counts

def test_one_clip_per_model_and_eval_forwards():
    model = attention_model()
    clip = KerasQKClip(model, tau=1e-3, remeasure=False)
    with pytest.raises(ConfigError, match='one clip per model'): KerasQKClip(model)
    model(X)                                   # evaluation: reported, never decides
    assert set(clip.pending()) == {'mha', 'mha2'}
    clip.apply(); assert clip.clipped == {}
