"""Benchmark: dl_optim's Newton–Schulz kernel against this machine's matrix-multiply rate and torch.optim.Muon's own NS.

Run by hand (not in CI): `python bench/newton_schulz.py [--rounds 5] [--threads 2] [--max-call-seconds 20]`.
On CPUs without native bf16 (AVX2 only) bf16 matmuls run at about 1 GFLOP/s, so bf16 cases there are timed once or skipped.
Everything compared is timed in one process, interleaved round by round; the table reports medians.
FLOPs of T steps on an m×n input (m ≤ n after transposing): T·(4m²n + 2m³) per matrix (cubic steps: T·4m²n).
"""
import argparse, json, platform, statistics, time
from pathlib import Path
import torch
from torch.optim._muon import _zeropower_via_newtonschulz as torch_ns
from dl_optim.newton_schulz import orthogonalize, default_ns_dtype

SHAPES = [((768, 768), 1), ((768, 3072), 1), ((3072, 768), 1), ((1024, 4096), 1), ((2048, 2048), 1), ((768, 768), 12)]

def ns_flops(m, n, batch=1, steps=5):
    m, n = min(m, n), max(m, n)
    return batch * steps * (4 * m * m * n + 2 * m ** 3)

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def gemm_ceiling(dtype, sizes=(1024, 1536, 2048), rounds=5):
    "Max over sizes of the median rate of a bare square torch.mm"
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        t = statistics.median(timed(lambda: a @ b) for _ in range(rounds))
        best = max(best, 2 * n ** 3 / t / 1e9)
    return best

def bare_mms(G, dtype, steps=5):
    "The same matrix products as NS (X·Xᵀ, A·A, B·X per step) with nothing around them"
    X = (G.mT if G.size(-2) > G.size(-1) else G).to(dtype).contiguous()
    def run():
        for _ in range(steps):
            A = X @ X.mT
            B = A @ A
            B @ X
    return run

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--max-call-seconds', type=float, default=20.0, help='skip a case whose single call would take longer')
    p.add_argument('--slow-seconds', type=float, default=2.0, help='time a case once, without warm-up, above this estimate')
    p.add_argument('--out', default='bench/results')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtypes = [torch.float32, torch.bfloat16]
    ceiling = {dt: gemm_ceiling(dt, sizes=(1024, 1536, 2048) if dt == torch.float32 or default_ns_dtype('cpu') == torch.bfloat16 else (256,), rounds=3)
               for dt in dtypes}
    print('GEMM ceiling (GFLOP/s):', {str(k): round(v, 1) for k, v in ceiling.items()})
    rows = []
    for (m, n), batch in SHAPES:
        G = torch.randn(batch, m, n) if batch > 1 else torch.randn(m, n)
        flops = ns_flops(m, n, batch)
        cases, slow = {}, set()   # slow: a single call would take over --slow-seconds; timed once, no warm-up
        est = {dt: flops / (ceiling[dt] * 1e9) for dt in dtypes}
        for dt in dtypes:
            if est[dt] > args.max_call_seconds: continue
            name = f'dl_optim {str(dt)[6:]}'
            cases[name] = lambda dt=dt: orthogonalize(G, 'polar_express', dtype=dt, method='standard')   # the kernel itself (Gram: ns_methods.py)
            if est[dt] > args.slow_seconds: slow.add(name)
            else: cases[f'bare mm {str(dt)[6:]}'] = bare_mms(G, dt) if batch == 1 else (lambda dt=dt: [bare_mms(g, dt)() for g in G])
        if est[torch.bfloat16] <= args.max_call_seconds:   # torch's NS always runs in bf16, 2-D only
            mats = [G] if batch == 1 else list(G)
            cases['torch.optim.Muon NS (bf16)'] = lambda: [torch_ns(g, (3.4445, -4.775, 2.0315), 5, 1e-7) for g in mats]
            if est[torch.bfloat16] > args.slow_seconds: slow.add('torch.optim.Muon NS (bf16)')
        for k, fn in cases.items():
            if k not in slow: fn()   # warm-up
        samples = {k: [] for k in cases}
        for r in range(args.rounds):
            for k, fn in cases.items():
                if k not in slow or r == 0: samples[k].append(timed(fn))
        for k, ts in samples.items():
            t = statistics.median(ts)
            dt = torch.bfloat16 if 'bf16' in k or 'bfloat16' in k else torch.float32
            rows.append(dict(shape=f'{batch}×({m},{n})' if batch > 1 else f'({m},{n})', impl=k + (' (1 call)' if k in slow else ''),
                             ms=t * 1e3, gflops=flops / t / 1e9, pct_ceiling=100 * flops / t / 1e9 / ceiling[dt]))
        for k in [k for k in samples if k.startswith('dl_optim') and k not in slow]:
            bare = next(r for r in rows if r['shape'] == rows[-1]['shape'] and r['impl'] == k.replace('dl_optim', 'bare mm'))
            mine = next(r for r in rows if r['shape'] == rows[-1]['shape'] and r['impl'] == k)
            mine['pct_bare'] = 100 * bare['ms'] / mine['ms']
        print(f"{rows[-1]['shape']}: " + ', '.join(f"{r['impl']} {r['ms']:.1f} ms" for r in rows if r['shape'] == rows[-1]['shape']), flush=True)
    lines = [f'Machine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}; '
             f'GEMM ceiling fp32 {ceiling[torch.float32]:.0f} GFLOP/s, bf16 {ceiling[torch.bfloat16]:.1f} GFLOP/s; '
             f'medians of {args.rounds} interleaved rounds.', '',
             '| shape | implementation | ms | GFLOP/s | % of GEMM ceiling | % of bare matmuls |', '|---|---|---|---|---|---|']
    for r in rows:
        if r['impl'].startswith('bare'): continue
        lines.append(f"| {r['shape']} | {r['impl']} | {r['ms']:.1f} | {r['gflops']:.1f} | {r['pct_ceiling']:.0f} % | "
                     f"{r.get('pct_bare', float('nan')):.0f} % |" if 'pct_bare' in r else
                     f"| {r['shape']} | {r['impl']} | {r['ms']:.1f} | {r['gflops']:.1f} | {r['pct_ceiling']:.0f} % | – |")
    table = '\n'.join(lines)
    print('\n' + table)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'newton_schulz.md').write_text(table + '\n')
    (out / 'newton_schulz.json').write_text(json.dumps(dict(ceiling={str(k): v for k, v in ceiling.items()}, rows=rows), indent=1))

if __name__ == '__main__': main()
