"""Make the offline docs build (`smalldocs render _proc`) read as the published site does, with no network.

Run after `smalldocs render _proc`, before `tools/check_docs.py`. It changes the rendered pages in place:
- **Math**: every `\\(…\\)` / `\\[…\\]` span is pre-rendered to MathML (latex2mathml), which browsers draw natively,
  and the KaTeX scripts and stylesheet that would load from a CDN are dropped.
- **Links**: notebooks link to each other by the page names Quarto gives them (`newton_schulz.html` for
  `01_newton_schulz.ipynb`, set by nbdev's `output-file`); smalldocs names pages after the notebook, so those links
  are rewritten to the pages it wrote.

Usage: `python tools/offline_site.py [_proc/_docs]`."""
import html, re, sys
from pathlib import Path
from latex2mathml.converter import convert

ROOT = Path(__file__).resolve().parents[1]
MATH = re.compile(r'<span class="math (inline|display)">\\[(\[](.*?)\\[)\]]</span>', re.S)
KATEX = re.compile(r'<(?:link|script)\b[^>]*katex[^>]*>(?:</script>)?')
HREF = re.compile(r'href="([^":#?/]+\.html)((?:#[^"]*)?)"')

def quarto_name(stem: str) -> str:
    "The page name Quarto gives a notebook: its stem without the numeric prefix (`01_newton_schulz` -> `newton_schulz.html`)"
    return re.sub(r'^\d+[a-z]?_', '', stem) + '.html'

def to_mathml(m: re.Match) -> str:
    "One math span as MathML, the TeX kept as its annotation"
    kind, tex = m.group(1), html.unescape(m.group(2))
    return f'<span class="math {kind}">{convert(tex, display="block" if kind == "display" else "inline")}</span>'

def page_names(site: Path) -> dict:
    "Quarto page name -> the file smalldocs wrote, for every page that exists"
    return {quarto_name(p.stem): p.name for p in site.glob('*.html')}

def offline_page(text: str, names: dict) -> str:
    "One page with math pre-rendered, no KaTeX from a CDN, and links to Quarto page names pointed at real files"
    text = KATEX.sub('', MATH.sub(to_mathml, text))
    return HREF.sub(lambda m: f'href="{names.get(m.group(1), m.group(1))}{m.group(2)}"', text)

def main(site: Path = ROOT / '_proc' / '_docs') -> int:
    names = page_names(site)
    pages = sorted(site.glob('*.html'))
    for page in pages: page.write_text(offline_page(page.read_text(), names))
    print(f'offline site: {len(pages)} pages made self-contained (math pre-rendered, {len(names)} page names resolved)')
    return 0

if __name__ == '__main__': sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / '_proc' / '_docs'))
