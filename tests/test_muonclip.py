"QK-clip on real attention: transformers Llama (GQA) and GPT-2, nn.MultiheadAttention, a user's own attention, DistMuon on 2 gloo ranks"
import copy, math
import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, GPT2Config, GPT2LMHeadModel
from dl_optim.muon import Muon
from dl_optim.muonclip import QKClip, QKBlock, MuonClip, attach_qk_clip, qk_block, record_qk, max_logits
from dl_optim.experiments.race import CharGPT
from test_distributed import _run

def _rows(b:QKBlock, w, start, i, bias=False):
    "One head's slice of a weight (or bias) as a detached copy"
    s = slice(start + i * b.head_dim, start + (i + 1) * b.head_dim)
    return (w.detach()[s] if bias or b.out_axis == 0 else w.detach()[:, s]).clone()

def twin_step(model, batch, loss_fn, quantile=0.5, make_opt=lambda m: Muon(m, lr=0.01), **clip_args):
    "One step with and without QK-clip from the same state; tau between the heads' maxima after the plain step"
    plain, clipped = model, copy.deepcopy(model)
    oa = make_opt(plain)
    oa.zero_grad(); loss_fn(plain, batch).backward(); oa.step()
    probe = QKClip(plain)
    with torch.no_grad(): loss_fn(plain, batch)
    tau = float(torch.cat(list(probe.pending().values())).quantile(quantile)); probe.remove()
    ob = make_opt(clipped)
    clip = attach_qk_clip(ob, clipped, tau=tau, **clip_args)
    ob.zero_grad(); loss_fn(clipped, batch).backward(); ob.step()
    return plain, clipped, clip, tau

def check(plain, clipped, clip, tau, batch, loss_fn):
    "Clipped heads ≤ tau on the same batch; every query/key head left alone is bitwise the plain step's (biases too)"
    with torch.no_grad(): loss_fn(clipped, batch)
    after = clip.pending(); clip._seen, clip._seen_eval = {}, {}
    assert clip.last_clipped, 'nothing clipped: the check would not check anything'
    assert sum(map(len, clip.last_clipped.values())) < sum(b.num_heads for b in clip.blocks.values()), 'every head clipped'
    ref = {b.name: b for b in (qk_block(m, n) for n, m in plain.named_modules()) if b is not None}
    for b in clip.blocks.values():
        a, hit, g = ref[b.name], clip.last_clipped.get(b.name, []), b.num_heads // b.num_kv_heads
        for h in hit: assert after[b.name][h] <= tau * (1 + 1e-4), (b.name, h, float(after[b.name][h]), tau)
        for h in set(range(b.num_heads)) - set(hit):
            assert torch.equal(_rows(b, b.q_weight, b.q_start, h), _rows(a, a.q_weight, a.q_start, h)), (b.name, 'q', h)
            if b.q_bias is not None: assert torch.equal(_rows(b, b.q_bias, b.q_start, h, True), _rows(a, a.q_bias, a.q_start, h, True))
        for j in range(b.num_kv_heads):
            if not all(h in hit for h in range(j * g, (j + 1) * g)):
                assert torch.equal(_rows(b, b.k_weight, b.k_start, j), _rows(a, a.k_weight, a.k_start, j)), (b.name, 'k', j)
    return clip

lm_loss = lambda m, x: m(x, labels=x).loss

@pytest.mark.parametrize('impl', ['sdpa', 'eager'])
def test_llama_gqa(impl):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
                      num_key_value_heads=2, max_position_embeddings=64, attn_implementation=impl)
    x = torch.randint(0, 64, (3, 20))
    clip = check(*twin_step(LlamaForCausalLM(cfg), x, lm_loss), x, lm_loss)
    assert clip.metrics(per_head=True)['qk_clip/max_logit'] > 0
    clip.remove()

def test_gpt2_fused_conv1d_with_biases():
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    x = torch.randint(0, 64, (3, 20))
    plain, clipped, clip, tau = twin_step(GPT2LMHeadModel(cfg), x, lm_loss)
    check(plain, clipped, clip, tau, x, lm_loss)

@pytest.mark.parametrize('batch_first', [True, False])
def test_multihead_attention_masks_and_separate_kdim(batch_first):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.ctx = nn.Embedding(40, 32), nn.Embedding(40, 16)
            self.self_attn = nn.MultiheadAttention(32, 4, batch_first=batch_first)
            self.cross = nn.MultiheadAttention(32, 4, kdim=16, vdim=16, batch_first=batch_first)
            self.head = nn.Linear(32, 40)
        def forward(self, x):
            h, c = self.emb(x), self.ctx(x.flip(1))
            t = (lambda a: a) if batch_first else (lambda a: a.transpose(0, 1))
            causal = nn.Transformer.generate_square_subsequent_mask(x.shape[1])            # float additive
            pad = torch.zeros(x.shape, dtype=torch.bool); pad[0, -3:] = True              # bool: True = ignore
            h = h + t(self.self_attn(t(h), t(h), t(h), attn_mask=causal, need_weights=False)[0])
            h = h + t(self.cross(t(h), t(c), t(c), key_padding_mask=pad, need_weights=False)[0])
            return self.head(h)
    loss = lambda m, x: nn.functional.cross_entropy(m(x).flatten(0, 1), x.flatten())
    torch.manual_seed(2)
    x = torch.randint(0, 40, (3, 12))
    check(*twin_step(Net(), x, loss, quantile=0.5, make_opt=lambda m: torch.optim.AdamW(m.parameters(), lr=0.05)), x, loss)

def test_measured_logits_are_the_real_ones():
    "What the clip records for nn.MultiheadAttention equals the logits computed by hand from its weights and masks"
    torch.manual_seed(3)
    m = nn.MultiheadAttention(16, 2, batch_first=True)
    q_in, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool); pad[1, 4:] = True
    clip = QKClip(m)
    with torch.no_grad(): m(q_in, kv, kv, key_padding_mask=pad)
    W, b = m.in_proj_weight, m.in_proj_bias
    q = (q_in @ W[:16].T + b[:16]).view(2, 5, 2, 8).transpose(1, 2)
    k = (kv @ W[16:32].T + b[16:32]).view(2, 7, 2, 8).transpose(1, 2)
    s = (q @ k.mT / 8 ** 0.5).masked_fill(pad[:, None, None, :], -math.inf)
    torch.testing.assert_close(clip.pending()[''], s.detach().amax(dim=(0, 2, 3)))

def test_user_attention_with_record_qk_and_muonclip():
    "The race model's own attention (fused qkv, record_qk, qk_block) through MuonClip"
    torch.manual_seed(4)
    x = torch.randint(0, 256, (4, 32))
    loss = lambda m, x: nn.functional.cross_entropy(m(x).flatten(0, 1), x.roll(-1, 1).flatten())
    model = CharGPT(layers=2, d=64, heads=4, ctx=32)
    check(*twin_step(model, x, loss, quantile=0.5), x, loss)
    opt = MuonClip(CharGPT(layers=2, d=64, heads=4, ctx=32), lr=0.05, qk_clip_tau=1e-3)
    assert len(opt.qk_clip.blocks) == 2 and opt.qk_clip.remeasure

def test_kimi_rule_without_remeasure_caps_the_measured_logits():
    "remeasure=False (K2's rule): the heads over tau in the forward pass are scaled by exactly tau / S_max"
    torch.manual_seed(5)
    x = torch.randint(0, 256, (4, 32))
    loss = lambda m, x: nn.functional.cross_entropy(m(x).flatten(0, 1), x.roll(-1, 1).flatten())
    model = CharGPT(layers=1, d=32, heads=2, ctx=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)   # no update: the measured logits are those of the weights clipped
    clip = attach_qk_clip(opt, model, tau=1e-3, remeasure=False)
    opt.zero_grad(); loss(model, x).backward(); opt.step()
    assert clip.last_clipped
    with torch.no_grad(): loss(model, x)
    assert all(float(v.max()) <= 1e-3 * (1 + 1e-4) for v in clip.pending().values())

def test_bad_inputs_are_errors():
    m = CharGPT(layers=1, d=32, heads=2, ctx=32)
    for kw, key in ((dict(tau=0), "'tau'"), (dict(tau=-1.0), "'tau'"), (dict(alpha=1.5), "'alpha'"), (dict(remeasure='yes'), "'remeasure'")):
        with pytest.raises(Exception, match=key): QKClip(m, **kw)
    with pytest.raises(ValueError, match='no attention layer'): QKClip(nn.Linear(3, 3))
    with pytest.raises(ValueError, match='evenly'): max_logits(torch.zeros(1, 3, 2, 4), torch.zeros(1, 2, 2, 4), 1.0)

def test_state_dict_and_remove():
    torch.manual_seed(6)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2))
    x = torch.randint(0, 64, (2, 12))
    opt = MuonClip(model, lr=0.02, qk_clip_tau=1e-3)
    opt.zero_grad(); lm_loss(model, x).backward(); opt.step()
    assert model.config._attn_implementation == 'qk_clip_sdpa'
    sd = opt.state_dict()
    again = MuonClip(copy.deepcopy(model), lr=0.02, qk_clip_tau=1e-3); again.load_state_dict(sd)
    assert again.qk_clip.clipped == opt.qk_clip.clipped and opt.qk_clip.clipped
    again.qk_clip.remove(); opt.qk_clip.remove()
    assert model.config._attn_implementation == 'sdpa' and not hasattr(model.model.layers[0].self_attn, '_qk_clip')

class AttnNet(nn.Module):
    "One self-attention layer over an embedding (nn.MultiheadAttention: in_proj_weight goes to Muon)"
    def __init__(self):
        super().__init__()
        self.emb, self.attn, self.head = nn.Embedding(32, 32), nn.MultiheadAttention(32, 4, batch_first=True), nn.Linear(32, 32)
    def forward(self, x): h = self.emb(x); return self.head(self.attn(h, h, h, need_weights=False)[0])

def _batch(rank, step): g = torch.Generator().manual_seed(100 * step + rank); return torch.randint(0, 32, (4, 10), generator=g)
_loss = lambda m, x: nn.functional.cross_entropy(m(x).flatten(0, 1), x.flatten())
_KW = dict(lr=0.05, adam_lr=3e-3, ns_dtype=torch.float32)

def _dist_clip(rank, world, tmp):
    from dl_optim.distributed import DistMuon
    torch.manual_seed(0); model = AttnNet()
    opt = DistMuon(model, **_KW); clip = attach_qk_clip(opt, model, tau=0.3)
    torch.manual_seed(0); ref = AttnNet()
    ref_opt = Muon(ref, **_KW); ref_clip = attach_qk_clip(ref_opt, ref, tau=0.3)
    for step in range(3):
        opt.zero_grad(); _loss(model, _batch(rank, step)).backward(); opt.step()
        ref_opt.zero_grad(); (sum(_loss(ref, _batch(r, step)) for r in range(world)) / world).backward(); ref_opt.step()
        assert clip.last_clipped == ref_clip.last_clipped, (step, clip.last_clipped, ref_clip.last_clipped)
    assert sum(clip.clipped.values()) > 0
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        # Adam divides a near-zero gradient by its own RMS: a last-bit difference in the reduction order moves such
        # a bias coordinate by up to ~lr·1e-2 over three steps; Muon's matrices agree to 1e-5
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5 if p.ndim > 1 else 1e-4, msg=lambda m: f'{n}: {m}')

@pytest.mark.distributed
@pytest.mark.parametrize('world', [2])
def test_distmuon_with_qk_clip_equals_single_process(world):
    _run(_dist_clip, world)
