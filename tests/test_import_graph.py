"""The package's imports flow one way: ground floor (config, ops) → kernels → core → front-ends → builders →
experiments → CLI. Every `import` of a dl_optim module, at module level or inside a function, is an edge; the test
fails on a cycle and on an edge that points up a floor."""
import ast, pathlib
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / 'dl_optim'

FLOORS = [   # bottom to top; a module may import its own floor or any below it
    ('ground', {'dl_optim', 'config', 'optimizer_state', 'ops', '_showdoc'}),
    ('kernels', {'gram_ns', 'preconditioned_ns', 'newton_schulz', 'newton_schulz_keras', 'routing',
                 'weight_decay_keras'}),
    ('core', {'muon_core', 'step_hooks', 'step_hooks_keras'}),
    ('fronts', {'cautious', 'muon', 'distributed', 'normuon', 'muonclip', 'grokking', 'cautious_keras',
                'keras_muon', 'grokking_keras', 'muonclip_keras', 'schedules', 'deep_supervision',
                'deep_supervision_keras', 'sled'}),
    ('builders', {'optimizers', 'recipes'}),
    ('experiments', {'experiments', 'experiments.race', 'experiments.distributed', 'experiments.grokking',
                     'experiments.qk_clip_stress', 'experiments.sled_eval'}),
    ('cli', {'cli'}),
]
FLOOR = {m: i for i, (_, ms) in enumerate(FLOORS) for m in ms}

def modules() -> dict:
    out = {}
    for f in ROOT.rglob('*.py'):
        if f.name == '_modidx.py': continue
        parts = f.with_suffix('').relative_to(ROOT).parts
        name = '.'.join(p for p in parts if p != '__init__') or 'dl_optim'
        out[name] = f
    return out

def _absolute(node, name: str, is_pkg: bool) -> list[str]:
    "The dl_optim modules an import node names (relative ones resolved), as short names"
    if isinstance(node, ast.Import):
        return [a.name.removeprefix('dl_optim.') if a.name != 'dl_optim' else 'dl_optim'
                for a in node.names if a.name == 'dl_optim' or a.name.startswith('dl_optim.')]
    if node.level:
        base = [] if name == 'dl_optim' else name.split('.')
        if not is_pkg: base = base[:-1]
        base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
        mod = '.'.join(base + ([node.module] if node.module else []))
    elif node.module and (node.module == 'dl_optim' or node.module.startswith('dl_optim.')):
        mod = node.module.removeprefix('dl_optim').lstrip('.')
    else: return []
    mods = modules()
    subs = [f'{mod}.{a.name}' if mod else a.name for a in node.names]
    found = [s for s in subs if s in mods]
    return found or [mod or 'dl_optim']

def edges() -> list[tuple[str, str, int]]:
    out, mods = [], modules()
    for name, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _absolute(node, name, f.name == '__init__.py'):
                    if target != name: out.append((name, target, node.lineno))
    return out

def test_every_module_has_a_floor():
    assert sorted(set(modules()) - set(FLOOR)) == []

def test_no_upward_import():
    up = [(s, t, line) for s, t, line in edges() if FLOOR[t] > FLOOR[s] and s != 'dl_optim']
    assert up == [], 'imports that point up a floor: ' + ', '.join(f'{s}:{line} → {t}' for s, t, line in up)

def cycle(graph: dict) -> list | None:
    "One import cycle of `graph` (module → imported modules) as a path that returns to its start, or None"
    seen, path = set(), []
    def visit(v):
        if v in path: return path[path.index(v):] + [v]
        if v in seen: return None
        path.append(v)
        for w in sorted(graph.get(v, ())):
            found = visit(w)
            if found: return found
        path.pop(); seen.add(v)
        return None
    for v in sorted(graph):
        found = visit(v)
        if found: return found
    return None

def test_no_cycle():
    graph = {}
    for s, t, _ in edges():
        if s != 'dl_optim': graph.setdefault(s, set()).add(t)    # the package root only loads lazily
    found = cycle(graph)
    assert found is None, 'import cycle: ' + ' → '.join(found)

def test_the_checks_can_fail():
    "Planted: a cycle is found, an acyclic graph is not; the floors are in order"
    assert cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert cycle({'a': {'b', 'c'}, 'b': {'c'}}) is None
    assert FLOOR['cli'] > FLOOR['optimizers'] > FLOOR['muon'] > FLOOR['muon_core'] > FLOOR['newton_schulz'] > FLOOR['config']
