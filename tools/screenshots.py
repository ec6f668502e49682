"""Full-page screenshots of the offline docs build, as a reader sees it, with headless Chromium.

Run after the offline build (`nbdev-proc-nbs`, `smalldocs render _proc`, `python tools/offline_site.py`); needs a
Chromium (`apt-get install chromium`). Each page is rendered in a 1280-px-wide window, cut below its last content and
saved as tiles of at most 1600 px height, `_screenshots/<page>-<n>.png`, small enough to look at one by one. It also
lists every code block that scrolls sideways in that window (measured in the rendered page, not counted in characters)
and exits 1 if there is one.
Usage: `python tools/screenshots.py [page-glob]` (default: every page)."""
import html, json, re, shutil, subprocess, sys, tempfile
from pathlib import Path
from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parents[1]
SITE, OUT = ROOT / '_proc' / '_docs', ROOT / '_screenshots'
WIDTH, TALLEST, TILE = 1280, 40000, 1600   # window width, tallest page Chromium renders in one window, tile height

def chromium() -> str:
    "The Chromium executable"
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(name): return shutil.which(name)
    raise SystemExit('no Chromium found: apt-get install chromium')

def shoot(page: Path, out_dir: Path = OUT) -> tuple:
    "Screenshot one page into tiles; returns (number of tiles, page height in px, whether it was cut at TALLEST)"
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / 'page.png'
        subprocess.run([chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
                        f'--window-size={WIDTH},{TALLEST}', f'--screenshot={png}', page.as_uri()],
                       check=True, capture_output=True, timeout=120)
        im = Image.open(png).convert('RGB')
    background = Image.new('RGB', im.size, im.getpixel((im.width - 1, im.height - 1)))
    box = ImageChops.difference(im, background).getbbox()
    height = min(im.height, (box[3] if box else 0) + 24)
    out_dir.mkdir(exist_ok=True)
    tiles = 0
    for top in range(0, height, TILE):
        im.crop((0, top, WIDTH, min(height, top + TILE))).save(out_dir / f'{page.stem}-{tiles:02d}.png')
        tiles += 1
    return tiles, height, height >= TALLEST

MEASURE = """<script>
window.addEventListener('load', () => {
  const wide = [];
  for (const pre of document.querySelectorAll('div.sourceCode pre, pre.sourceCode')) {
    if (pre.scrollWidth <= pre.clientWidth) continue;   // plain outputs wrap; signatures and code must fit
    wide.push(pre.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a, ''));
  }
  document.body.setAttribute('data-wide-code', JSON.stringify(wide));
});
</script></body>"""

def scrolling_code(page: Path) -> list:
    "The longest line of each code block (API signatures included) that scrolls sideways in a 1280-px window"
    probe = page.with_name(f'_probe_{page.name}')   # next to the page, so that its styles load
    try:
        probe.write_text(page.read_text().replace('</body>', MEASURE, 1))
        dom = subprocess.run([chromium(), '--headless', '--no-sandbox', '--disable-gpu', f'--window-size={WIDTH},1600',
                              '--virtual-time-budget=5000', '--dump-dom', probe.as_uri()],
                             check=True, capture_output=True, text=True, timeout=120).stdout
    finally: probe.unlink(missing_ok=True)
    m = re.search(r'data-wide-code="([^"]*)"', dom)
    if not m: raise SystemExit(f'{page.name}: the measuring script did not run')
    return json.loads(html.unescape(m.group(1)))

def main(pattern: str = '*.html') -> int:
    pages = sorted(SITE.glob(pattern))
    if not pages: raise SystemExit(f'no pages match {SITE / pattern}: build the offline site first')
    scrolling = 0
    for page in pages:
        tiles, height, cut = shoot(page)
        wide = scrolling_code(page); scrolling += len(wide)
        print(f'{page.name:40s} {height:6d} px, {tiles} tiles' + ('  (cut: taller than the window)' if cut else '')
              + (f', {len(wide)} code blocks scroll sideways' if wide else ''))
        for line in wide: print(f'    {len(line)} characters: {line.strip()[:80]!r}')
    print(f'screenshots in {OUT}; {scrolling} code blocks scroll sideways at {WIDTH} px')
    return 1 if scrolling else 0

if __name__ == '__main__': sys.exit(main(*sys.argv[1:2]))
