"The docs checks fail on planted pages with each defect class and pass on a clean one; no repository file points outside it"
import base64, io, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
from check_docs import page_problems, outside_refs, small_fonts, undocumented_params, long_lines   # noqa: E402
from check_docs import patched_methods   # noqa: E402
from check_docs import MAX_FIGURE_INCHES   # noqa: E402
from offline_site import offline_page, page_names                        # noqa: E402

def png(width_in, dpi=100):
    "A data URL of a matplotlib figure `width_in` inches wide"
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(width_in, 2)); ax.plot([0, 1])
    buf = io.BytesIO(); fig.savefig(buf, format='png', dpi=dpi); plt.close(fig)
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()

CLEAN = ('<html><body><h2 id="muon">Muon</h2><p>The update is <math><mi>U</mi></math>, costs $5 a run, and '
         '<a href="#muon">links here</a>, <a href="other.html#x">there</a> and <a href="https://arxiv.org">out</a>.</p>'
         '<pre><code>re.sub(r"\\(", "", s)  # TeX-like text inside code is fine: $\\alpha$</code></pre>'
         '<div class="cell-output cell-output-stdout"><pre>loss 1.30 | lr 0.02</pre></div>'
         '<img alt="loss against steps" src="{narrow}"></body></html>')

DEFECTS = {   # defect class -> (planted HTML fragment, words the problem must contain)
    'raw inline TeX': ('<p>the norm \\(\\|X\\|\\) of X</p>', 'raw TeX'),
    'raw dollar TeX in a table': ('<table><tr><td>$\\text{MIX}(s)$</td></tr></table>', 'raw TeX'),
    'math left to a CDN': ('<script src="https://cdn.jsdelivr.net/npm/katex/katex.min.js"></script>', 'loads'),
    'pipe table as text': ('<div class="cell-output cell-output-stdout"><pre>| a | b |\n|---|---|\n| 1 | 2 |</pre></div>',
                           'Markdown table'),
    'inherited torch docstring': ('<div class="doc"><p>Base class for all neural network modules.</p></div>', 'inherited'),
    'inherited object docstring': ('<div class="doc"><p>Return repr(self).</p></div>', 'inherited'),
    'dunder title read as Markdown': ('<h3 id="muon.repr">Muon.<strong>repr</strong></h3>', 'bold or italics'),
    'broken page link': ('<a href="newton_schulz.html">NS</a>', 'broken link'),
    'broken anchor': ('<a href="other.html#nowhere">NS</a>', 'broken anchor'),
    'missing alt text': ('<img src="{narrow}">', 'alt text'),
    'plot too wide to read': ('<img alt="a wide grid" src="{wide}">', 'shows 10-pt text'),
    'long code line': ('<pre><code>x = ' + '1 + ' * 30 + '1</code></pre>', 'longer than 100'),
    'long API signature': ('<div class="cell-output cell-output-display"><div class="sourceCode">'
                           '<pre class="sourceCode python"><code>def f(' + 'a, ' * 40 + ')</code></pre>'
                           '</div></div>', 'longer than 100'),
    'seed reference': ('<p>as seed 002 says</p>', 'outside the repository'),
    'issue reference': ('<p>see issue #19</p>', 'outside the repository'),
    'shared path': ('<p>from ../shared/research/muon_family.md</p>', 'outside the repository'),
}

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp('site')
    (d / 'other.html').write_text('<html><body><h2 id="x">x</h2></body></html>')
    return d, {'narrow': png(6), 'wide': png(MAX_FIGURE_INCHES + 1)}

def test_clean_page_passes(site):
    d, imgs = site
    assert page_problems(CLEAN.format(**imgs), 'page.html', d) == []

@pytest.mark.parametrize('kind', DEFECTS)
def test_each_defect_is_caught(site, kind):
    d, imgs = site
    fragment, words = DEFECTS[kind]
    for k, v in imgs.items(): fragment = fragment.replace('{' + k + '}', v)
    page = CLEAN.format(**imgs).replace('</body>', fragment + '</body>')
    problems = page_problems(page, 'page.html', d)
    assert len(problems) == 1 and words in problems[0], (kind, problems)

def test_offline_page_renders_math_and_resolves_quarto_names(tmp_path):
    for stem in ('index', '01_newton_schulz', '02b_muon_core'): (tmp_path / f'{stem}.html').write_text('<h2 id="orthogonalize">')
    page = ('<head><link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/katex@0.16.11/dist/katex.min.css">'
            '<script src="https://cdn.jsdelivr.net/npm/katex@0.16.11/dist/katex.min.js" defer></script></head>'
            '<p><span class="math inline">\\(X^\\top X &lt; 1\\)</span> and <span class="math display">\\[a+b\\]</span> '
            '<a href="newton_schulz.html#orthogonalize">NS</a> <a href="muon_core.html">core</a> <a href="index.html">home</a></p>')
    out = offline_page(page, page_names(tmp_path))
    assert 'katex' not in out and '\\(' not in out and '\\[' not in out
    assert out.count('<math') == 2 and 'display="block"' in out and '<mo>&#x0003C;</mo>' in out   # &lt; unescaped, then encoded
    assert 'href="01_newton_schulz.html#orthogonalize"' in out and 'href="02b_muon_core.html"' in out
    assert page_problems(out, 'page.html', tmp_path) == []

def test_outside_refs_catches_and_spares():
    assert outside_refs('per seed 003 and seeds/000_x.txt, see ../shared/DESIGN.md and issue 21') == \
        ['../shared', 'DESIGN.md', 'issue 21', 'seed 003', 'seeds/']
    assert outside_refs('The model the issue names; the model of the issue') == ['model of the issue', 'the issue names']
    assert outside_refs('random seed 0, seeds 0-2, pytorch/pytorch#123456, Python 3.11, tissue 12.5, the issue is') == []

def repo_texts():
    "The repository's own text: notebooks, the generated package, README and LICENSE"
    files = sorted((ROOT / 'nbs').glob('*.ipynb')) + sorted((ROOT / 'dl_optim').rglob('*.py')) + [ROOT / 'README.md']
    return [(f.relative_to(ROOT), f.read_text()) for f in files]

def test_no_repository_file_refers_outside_it():
    found = {str(f): refs for f, text in repo_texts() if (refs := outside_refs(text))}
    assert found == {}, found

def test_long_lines():
    assert long_lines('x = 1\n' + 'y' * 101 + '\n' + 'z' * 100) == ['y' * 101]
    assert long_lines('#| fig-alt: "' + 'w' * 120 + '"') == []   # cell directives are not shown

def test_small_fonts():
    assert small_fonts("ax.legend(fontsize=8); ax.set_title('t', fontsize='small')") == ["fontsize='small'", 'fontsize=8']
    assert small_fonts("ax.legend(fontsize=9); ax.set_title('t', fontsize=12)") == []

def _documented(a:int,      # The first
                *rest,      # Others
                b:int=2,    # The second
                **kw): ...
def _half_documented(a:int, b:int=2): ...   # only b's line has a comment

def test_undocumented_params():
    assert undocumented_params(_documented) == []
    assert undocumented_params(_half_documented) == ['a']

def test_patched_methods():
    "The methods `@patch` adds get their own API entries, so the docs check reads them; class-body ones not"
    from dl_optim.muon import Muon
    from dl_optim.muonclip import QKClip
    assert {'step', 'ns_plan', '__repr__'} <= set(patched_methods(Muon))
    assert 'routing_report' not in patched_methods(Muon) and '_muon_step' not in patched_methods(Muon)
    assert {'after_step', 'metrics', 'remove'} <= set(patched_methods(QKClip))
    assert patched_methods(len) == {}
