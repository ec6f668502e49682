"""Benchmark: one SLED decoding step against the LM-head projections it needs, per vocabulary size and depth.

Run by hand (not in CI): `python bench/sled.py [--rounds 15] [--batch 1] [--threads 1]`.
For each (vocab V, early layers L, hidden size d) it times, in one process, interleaved round by round (medians):
- the final LM-head projection [B, d] @ [d, V] (what plain decoding pays),
- all L early-layer projections as one [L·B, d] @ [d, V] matmul (what SLED adds before its own arithmetic),
- dl_optim's SledLogitsProcessor on the L + 1 logit rows (torch, float32), T = 1 and T = 10;
and the peak of the tensor memory one processor call allocates (output included; counted by a TorchDispatchMode that
tracks every storage the call creates until it is freed: RSS cannot see allocations this small) at batch 1 and 8; an [B, k, V] one-hot design would add
B·k·V·4 bytes per tensor on top (k = 10, V = 128256, B = 8: 41 MB each). Threads are pinned (default 1): on a shared 2-core machine
unpinned torch timings vary by large factors.
"""
import argparse, json, platform, statistics, time, weakref
from pathlib import Path
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from dl_optim.sled import SledLogitsProcessor

CONFIGS = [(32000, 12, 4096), (32000, 32, 4096), (50257, 12, 768), (50257, 32, 768), (128256, 12, 4096), (128256, 32, 4096)]

def median_ms(fn, rounds):
    fn()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)

class LiveTensorPeak(TorchDispatchMode):
    "Peak bytes of tensor storage allocated by the ops run inside the mode and still alive (views count once)"
    def __init__(self):
        super().__init__(); self.refs, self.current, self.peak = {}, 0, 0
    def _release(self, ptr):
        self.refs[ptr][1] -= 1
        if self.refs[ptr][1] == 0: self.current -= self.refs.pop(ptr)[0]
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        known = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor): continue
            ptr = t.untyped_storage().data_ptr()
            if ptr in known and ptr not in self.refs: continue
            if ptr not in self.refs:
                self.refs[ptr] = [t.untyped_storage().nbytes(), 0]; self.current += self.refs[ptr][0]
            self.refs[ptr][1] += 1
            weakref.finalize(t, self._release, ptr)
        self.peak = max(self.peak, self.current)
        return out

def peak_mb(V, L, B):
    "Peak MB of tensors one processor call allocates (its output included), counted at the torch dispatch level"
    x = torch.randn(L + 1, B, V)
    with LiveTensorPeak() as m: SledLogitsProcessor(evolution_rate=2.0)(x)
    return m.peak / 2 ** 20

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=15); p.add_argument('--batch', type=int, default=1)
    p.add_argument('--threads', type=int, default=1); p.add_argument('--quick', action='store_true')
    p.add_argument('--out', default='bench/results')
    args = p.parse_args()
    torch.set_num_threads(args.threads); torch.manual_seed(0)
    configs = CONFIGS[:1] if args.quick else CONFIGS
    rows = []
    for V, L, d in configs:
        B = args.batch
        W = torch.randn(V, d) / d ** 0.5
        h_final, h_early = torch.randn(B, d), torch.randn(L * B, d)
        x = torch.randn(L + 1, B, V) * 3
        p1, p10 = SledLogitsProcessor(evolution_rate=2.0), SledLogitsProcessor(evolution_rate=2.0, num_steps=10)
        fns = {'head': lambda: h_final @ W.T, 'early heads': lambda: h_early @ W.T, 'sled T=1': lambda: p1(x), 'sled T=10': lambda: p10(x)}
        times = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, fn in fns.items(): times[k].append(median_ms(fn, 1))
        r = dict(V=V, L=L, d=d, B=B, **{k: statistics.median(v) for k, v in times.items()},
                 peak_mb=peak_mb(V, L, B), inputs_mb=(L + 1) * B * V * 4 / 2 ** 20,
                 peak8_mb=peak_mb(V, L, 8))
        rows.append(r)
        print(json.dumps(r), flush=True)
    lines = [f'SLED step vs LM-head projections; torch {torch.__version__}, {platform.machine()}, {args.threads} thread(s), '
             f'batch {args.batch}, float32, median of {args.rounds} interleaved rounds (ms)\n',
             '| V | early layers L | d | final head | L early heads (1 matmul) | SLED T=1 | SLED T=10 | SLED T=1 / final head | peak allocated, B = 1 (MB) | inputs, B = 1 (MB) | peak allocated, B = 8 (MB) |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['V']} | {r['L']} | {r['d']} | {r['head']:.2f} | {r['early heads']:.1f} | {r['sled T=1']:.2f} | "
                     f"{r['sled T=10']:.2f} | {r['sled T=1'] / r['head']:.2f}× | {r['peak_mb']:.1f} | {r['inputs_mb']:.1f} | {r['peak8_mb']:.1f} |")
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'sled.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
