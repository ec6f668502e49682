"""Offline docs check (Quarto cannot run here). Run after `nbdev-proc-nbs`, `smalldocs render _proc` and
`tools/offline_site.py`; exits 1 on any problem, listing each.

Site-wide: every notebook became a page and is in the sidebar, every function and class in each module's `__all__`
has its anchor on its page and its own docstring (not one inherited from torch or Keras), every saved plot is
embedded, every parameter of an exported function or class, and of each method fastcore's `@patch` adds to
one (nbdev gives those their own entries), has its docment (the comment after it, shown in the API entry), no
plot asks for a font below 9 pt, and no notebook code line (cell directives aside) is longer than 100 characters.
Per page (`page_problems`, also run on planted pages by the tests):
- raw TeX in the rendered text (`\\(`, `\\[`, `$…\\cmd…$` outside code), or TeX left for a CDN script;
- Markdown pipe tables printed as plain text in a code output;
- an API entry showing a docstring inherited from torch, Keras or `object` (`Return repr(self).`);
- a title in bold or italics: Markdown read in a name (`Muon.__repr__` shown as Muon.**repr**);
- an internal link to a missing page or anchor;
- an image without alt text, or a plot so wide that its 10-pt text would show below 9 pt;
- a code line longer than 100 characters (it would scroll sideways at a 1280-px window);
- a reference to material outside the repository (the project's seed documents, issue numbers, `shared/` paths).
"""
import base64, functools, importlib, inspect, json, re, struct, subprocess, sys
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROC, SITE = ROOT / '_proc', ROOT / '_proc' / '_docs'
SHOWN_WIDTH = 734          # CSS px of the body column at a 1280-px-wide window (nbs/styles.css; measured in Chromium)
MIN_SHOWN_PT, FIGURE_PT = 9, 10   # text must show at >= 9 pt; plots use fonts of at least 10 pt
MAX_FIGURE_INCHES = FIGURE_PT * SHOWN_WIDTH * 0.75 / (72 * MIN_SHOWN_PT)   # 8.5 in, at any dpi
INHERITED = ('Base class for all neural network modules', 'Base class for all optimizers',
             'A layer is a callable object that takes as input one or more tensors',
             'Abstract optimizer base class', 'Initialize self.  See help(type(self))',
             'Return repr(self).', 'Return str(self).')
OUTSIDE = re.compile(r'\bseeds?\s*0\d\d\b|\bseed (?:guide|document)s?\b|\bseeds/|\bshared/(?:seeds|research|hooks|gpu)\b'
                     r'|\.\./shared\b|\bDESIGN\.md\b|\b[Ii]ssue\s+#?\d{1,2}\b(?![\d.])|\bthe issue\'s\b'
                     r'|\bthe issue (?:names|asks|says|requires|lists|wants)\b|\b(?:model|example) of the issue\b', re.I)
EMPHASIS_TITLE = re.compile(r'<h[1-6][^>]*>(?:(?!</h[1-6]>).)*?<(?:strong|em)>.*?</h[1-6]>', re.S)
RAW_TEX = re.compile(r'\\[(\[]|\\[)\]]|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$')
PIPE_RULE = re.compile(r'^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$', re.M)

# characters: the width the API signatures are fitted to (dl_optim._showdoc), and what a code block of the body
# column shows before it scrolls (nbs/styles.css)
from dl_optim._showdoc import SIGNATURE_WIDTH as MAX_CODE_LINE   # noqa: E402

def long_lines(code: str) -> list:
    "Lines of `code` longer than `MAX_CODE_LINE` characters (cell directives `#|` aside)"
    return [l for l in code.split('\n') if len(l) > MAX_CODE_LINE and not l.lstrip().startswith('#|')]

SMALL_FONT = re.compile(r"fontsize\s*=\s*(?:[0-8](?:\.\d+)?\b|'(?:xx-small|x-small|small)')")

def small_fonts(source: str) -> list:
    "Plot font sizes below 9 pt in a notebook's code (the figure check assumes every text is at least 9-10 pt)"
    return sorted({m.group(0) for m in SMALL_FONT.finditer(source)})

def outside_refs(text: str) -> list:
    "Phrases in `text` that point outside the repository (seed documents, issue numbers, `shared/` paths)"
    return sorted({m.group(0) for m in OUTSIDE.finditer(text)})

class Page(HTMLParser):
    "The parts of a rendered page the checks read: visible text, code outputs, links, ids, images"
    SKIP = {'script', 'style', 'pre', 'code', 'math', 'textarea'}
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.text, self.outputs, self.links, self.ids, self.images, self.scripts = [], [], [], set(), [], []
        self.code = []   # highlighted code blocks (cells and API signatures; not plain outputs)
        self._stack, self._output_depth, self._pre, self._code = [], None, None, None
        self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        if tag == 'img': self.images.append(a)
        if tag in ('script', 'link') and (a.get('src') or a.get('href') or '').startswith(('http:', 'https:')) \
           and (tag == 'script' or a.get('rel') == 'stylesheet'): self.scripts.append(a.get('src') or a.get('href'))
        if tag in ('img', 'br', 'hr', 'meta', 'link', 'input', 'source', 'col', 'wbr'): return
        self._stack.append(tag)
        if 'cell-output' in (a.get('class') or '') and self._output_depth is None: self._output_depth = len(self._stack)
        if tag == 'pre' and self._output_depth is not None: self._pre = []
        # code: highlighted blocks anywhere, API signatures (a cell's output) included
        if tag == 'pre' and (self._output_depth is None or 'sourceCode' in (a.get('class') or '')):
            self._code = []
    def handle_endtag(self, tag):
        if tag not in self._stack: return
        while self._stack:
            t = self._stack.pop()
            if t == 'pre' and self._pre is not None: self.outputs.append(''.join(self._pre)); self._pre = None
            if t == 'pre' and self._code is not None: self.code.append(''.join(self._code)); self._code = None
            if self._output_depth is not None and len(self._stack) < self._output_depth: self._output_depth = None
            if t == tag: break
    def handle_data(self, data):
        if self._pre is not None: self._pre.append(data)
        if self._code is not None: self._code.append(data)
        if not self.SKIP.intersection(self._stack): self.text.append(data)

@functools.lru_cache(maxsize=None)
def page_ids(path: Path) -> frozenset:
    "The ids a rendered page defines (parsed once per page, however many links point at it)"
    return frozenset(Page(path.read_text()).ids)

def png_size(src: str):
    "(width px, dots per inch) of a PNG data URL, or None"
    if not src.startswith('data:image/png;base64,'): return None
    b = base64.b64decode(src.split(',', 1)[1][:200000] + '==')
    width = struct.unpack('>I', b[16:20])[0]
    k = b.find(b'pHYs')
    dpi = struct.unpack('>I', b[k + 4:k + 8])[0] * 0.0254 if k > 0 else 72.0
    return width, dpi

def shown_font_pt(width: int, dpi: float, font_pt: float = FIGURE_PT) -> float:
    "The size at which a plot's `font_pt` text shows when the image is scaled into the content column"
    scale = min(1.0, SHOWN_WIDTH / width)
    return font_pt / 72 * dpi * scale * 0.75    # image px at that scale -> CSS px -> pt (0.75 pt per CSS px)

def page_problems(html: str, name: str, site: Path) -> list:
    "Every defect of one rendered page (see the module docstring)"
    page, problems = Page(html), []
    text = ' '.join(page.text)
    raw = sorted({m.group(0)[:60] for m in RAW_TEX.finditer(text)})
    if raw: problems.append(f'{name}: raw TeX in the text: {", ".join(map(repr, raw[:4]))}')
    for src in page.scripts: problems.append(f'{name}: loads {src} (the offline site must not need the network)')
    for out in page.outputs:
        if PIPE_RULE.search(out): problems.append(f'{name}: a Markdown table printed as text: {out.strip()[:60]!r}')
    for doc in INHERITED:
        if doc in text: problems.append(f'{name}: an API entry shows an inherited docstring: {doc!r}')
    for m in EMPHASIS_TITLE.finditer(html):
        shown = re.sub(r'<[^>]+>', '', m.group(0))
        problems.append(f'{name}: a title in bold or italics (Markdown read in a name?): {shown[:60]!r}')
    for href in page.links:
        if href.startswith(('http:', 'https:', 'mailto:', 'data:', 'javascript:')) or href in ('#', ''): continue
        target, _, anchor = href.partition('#')
        path = (site / target) if target else None
        if target and not path.exists(): problems.append(f'{name}: broken link {href}'); continue
        if anchor and path is not None and path.suffix == '.html':
            ids = page.ids if path.name == name else page_ids(path)
            if anchor not in ids: problems.append(f'{name}: broken anchor {href}')
        elif anchor and target == '' and anchor not in page.ids: problems.append(f'{name}: broken anchor {href}')
    for img in page.images:
        if not (img.get('alt') or '').strip(): problems.append(f'{name}: an image without alt text')
        size = png_size(img.get('src') or '')
        if size and shown_font_pt(*size) < MIN_SHOWN_PT:
            problems.append(f'{name}: a plot {size[0]} px wide at {size[1]:.0f} dpi shows {FIGURE_PT}-pt text at '
                            f'{shown_font_pt(*size):.1f} pt ({size[0] / size[1]:.1f} in wide; at most {MAX_FIGURE_INCHES:.1f} in)')
    long = [l for c in page.code for l in long_lines(c)]
    if long: problems.append(f'{name}: {len(long)} code lines longer than {MAX_CODE_LINE} characters: {long[0].strip()[:60]!r}')
    for ref in outside_refs(text): problems.append(f'{name}: refers outside the repository: {ref!r}')
    return problems

def undocumented_params(obj) -> list:
    "Parameters of a function or class (its `__init__`) without a docments comment"
    from fastcore.docments import docments
    try: docs = docments(obj, full=True)
    except Exception: return []
    return [k for k, v in docs.items() if k not in ('self', 'return', 'cls') and not v.get('docment')
            and v.get('kind') not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]

def api_problems(page_of: dict) -> tuple:
    "Exported names without an anchor on their page or their own docstring (problems), and those with undocumented parameters"
    problems, undocumented, n_syms = [], [], 0
    modidx = importlib.import_module('dl_optim._modidx').d['syms']
    for modname, syms in modidx.items():
        module = importlib.import_module(modname)
        pages = {url.split('#')[0] for url, _ in syms.values()}
        if len(pages) != 1: problems.append(f'{modname}: documented on {pages}, expected one page'); continue
        page = page_of.get(pages.pop())
        html = page.read_text().lower() if page and page.exists() else ''
        for name in getattr(module, '__all__', []):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)): continue  # constants: prose
            n_syms += 1
            if f'id="{name.lower()}"' not in html: problems.append(f'{modname}.{name}: no anchor on {page.name if page else "?"}')
            if inspect.isclass(obj) and not obj.__dict__.get('__doc__'): problems.append(f'{modname}.{name}: no docstring of its own')
            if inspect.isroutine(obj) and not obj.__doc__: problems.append(f'{modname}.{name}: no docstring')
            if obj.__module__ == modname:
                missing = undocumented_params(obj)
                if missing: undocumented.append(f'{modname}.{name}: {", ".join(missing)}')
            for meth, f in patched_methods(obj).items():   # each has its own API entry
                if not f.__doc__: problems.append(f'{modname}.{name}.{meth}: no docstring of its own')
                missing = undocumented_params(f)
                if missing: undocumented.append(f'{modname}.{name}.{meth}: {", ".join(missing)}')
    return problems, undocumented, n_syms

def patched_methods(cls) -> dict:
    "The public methods fastcore's `@patch` added to `cls` (defined at module level: nbdev shows each)"
    if not inspect.isclass(cls): return {}
    out = {}
    for k, f in vars(cls).items():
        if k.startswith('_') and not (k.startswith('__') and k.endswith('__')): continue
        if not inspect.isfunction(f): continue
        try: first = inspect.getsource(f).split('\n', 1)[0]
        except (OSError, TypeError): continue
        if first.startswith('@patch'): out[k] = f
    return out

def sidebar_notebooks() -> set:
    "Notebooks listed in nbs/sidebar.yml"
    return set(re.findall(r'^\s*-\s*(\S+\.ipynb)\s*$', (ROOT / 'nbs' / 'sidebar.yml').read_text(), re.M))

def main() -> int:
    from offline_site import quarto_name
    problems = []
    nbs = sorted(p for p in (ROOT / 'nbs').glob('*.ipynb') if not p.name.startswith('_'))
    page_of = {quarto_name(nb.stem): SITE / (nb.stem + '.html') for nb in nbs}
    missing_sidebar = {nb.name for nb in nbs} - sidebar_notebooks()
    if missing_sidebar: problems.append(f'not in nbs/sidebar.yml: {sorted(missing_sidebar)}')
    for nb in nbs:
        page = SITE / (nb.stem + '.html')
        if not (PROC / nb.name).exists(): problems.append(f'{nb.name}: not processed into _proc/')
        if not page.exists(): problems.append(f'{nb.name}: no page {page.name}'); continue
        cells = json.loads(nb.read_text())['cells']
        n_png = sum('image/png' in o.get('data', {}) for c in cells for o in c.get('outputs', []))
        html = page.read_text()
        if html.count('data:image/png') < n_png: problems.append(f'{nb.name}: {n_png} saved plots, fewer embedded on the page')
        problems += page_problems(html, page.name, SITE)
        code = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'code')
        for f in small_fonts(code): problems.append(f'{nb.name}: a plot font below 9 pt: {f}')
        long = long_lines(code)
        if long: problems.append(f'{nb.name}: {len(long)} code lines longer than {MAX_CODE_LINE} characters, '
                                 f'e.g. {long[0].strip()[:60]!r}')
    api, undocumented, n_syms = api_problems(page_of)
    problems += api + [f'{u.split(":")[0]}: parameters without a docment:{u.split(":", 1)[1]}' for u in undocumented]
    check = subprocess.run(['smalldocs', 'check', str(PROC)], capture_output=True, text=True).stdout
    for nbname, target in re.findall(r'^(\S+): broken link (\S+)$', check, re.M):
        if target.split('#')[0] not in page_of: problems.append(f'{nbname}: broken link {target}')
    print(f'docs check: {len(nbs)} pages, {n_syms} exported names, {len(problems)} problems')
    for p in problems: print('  -', p)
    return 1 if problems else 0

if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
