"""Full-page screenshots of the offline docs build, as a reader sees it, with headless Chromium.

Run after the offline build (`nbdev-proc-nbs`, `smalldocs render _proc`, `python tools/offline_site.py`); needs a
Chromium (`apt-get install chromium`). Each page is rendered in a 1280-px-wide window, cut below its last content and
saved as tiles of at most 1600 px height, `_screenshots/<page>-<n>.png`, small enough to look at one by one.
Usage: `python tools/screenshots.py [page-glob]` (default: every page)."""
import shutil, subprocess, sys, tempfile
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

def main(pattern: str = '*.html') -> int:
    pages = sorted(SITE.glob(pattern))
    if not pages: raise SystemExit(f'no pages match {SITE / pattern}: build the offline site first')
    for page in pages:
        tiles, height, cut = shoot(page)
        print(f'{page.name:40s} {height:6d} px, {tiles} tiles' + ('  (cut: taller than the window)' if cut else ''))
    print(f'screenshots in {OUT}')
    return 0

if __name__ == '__main__': sys.exit(main(*sys.argv[1:2]))
