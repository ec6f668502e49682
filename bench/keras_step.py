"""Benchmark: Keras `apply_gradients` on a GPT-2-small-like model: Keras AdamW, keras.optimizers.Muon, dl_optim Muon.

Run by hand (not in CI): `KERAS_BACKEND=torch python bench/keras_step.py [--layers 12] [--d 768] [--vocab 50304] [--rounds 3]`.
The three optimizers get the same variables and gradients, interleaved round by round; medians reported.
keras.optimizers.Muon gets `exclude_layers=['lm_head']` so that both Muons orthogonalize the same 48 matrices
(it would otherwise also run Newton–Schulz on the 768×50304 head, which dl_optim routes to Adam).
"""
import argparse, json, platform, statistics, time
try: from bench.cpu import cpu_kind
except ImportError: from cpu import cpu_kind
from pathlib import Path
import numpy as np
import dl_optim   # picks the Keras backend before keras is imported
import keras
from dl_optim.keras_muon import Muon

def gpt_like(layers, d, vocab, ctx=1024):
    "A Keras model with GPT-2's parameter shapes (untied head)"
    tok = keras.Input((16,), dtype='int32')
    x = keras.layers.Embedding(vocab, d, name='wte')(tok) + keras.layers.Embedding(ctx, d, name='wpe')(keras.ops.arange(16))
    for i in range(layers):
        h = keras.layers.LayerNormalization(name=f'h{i}_ln_1')(x)
        h = keras.layers.Dense(3 * d, name=f'h{i}_c_attn')(h)
        x = x + keras.layers.Dense(d, name=f'h{i}_c_proj')(h[..., :d])
        h = keras.layers.LayerNormalization(name=f'h{i}_ln_2')(x)
        x = x + keras.layers.Dense(d, name=f'h{i}_mlp_proj')(keras.layers.Dense(4 * d, name=f'h{i}_c_fc')(h))
    out = keras.layers.Dense(vocab, name='lm_head')(keras.layers.LayerNormalization(name='ln_f')(x))
    return keras.Model(tok, out)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--layers', type=int, default=12); p.add_argument('--d', type=int, default=768)
    p.add_argument('--vocab', type=int, default=50304); p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--out', default='bench/results')
    args = p.parse_args()
    names = ('Keras AdamW', 'keras.optimizers.Muon', 'dl_optim Muon')
    keras.utils.set_random_seed(0)
    models = {k: gpt_like(args.layers, args.d, args.vocab) for k in names}   # one copy of the variables per optimizer
    variables = models[names[0]].trainable_variables
    rng = np.random.default_rng(0)
    grads = [keras.ops.convert_to_tensor((rng.standard_normal(v.shape) * 1e-3).astype('float32')) for v in variables]
    copies = {k: m.trainable_variables for k, m in models.items()}
    opts = {'Keras AdamW': keras.optimizers.AdamW(1e-3),
            'keras.optimizers.Muon': keras.optimizers.Muon(1e-3, exclude_layers=['lm_head']),
            'dl_optim Muon': Muon()}
    n_muon = sum(opts['dl_optim Muon']._should_use_muon(v) for v in copies['dl_optim Muon'])
    def step(name): return lambda: opts[name].apply_gradients(list(zip(grads, copies[name])))
    for name in opts: step(name)()   # warm-up, builds the slots
    samples = {k: [] for k in opts}
    for _ in range(args.rounds):
        for k in opts:
            t = time.perf_counter(); step(k)(); samples[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in samples.items()}
    lines = [f"GPT-2-like Keras model: {args.layers} layers, d={args.d}, vocab {args.vocab}, "
             f"{sum(int(np.prod(v.shape)) for v in variables) / 1e6:.1f} M parameters, {n_muon} on Muon. Backend "
             f"{keras.backend.backend()}, keras {keras.__version__}; CPU: {cpu_kind()}; medians of {args.rounds} interleaved rounds.", '',
             '| optimizer | apply_gradients (ms) | × Keras AdamW | keras.optimizers.Muon ÷ this |', '|---|---|---|---|']
    for k, t in med.items():
        lines.append(f"| {k} | {t * 1e3:.0f} | {t / med['Keras AdamW']:.1f} | {med['keras.optimizers.Muon'] / t:.2f} |")
    table = '\n'.join(lines)
    print(table)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'keras_step.md').write_text(table + '\n')
    (out / 'keras_step.json').write_text(json.dumps(dict(median_s=med, samples=samples, args=vars(args)), indent=1))

if __name__ == '__main__': main()
