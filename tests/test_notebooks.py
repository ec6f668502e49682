"Every notebook in nbs/ runs top to bottom as one test (nbdev's runner; `notest` cells skipped)"
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_notebook  # renamed: pytest would collect a bare `test_nb`

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / 'nbs').glob('*.ipynb') if not p.name.startswith('_'))

def test_notebooks_found(): assert len(NOTEBOOKS) >= 6, NOTEBOOKS

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook(nb, monkeypatch):
    monkeypatch.chdir(nb.parent)
    monkeypatch.setenv('IN_TEST', '1')
    ok, secs = run_notebook(nb, skip_flags=['notest'], basepath=ROOT)
    assert ok, f'{nb.name} failed (see the traceback above)'
