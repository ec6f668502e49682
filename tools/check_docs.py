"""Offline docs smoke check (Quarto cannot run here). Run after `nbdev-proc-nbs` and `smalldocs render _proc`.

Asserts that every notebook became a page, that every function and class in each module's `__all__` has its show_doc anchor on
its page, that every saved plot is embedded, and that `smalldocs check` reports no broken link other than the
links to Quarto's page names (`newton_schulz.html`), which smalldocs does not produce (it ignores `output-file`)."""
import importlib, inspect, json, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROC, SITE = ROOT / '_proc', ROOT / '_proc' / '_docs'

def quarto_name(nb: Path) -> str:
    "The page name Quarto gives a notebook: its stem without the numeric prefix (`01_newton_schulz` -> `newton_schulz`)"
    return re.sub(r'^\d+[a-z]?_', '', nb.stem) + '.html'

def main() -> int:
    problems = []
    nbs = sorted(p for p in (ROOT / 'nbs').glob('*.ipynb') if not p.name.startswith('_'))
    page_of = {quarto_name(nb): SITE / (nb.stem + '.html') for nb in nbs}
    for nb in nbs:
        page = SITE / (nb.stem + '.html')
        if not (PROC / nb.name).exists(): problems.append(f'{nb.name}: not processed into _proc/')
        if not page.exists(): problems.append(f'{nb.name}: no page {page.name}'); continue
        cells = json.loads(nb.read_text())['cells']
        n_png = sum('image/png' in o.get('data', {}) for c in cells for o in c.get('outputs', []))
        n_img = page.read_text().count('data:image/png')
        if n_img < n_png: problems.append(f'{nb.name}: {n_png} saved plots, {n_img} embedded on the page')
    n_syms = 0
    modidx = importlib.import_module('dl_optim._modidx').d['syms']
    for modname, syms in modidx.items():
        module = importlib.import_module(modname)
        pages = {url.split('#')[0] for url, _ in syms.values()}
        if len(pages) != 1: problems.append(f'{modname}: documented on {pages}, expected one page'); continue
        page = page_of.get(pages.pop())
        html = page.read_text().lower() if page and page.exists() else ''
        for name in getattr(module, '__all__', []):
            if not (inspect.isclass(getattr(module, name)) or inspect.isroutine(getattr(module, name))): continue  # constants: prose
            n_syms += 1
            if f'id="{name.lower()}"' not in html: problems.append(f'{modname}.{name}: no anchor on {page.name if page else "?"}')
    check = subprocess.run(['smalldocs', 'check', str(PROC)], capture_output=True, text=True).stdout
    for nbname, target in re.findall(r'^(\S+): broken link (\S+)$', check, re.M):
        if target.split('#')[0] not in page_of: problems.append(f'{nbname}: broken link {target}')
    print(f'docs check: {len(nbs)} pages, {n_syms} exported names, {len(problems)} problems')
    for p in problems: print('  -', p)
    return 1 if problems else 0

if __name__ == '__main__': sys.exit(main())
