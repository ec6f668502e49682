"Routing on real models: golden tables for the zoo, the four input forms, and Keras EinsumDense splits from equations"
import json, math, warnings
import numpy as np
import pytest
import torch
from hypothesis import given, settings, HealthCheck, strategies as st
import routing_zoo as Z
from dl_optim.muon import Muon

GOLD_TORCH = json.loads((Z.GOLDEN / 'routing_zoo_torch.json').read_text())
GOLD_KERAS = json.loads((Z.GOLDEN / 'routing_zoo_keras.json').read_text())

@pytest.mark.parametrize('name', sorted(Z.TORCH_ZOO))
def test_torch_zoo_equals_golden(name):
    "Every row (route, matrix view, LR scale, by-shape flag) of every zoo model; a changed rule fails here"
    got = Z.torch_table(name)
    assert got == GOLD_TORCH[name], {k: (v, GOLD_TORCH[name].get(k)) for k, v in got.items() if v != GOLD_TORCH[name].get(k)}

@pytest.mark.keras
@pytest.mark.parametrize('name', sorted(GOLD_KERAS))
def test_keras_zoo_equals_golden(name):
    import dl_optim  # noqa: F401
    assert Z.keras_table(name) == GOLD_KERAS[name]

def _embeddings_and_heads(model):
    "The tensors that must never be orthogonalized silently: embedding tables and output heads"
    out = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    out.add(id(model.get_output_embeddings().weight))
    return out

FORMS = {'module': lambda m: dict(params=m), 'named_parameters': lambda m: dict(params=m.named_parameters()),
         'plain tensors': lambda m: dict(params=list(m.parameters())),
         'groups': lambda m: dict(params=[{'params': list(m.parameters()), 'weight_decay': 0.0}]),
         'plain tensors, model=': lambda m: dict(params=list(m.parameters()), model=m)}

@pytest.mark.parametrize('form', list(FORMS))
@pytest.mark.parametrize('name', ['gpt2_tied', 'llama_untied', 'llama_tied', 'mamba'])
def test_no_embedding_or_head_reaches_muon_silently(name, form):
    model = Z.TORCH_ZOO[name]()
    special = _embeddings_and_heads(model)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        opt = Muon(**FORMS[form](model))
    on_muon = {id(p) for g in opt.param_groups if g['use_muon'] for p in g['params']}
    warned = any('by their shape alone' in str(x.message) for x in w)
    assert not (on_muon & special) or warned, (name, form)
    if form in ('module', 'plain tensors, model='): assert not (on_muon & special) and not warned

def test_trainer_recipe_routes_right():
    "transformers' Trainer passes plain tensors in groups: with model= they route exactly as the module does"
    model = Z.gpt2()
    groups = [{'params': [p for n, p in model.named_parameters() if 'ln' not in n and 'bias' not in n], 'weight_decay': 0.1},
              {'params': [p for n, p in model.named_parameters() if 'ln' in n or 'bias' in n], 'weight_decay': 0.0}]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        opt = Muon(groups, model=model, lr=0.02)
    routes = {r.name: r.route for r in opt.routing_report()}
    assert routes == {r.name: r.route for r in Muon(model).routing_report()}

def test_gpt2_conv1d_layout_and_scale():
    "transformers' Conv1D stores (in, out): c_attn is 32 → 96 (scale √3), c_fc 32 → 128 (scale 2), c_proj 1"
    rows = GOLD_TORCH['gpt2_tied']
    assert rows['transformer.h.0.attn.c_attn.weight'][1:3] == [[96, 32], 1.732051]
    assert rows['transformer.h.0.mlp.c_fc.weight'][1:3] == [[128, 32], 2.0]
    assert rows['transformer.h.0.mlp.c_proj.weight'][1:3] == [[32, 128], 1.0]

def test_conv1d_update_is_the_transposed_linear_update():
    "Muon on a Conv1D weight (in, out) equals Muon on the same map stored as an nn.Linear (out, in), transposed"
    T = Z._hf()
    from transformers.pytorch_utils import Conv1D
    torch.manual_seed(0)
    c = Conv1D(24, 8); lin = torch.nn.Linear(8, 24)
    with torch.no_grad(): lin.weight.copy_(c.weight.T); lin.bias.copy_(c.bias)
    oc, ol = Muon(torch.nn.Sequential(c, torch.nn.Linear(24, 2)), ns_dtype=torch.float32), Muon(torch.nn.Sequential(lin, torch.nn.Linear(24, 2)), ns_dtype=torch.float32)
    g = torch.randn(24, 8)
    c.weight.grad, lin.weight.grad = g.T.clone(), g.clone()
    oc.step(); ol.step()
    torch.testing.assert_close(c.weight.T, lin.weight, atol=1e-6, rtol=0)

def test_qkv_and_per_head_split():
    "Opt-in finer views: a fused QKV as three blocks, attention projections per head (GQA: fewer key/value heads)"
    model = Z.gpt2()
    rep = {r.name: r for r in Muon(model, qkv_names=['c_attn']).routing_report()}
    assert rep['transformer.h.0.attn.c_attn.weight'].view.shape == (3, 32, 32)
    rep = {r.name: r for r in Muon(model, per_head_names=['c_attn'], head_dim=8).routing_report()}
    assert rep['transformer.h.0.attn.c_attn.weight'].view.shape == (12, 8, 32)
    llama = Z.llama(False)
    rep = {r.name: r for r in Muon(llama, per_head_names=['q_proj', 'k_proj', 'v_proj'], head_dim=8).routing_report()}
    assert rep['model.layers.0.self_attn.q_proj.weight'].view.shape == (4, 8, 32)
    assert rep['model.layers.0.self_attn.k_proj.weight'].view.shape == (2, 8, 32)
    opt = Muon(llama, per_head_names=['q_proj'], head_dim=8, ns_dtype=torch.float32)
    W = llama.model.layers[0].self_attn.q_proj.weight
    for p in llama.parameters(): p.grad = torch.zeros_like(p)
    W.grad = torch.randn(W.shape, generator=torch.Generator().manual_seed(0))
    before = W.detach().clone(); opt.step()
    delta = (before - W.detach()).reshape(4, 8, 32)   # each head's block is itself (nearly) orthogonal: rows orthonormal
    for blk in delta:
        s = torch.linalg.svdvals(blk); assert float(s.max() / s.min()) < 1.5
    with pytest.raises(Exception, match='head_dim'): Muon(llama, per_head_names=['q_proj'])

@pytest.mark.keras
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 4), st.integers(1, 48), st.integers(1, 48), st.integers(2, 40))
def test_einsum_split_is_exact_for_multi_head_attention(heads, key_dim, value_dim, d_model):
    "For any MHA (key_dim, value_dim, heads, d_model independent) the view is (output axes × input axes) of the equation"
    import dl_optim  # noqa: F401
    import keras
    from dl_optim.keras_muon import Muon as KMuon, einsum_in_axes
    inp = keras.Input((3, d_model))
    mha = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=key_dim, value_dim=value_dim)
    model = keras.Model(inp, keras.layers.Dense(2)(mha(inp, inp)))
    routes = {r.name: r for r in KMuon.for_model(model).routing_report(model.trainable_variables)}
    for dense in (mha._query_dense, mha._key_dense, mha._value_dense, mha._output_dense):
        k = dense.kernel; ax = einsum_in_axes(dense.equation)
        want_in = math.prod(k.shape[i] for i in ax); want_out = math.prod(k.shape) // want_in
        r = routes[k.path]
        if r.route == 'muon': assert (r.view.rows, r.view.cols) == (want_out, want_in)
        else: assert 1 in (want_in, want_out) or 'dimension of 1' in r.reason
    # without the model, the names Keras gives the projections give the same split
    plain = {r.name: r for r in KMuon().routing_report(model.trainable_variables)}
    for path, r in routes.items():
        if r.route == 'muon' and 'multi_head_attention' in path: assert plain[path].view == r.view

@pytest.mark.keras
def test_keras_build_warns_without_a_head():
    import dl_optim  # noqa: F401
    import keras
    from dl_optim.keras_muon import Muon as KMuon
    keras.backend.clear_session()
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(3, name='output_projection')])
    with pytest.warns(UserWarning, match='no output head'): KMuon().build(m.trainable_variables)
    opt = KMuon.for_model(m)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        opt.build(m.trainable_variables)
    assert [r.route for r in opt.routing_report(m.trainable_variables)][-2] == 'adamw'   # output_projection kernel
    again = KMuon.from_config(opt.get_config())   # saved with the optimizer
    assert [r.route for r in again.routing_report(m.trainable_variables)] == [r.route for r in opt.routing_report(m.trainable_variables)]
