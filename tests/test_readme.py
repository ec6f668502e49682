"README.md is the index notebook rendered by tools/make_readme.py, and keeps the two set-up commands"
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
from make_readme import readme   # noqa: E402

def test_readme_is_the_index_notebook():
    assert (ROOT / 'README.md').read_text() == readme(), 'README.md is stale: run `python tools/make_readme.py`'

def test_readme_has_the_two_setup_commands():
    text = (ROOT / 'README.md').read_text()
    assert 'pip install -e ".[dev]" && dl-optim race' in text and '\npython -m pytest' in text

def test_readme_links_resolve():
    import re
    for target in re.findall(r'\]\((nbs/[^)#]+)', (ROOT / 'README.md').read_text()):
        assert (ROOT / target).exists(), target
