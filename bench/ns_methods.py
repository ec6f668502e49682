"""Benchmark: standard against Gram Newton–Schulz, with and without the AOL-preconditioned start, on real shapes.

Run by hand (not in CI): `python bench/ns_methods.py [--rounds 5] [--threads 2] [--big-rounds 1] [--skip-big | --only-big]
[--dtypes float32,bfloat16] [--layers 12]`.
Shapes: the GPT-2-small matrix set (per layer c_attn 768×2304, attention proj 768×768, c_fc 768×3072, MLP proj
3072×768; timed as the 12-layer stacks Muon orthogonalizes in one batched call) and the two shapes DeepSpeed
reported for its Gram default ((2048, 11059), (3584, 19353)). Every case of a shape is timed in the same process,
interleaved round by round; the table reports medians and the ratio to standard 5-step Newton–Schulz, next to the
ratio of multiply-adds (`dl_optim.gram_ns.ns_products`, restarts included). Dtypes: the CPU's default NS dtype, and
float32 by default; `--dtypes` times others too (bf16 on a CPU without bf16 units is emulated: its times say nothing
about bf16 hardware, only the ratios between methods are of interest).
"""
import argparse, json, statistics, time
from pathlib import Path
import torch
from dl_optim.newton_schulz import orthogonalize, default_ns_dtype, ns_schedule
from dl_optim.gram_ns import ns_products, restart_steps
from dl_optim.muon_core import check_ns_dtype_name
try: from bench.cpu import cpu_kind
except ImportError: from cpu import cpu_kind

GPT2 = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]
DEEPSPEED = [(2048, 11059), (3584, 19353)]
CASES = {'standard, 5 steps': dict(method='standard'), 'gram, 5 steps': dict(method='gram'),
         'auto, 5 steps': dict(method='auto'), 'AOL + standard, 4 steps': dict(method='standard', precondition='aol'),
         'AOL + gram, 4 steps': dict(method='gram', precondition='aol')}

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def products(case, m, n, dtype):
    "Multiply-adds of one case on an m × n matrix (the AOL start shares its Gram product with the first step)"
    opts = CASES[case]
    sched = ns_schedule('polar_express', None, opts.get('precondition'))
    method = opts['method']
    if method == 'auto':
        from dl_optim.newton_schulz import ns_method_for
        method = ns_method_for((m, n), sched, dtype)
    name = str(dtype).removeprefix('torch.')
    return ns_products(m, n, sched.coefficients, method, restart_steps(name, len(sched.coefficients)) if method == 'gram' else ())

def run_shape(G, dtype, rounds, cases=CASES, warmup=True):
    "Median seconds per case on G (2-D or a batch), interleaved"
    fns = {k: (lambda o=o: orthogonalize(G, dtype=dtype, **o)) for k, o in cases.items()}
    if warmup:
        for f in fns.values(): f()
    samples = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items(): samples[k].append(timed(f))
    return {k: statistics.median(v) for k, v in samples.items()}

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=5); p.add_argument('--big-rounds', type=int, default=1)
    p.add_argument('--threads', type=int, default=2); p.add_argument('--layers', type=int, default=12)
    p.add_argument('--skip-big', action='store_true', help='only the GPT-2-small set')
    p.add_argument('--only-big', action='store_true', help='only the DeepSpeed shapes')
    p.add_argument('--dtypes', default=None, help='comma-separated NS dtypes (default: the CPU default and float32)')
    p.add_argument('--out', default='bench/results')
    args = p.parse_args()
    torch.set_num_threads(args.threads); torch.manual_seed(0)
    default = default_ns_dtype('cpu')
    dtypes = ([getattr(torch, check_ns_dtype_name(d.strip(), '--dtypes', 'bench/ns_methods.py')) for d in args.dtypes.split(',')]
              if args.dtypes
              else [default] + ([torch.float32] if default != torch.float32 else []))
    rows, totals = [], {}
    for dtype in dtypes:
        dn = str(dtype).removeprefix('torch.')
        for (m, n), batch, rounds, gpt2 in ([] if args.only_big else [(s, args.layers, args.rounds, True) for s in GPT2]) + ([] if args.skip_big else [(s, 1, args.big_rounds, False) for s in DEEPSPEED]):
            G = torch.randn(batch, m, n) if gpt2 else torch.randn(m, n)
            med = run_shape(G, dtype, rounds, warmup=gpt2)   # the DeepSpeed shapes take seconds a call: no warm-up
            base, base_p = med['standard, 5 steps'], products('standard, 5 steps', m, n, dtype)
            for k, t in med.items():
                rows.append(dict(dtype=dn, shape=f'{batch}×({m},{n})' if gpt2 else f'({m},{n})', case=k, ms=t * 1e3,
                                 time_ratio=t / base, flop_ratio=products(k, m, n, dtype) / base_p, gpt2=gpt2))
                if gpt2: totals.setdefault((dn, k), 0.0); totals[(dn, k)] += t
            print(f"{dn} {rows[-1]['shape']}: " + ', '.join(f"{k} {t * 1e3:.0f} ms ({t / base:.2f})" for k, t in med.items()), flush=True)
    lines = [f'CPU: {cpu_kind()}; {args.threads} threads, torch {torch.__version__}; medians of {args.rounds} interleaved rounds '
             f'({args.big_rounds} for the DeepSpeed shapes).', '',
             '| dtype | shape | method | ms | × standard (time) | × standard (multiply-adds) |', '|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['dtype']} | {r['shape']} | {r['case']} | {r['ms']:.0f} | {r['time_ratio']:.2f} | {r['flop_ratio']:.2f} |")
    lines += ['', f'GPT-2-small matrix set ({args.layers} layers, all four shapes), total Newton–Schulz time:', '',
              '| dtype | method | total ms | × standard |', '|---|---|---|---|']
    for (dn, k), t in totals.items():   # empty with --only-big
        lines.append(f"| {dn} | {k} | {t * 1e3:.0f} | {t / totals[(dn, 'standard, 5 steps')]:.2f} |")
    table = '\n'.join(lines)
    print('\n' + table)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'ns_methods.md').write_text(table + '\n')
    (out / 'ns_methods.json').write_text(json.dumps(dict(rows=rows, totals={f'{d}|{k}': v for (d, k), v in totals.items()}), indent=1))

if __name__ == '__main__': main()
