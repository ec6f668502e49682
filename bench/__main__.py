"""Run every dl_optim benchmark in turn and collect their tables into bench/results/SUMMARY.md.

`python -m bench [--quick]` from the repository root. `--quick` runs each benchmark on small sizes (minutes, for a
smoke check); without it the full runs take about 10 minutes on a 2-core CPU. Run on an otherwise idle machine.
"""
import argparse, os, platform, subprocess, sys, time
from pathlib import Path

BENCHES = [  # (script, arguments for the full run, arguments for --quick, extra environment)
    ('newton_schulz.py', [], ['--rounds', '2', '--max-call-seconds', '2'], {}),
    ('muon_step.py', [], ['--layers', '2', '--d', '256', '--vocab', '4096', '--rounds', '2'], {}),
    ('ns_methods.py', [], ['--layers', '2', '--rounds', '2', '--skip-big'], {}),
    ('keras_step.py', [], ['--layers', '1', '--d', '128', '--vocab', '1000', '--rounds', '2'], {'KERAS_BACKEND': 'torch'}),
    ('sled.py', [], ['--quick', '--rounds', '3'], {}),
]

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='small sizes: a smoke run, not numbers to report')
    args = p.parse_args()
    here = Path(__file__).resolve().parent
    results = here / 'results'; results.mkdir(exist_ok=True)
    parts = [f"# dl_optim benchmarks\n\n{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPUs, "
             f"Python {platform.python_version()}{' (quick sizes: not for reporting)' if args.quick else ''}\n"]
    for script, full, quick, env in BENCHES:
        print(f'== {script}', flush=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, str(here / script), *(quick if args.quick else full), '--out', str(results)],
                       check=True, env={**os.environ, **env})
        table = (results / script.replace('.py', '.md')).read_text()
        parts.append(f"## {script} ({time.perf_counter() - t:.0f} s)\n\n{table}")
    (results / 'SUMMARY.md').write_text('\n'.join(parts))
    print(f"wrote {results / 'SUMMARY.md'}")

if __name__ == '__main__': main()
