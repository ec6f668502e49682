"""Benchmark: one optimizer step on a GPT-2-small-like parameter set, dl_optim Muon against AdamW and torch.optim.Muon.

Run by hand (not in CI): `python bench/muon_step.py [--layers 12] [--d 768] [--vocab 50304] [--rounds 3]`.
Compared in one process, interleaved round by round, medians reported:
- torch.optim.AdamW, foreach and fused, on all parameters;
- torch.optim.Muon on the hidden matrices + torch.optim.AdamW (fused) on the rest (its NS always runs in bf16;
  skipped when its estimated step time exceeds --max-seconds, as on CPUs without bf16 matrix units);
- dl_optim Muon (automatic routing, default NS dtype of the device) with `ns_method='auto'` (the default: Gram
  Newton–Schulz on the matrices where it pays) and with `ns_method='standard'`, and with the AOL start at 4 steps;
- "NS only": dl_optim's orthogonalize on the same matrices, grouped by shape exactly as the optimizer does.
"""
import argparse, json, statistics, time, platform
from collections import defaultdict
from pathlib import Path
import torch
from torch import nn
from dl_optim.muon import Muon
from dl_optim.newton_schulz import orthogonalize, default_ns_dtype, cpu_bf16_speedup
try: from bench.cpu import cpu_kind
except ImportError: from cpu import cpu_kind

class GPTParams(nn.Module):
    "The parameter set of a GPT-2-style model (no forward needed): tied head, fused qkv"
    def __init__(self, layers, d, vocab, ctx=1024):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.h = nn.ModuleList(nn.ModuleDict(dict(ln_1=nn.LayerNorm(d), c_attn=nn.Linear(d, 3 * d), c_proj=nn.Linear(d, d),
                                                  ln_2=nn.LayerNorm(d), c_fc=nn.Linear(d, 4 * d), mlp_proj=nn.Linear(4 * d, d)))
                               for _ in range(layers))
        self.ln_f, self.lm_head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--layers', type=int, default=12); p.add_argument('--d', type=int, default=768)
    p.add_argument('--vocab', type=int, default=50304); p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--threads', type=int, default=2); p.add_argument('--max-seconds', type=float, default=60.0)
    p.add_argument('--out', default='bench/results')
    args = p.parse_args()
    torch.set_num_threads(args.threads); torch.manual_seed(0)
    models = {k: GPTParams(args.layers, args.d, args.vocab) for k in ('adamw_foreach', 'adamw_fused', 'torch_muon', 'dl_optim',
                                                                       'dl_optim_standard', 'dl_optim_aol')}
    for m in models.values():
        for q in m.parameters(): q.grad = torch.randn_like(q) * 1e-3
    hidden = lambda m: [q for n, q in m.named_parameters() if q.ndim == 2 and not n.startswith(('wte', 'wpe'))]
    rest = lambda m: [q for n, q in m.named_parameters() if not (q.ndim == 2 and not n.startswith(('wte', 'wpe')))]
    dl = Muon(models['dl_optim'])
    steps = {'torch.optim.AdamW (foreach)': torch.optim.AdamW(models['adamw_foreach'].parameters(), foreach=True).step,
             'torch.optim.AdamW (fused)': torch.optim.AdamW(models['adamw_fused'].parameters(), fused=True).step,
             "dl_optim Muon (ns_method='auto', default)": dl.step,
             "dl_optim Muon (ns_method='standard')": Muon(models['dl_optim_standard'], ns_method='standard').step,
             "dl_optim Muon (AOL start, 4 steps, auto)": Muon(models['dl_optim_aol'], ns_precondition='aol', ns_steps=4).step}
    mats = [q for q in hidden(models['dl_optim'])]
    flops = sum(5 * (4 * min(q.shape) ** 2 * max(q.shape) + 2 * min(q.shape) ** 3) for q in mats)
    # torch.optim.Muon always runs bf16: about 1.4 GFLOP/s where oneDNN has no bf16 kernels (emulated, AVX2-only CPUs),
    # else the float32 rate (~200 GFLOP/s on 2 cores) times this CPU's measured bf16 speed-up
    kernels = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    bf16_rate = 200e9 * cpu_bf16_speedup() if kernels else 1.4e9
    est_torch_muon = flops / bf16_rate
    if est_torch_muon <= args.max_seconds:
        tm, ta = torch.optim.Muon(hidden(models['torch_muon'])), torch.optim.AdamW(rest(models['torch_muon']), fused=True)
        steps['torch.optim.Muon + AdamW (fused)'] = lambda: (tm.step(), ta.step())
    groups = defaultdict(list)
    for q in mats: groups[tuple(q.shape)].append(q.grad)
    dtype = default_ns_dtype('cpu')
    steps['NS only (same grouping)'] = lambda: [orthogonalize(torch.stack(g), dtype=dtype) for g in groups.values()]
    steps["NS only (same grouping, standard)"] = lambda: [orthogonalize(torch.stack(g), dtype=dtype, method='standard') for g in groups.values()]
    for f in steps.values(): f()   # warm-up (creates optimizer state)
    samples = {k: [] for k in steps}
    for _ in range(args.rounds):
        for k, f in steps.items(): samples[k].append(timed(f))
    med = {k: statistics.median(v) for k, v in samples.items()}
    n_params = sum(q.numel() for q in models['dl_optim'].parameters())
    lines = [f"Parameter set: {args.layers} layers, d={args.d}, vocab {args.vocab} ({n_params / 1e6:.1f} M parameters; "
             f"{sum(q.numel() for q in mats) / 1e6:.1f} M in {len(mats)} hidden matrices, NS {flops / 1e9:.0f} GFLOP/step). "
             f"CPU: {cpu_kind()}; {args.threads} threads, torch {torch.__version__}; "
             f"medians of {args.rounds} interleaved rounds.", '',
             '| optimizer | step (ms) | × fused AdamW | × NS only | × the standard-NS row |', '|---|---|---|---|---|']
    std = {'Muon': med["dl_optim Muon (ns_method='standard')"], 'NS': med['NS only (same grouping, standard)']}
    for k, t in med.items():
        ref = std['NS'] if k.startswith('NS only') else std['Muon'] if k.startswith('dl_optim') else None
        lines.append(f"| {k} | {t * 1e3:.1f} | {t / med['torch.optim.AdamW (fused)']:.1f} | {t / med['NS only (same grouping)']:.3f} | "
                     f"{f'{t / ref:.2f}' if ref else ''} |")
    if 'torch.optim.Muon + AdamW (fused)' not in med:
        lines.append(f"| torch.optim.Muon + AdamW (fused) | not run: its bf16 NS would take ≈ {est_torch_muon:.0f} s per step here | | | |")
    table = '\n'.join(lines)
    print(table)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'muon_step.md').write_text(table + '\n')
    (out / 'muon_step.json').write_text(json.dumps(dict(median_s=med, samples=samples, args=vars(args)), indent=1))

if __name__ == '__main__': main()
