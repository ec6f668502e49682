"""Write README.md from nbs/index.ipynb, so the repository's front page and the site's are the same text.

Markdown cells are copied; links to notebooks (`08_race.ipynb`) point into `nbs/`; shown code cells become Python
blocks, followed by their text output. `tests/test_readme.py` fails when README.md and this rendering differ.
Usage: `python tools/make_readme.py` (writes README.md) or `--check` (exit 1 if it would change)."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, then run the tool. -->\n\n'

def cell_text(cell) -> str:
    "The source of a notebook cell as one string"
    return ''.join(cell['source'])

def output_text(cell) -> str:
    "The text a code cell printed or returned (streams first, then the last value's plain text)"
    parts = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream' and o.get('name') == 'stdout': parts.append(''.join(o['text']))
        elif o.get('output_type') == 'execute_result': parts.append(''.join(o['data'].get('text/plain', '')) + '\n')
    return ''.join(parts).rstrip('\n')

def readme(nb_path: Path = ROOT / 'nbs' / 'index.ipynb') -> str:
    "README.md's text for the index notebook"
    out = []
    for cell in json.loads(nb_path.read_text())['cells']:
        src = cell_text(cell)
        if cell['cell_type'] == 'markdown':
            out.append(re.sub(r'\]\((\d\d[a-z]?_[\w]+\.ipynb)(#[^)]*)?\)', r'](nbs/\1\2)', src))
        elif cell['cell_type'] == 'code' and not src.startswith('#| hide'):
            code = '\n'.join(l for l in src.split('\n') if not l.startswith('#|'))
            out.append(f'```python\n{code}\n```')
            if (text := output_text(cell)): out.append(f'```\n{text}\n```')
    return HEADER + '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    text, path = readme(), ROOT / 'README.md'
    if '--check' in sys.argv: sys.exit(0 if path.read_text() == text else 1)
    path.write_text(text); print(f'wrote {path} ({len(text.splitlines())} lines)')
