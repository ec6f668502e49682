"SLED through keras.ops on the active backend: equals the torch path, traces under the backend's jit"
import math
import numpy as np
import pytest
import torch
from dl_optim.sled import SledLogitsProcessor
import keras
from keras import ops

pytestmark = pytest.mark.keras
BACKEND = keras.backend.backend()

def layers(L, B, V, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    final = rng.normal(size=(B, V)) * scale
    return np.stack([final + rng.normal(size=(B, V)) * scale for _ in range(L)] + [final]).astype('float32')

def jit(fn):
    "The active backend's compiler"
    if BACKEND == 'jax':
        import jax
        return jax.jit(fn)
    if BACKEND == 'tensorflow':
        import tensorflow as tf
        return tf.function(fn, jit_compile=False)
    return torch.compile(fn, fullgraph=True, backend='eager')

def backend_tensor(x):
    "A tensor of the active backend that is not a torch tensor on the torch backend either (numpy goes through keras.ops)"
    return ops.convert_to_tensor(x)

@pytest.mark.parametrize('T', [1, 10])
def test_keras_path_equals_torch_path(T):
    x = layers(8, 3, 5000, seed=T)
    proc = SledLogitsProcessor(evolution_rate=2.0, evolution_scale=20, num_steps=T, inactive_logit_value=-1000.0)
    via_keras = ops.convert_to_numpy(proc([x[i] for i in range(len(x))]))   # numpy input: keras.ops on the backend
    np.testing.assert_allclose(via_keras, proc(torch.tensor(x)).numpy(), atol=2e-5, rtol=0)

def test_stacked_backend_tensor_and_dtype():
    x = layers(4, 2, 300, seed=3)
    out = SledLogitsProcessor()(backend_tensor(x.astype('float16')))
    assert keras.backend.standardize_dtype(out.dtype) == 'float16'
    kept = ops.convert_to_numpy(out).astype('float32')
    assert set(np.unique(kept[kept < -1e4]).tolist()) == {-65504.0}

def test_jit_matches_eager():
    x = [backend_tensor(a) for a in layers(5, 2, 800, seed=4)]
    proc = SledLogitsProcessor(evolution_rate=2.0, num_steps=3)
    np.testing.assert_allclose(ops.convert_to_numpy(jit(proc.__call__)(x)), ops.convert_to_numpy(proc(x)), atol=1e-5)

def test_non_finite_eager_error_and_nan_rows_under_jit():
    x = layers(3, 3, 200, seed=5)
    clean = ops.convert_to_numpy(SledLogitsProcessor()(list(x)))
    x[0, 1, 3] = -math.inf
    with pytest.raises(ValueError, match=r'layers \[0\]'): SledLogitsProcessor()(list(x))
    out = ops.convert_to_numpy(jit(SledLogitsProcessor().__call__)([backend_tensor(a) for a in x]))
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[[0, 2]], clean[[0, 2]], atol=1e-6)
