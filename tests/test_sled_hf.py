"SLED with a transformers causal LM: layer logits, the greedy loop (cache, padding), on tiny random models"
import pytest
import torch
from dl_optim.sled import SledLogitsProcessor, transformers_layer_logits, sled_generate, final_norm_of
transformers = pytest.importorskip('transformers')

@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(5)

@pytest.fixture(scope='module')
def llama():
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()

@pytest.fixture(scope='module')
def gpt2():
    cfg = transformers.GPT2Config(vocab_size=96, n_embd=48, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(1)
    return transformers.GPT2LMHeadModel(cfg).eval()

def test_layer_logits_convention(llama):
    ids = torch.randint(0, 96, (2, 7))
    with torch.no_grad(): o = llama(ids, output_hidden_states=True)
    z = transformers_layer_logits(llama, o)
    assert z.shape == (4, 2, 96)
    torch.testing.assert_close(z[-1], o.logits[:, -1])
    torch.testing.assert_close(z[1], llama.lm_head(o.hidden_states[1][:, -1]))            # raw state: no final norm
    zn = transformers_layer_logits(llama, o, normalize_early=True, layers=[2], position=3)
    torch.testing.assert_close(zn[0], llama.lm_head(llama.model.norm(o.hidden_states[2][:, 3])))
    with pytest.raises(ValueError, match='layers'): transformers_layer_logits(llama, o, layers=[3])
    with pytest.raises(ValueError, match='output_hidden_states'):
        with torch.no_grad(): transformers_layer_logits(llama, llama(ids))

def test_final_norm_lookup(llama, gpt2):
    assert final_norm_of(llama) is llama.model.norm
    assert final_norm_of(gpt2) is gpt2.transformer.ln_f
    with pytest.raises(ValueError, match='final norm'): final_norm_of(torch.nn.Linear(2, 2))

@pytest.mark.parametrize('name', ['llama', 'gpt2'])
def test_plain_loop_equals_transformers_generate(name, request):
    model = request.getfixturevalue(name)
    ids = torch.randint(1, 96, (2, 5))
    ours = sled_generate(model, ids, max_new_tokens=10)
    ref = model.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert ours.tolist() == ref.tolist()

def test_sled_loop_with_cache_equals_full_recompute(llama):
    "The cached loop gives the tokens of recomputing the whole sequence at every step"
    proc = SledLogitsProcessor(evolution_rate=2.0, evolution_scale=10, inactive_logit_value=-1000.0)
    ids = torch.randint(0, 96, (2, 6))
    ours = sled_generate(llama, ids, proc, max_new_tokens=8)
    seq = ids
    with torch.no_grad():
        for _ in range(8):
            nxt = proc(transformers_layer_logits(llama, llama(seq, output_hidden_states=True))).argmax(-1)
            seq = torch.cat([seq, nxt[:, None]], 1)
    assert ours.tolist() == seq.tolist()
    assert ours.tolist() != sled_generate(llama, ids, max_new_tokens=8).tolist()   # SLED at alpha 2 changes this model's choices

def test_left_padded_batch_equals_rows_alone(llama):
    proc = SledLogitsProcessor(evolution_rate=2.0)
    a, b = torch.randint(1, 96, (1, 7)), torch.randint(1, 96, (1, 4))
    padded = torch.cat([a, torch.cat([torch.zeros(1, 3, dtype=torch.long), b], 1)])
    mask = torch.ones_like(padded); mask[1, :3] = 0
    out = sled_generate(llama, padded, proc, max_new_tokens=6, attention_mask=mask)
    assert out[0].tolist() == sled_generate(llama, a, proc, max_new_tokens=6)[0].tolist()
    assert out[1, 3:].tolist() == sled_generate(llama, b, proc, max_new_tokens=6)[0].tolist()

def test_eos_stops_rows(llama):
    ids = torch.randint(1, 96, (2, 5))
    free = sled_generate(llama, ids, max_new_tokens=6)
    eos = int(free[0, 6])                        # the second token row 0 generates
    out = sled_generate(llama, ids, max_new_tokens=6, eos_token_id=eos)
    assert out[0, 6] == eos and (out[0, 6:] == eos).all()
