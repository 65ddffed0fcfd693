"""A page as a person sees it: headless Chromium renders it, takes a screenshot and reports, from inside the
browser, which images loaded and which links resolve (a probe page loads the page in an iframe; file pages
may read each other only with ``--allow-file-access-from-files``).

Used for the reproduction report and for the documentation site (``mkdocs build`` with plain ``.html`` files,
browsed from disk)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

NAMES = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files"]

PROBE = """<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="page" src="PAGE" style="width:1200px;height:900px"></iframe>
<script>
function fetched(url) {
  return new Promise(done => {
    const x = new XMLHttpRequest();
    x.onload = () => done((x.status === 200 || x.status === 0) && x.response !== null && x.response.byteLength > 0);
    x.onerror = () => done(false);
    x.responseType = "arraybuffer";
    x.open("GET", url);
    x.send();
  });
}
document.getElementById("page").addEventListener("load", async () => {
  const doc = document.getElementById("page").contentDocument;
  const images = [...doc.images].map(i => ({src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0,
                                            width: i.naturalWidth}));
  const links = [];
  for (const a of doc.querySelectorAll("a[href]")) {
    const href = a.getAttribute("href");
    if (href.startsWith("#")) { links.push({href, ok: !!doc.getElementById(href.slice(1))}); continue; }
    if (/^https?:/.test(href)) { links.push({href, ok: null}); continue; }  // no network here: not followed
    links.push({href, ok: await fetched(a.href)});
  }
  document.getElementById("result").textContent = JSON.stringify(
    {title: doc.title, text_chars: doc.body.innerText.length, images, links});
});
</script></body></html>
"""


def find_browser(install: bool = True) -> str | None:
    """A Chromium binary; installed with apt (Debian's ``chromium``) when missing and we are root."""
    for name in NAMES:
        if path := shutil.which(name):
            return path
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=900,
                       check=False)
        return find_browser(install=False)
    return None


def inspect_page(browser: str, page: Path, screenshot: Path | None = None) -> dict:
    """What the browser saw of ``page``: title, amount of text, every image (loaded?) and link (resolves?).

    ``screenshot``: also save, from the same browser run, a PNG of the probe: the page in its 1200 x 900 frame,
    after everything above was measured. Pages of one directory may be inspected side by side."""
    page = Path(page).resolve()
    probe = page.parent / f"_browser_probe_{page.stem}.html"
    probe.write_text(PROBE.replace("PAGE", page.name))
    shot = [f"--screenshot={screenshot}", "--window-size=1240,1000"] if screenshot else []
    try:
        proc = subprocess.run([browser, *_FLAGS, "--virtual-time-budget=15000", *shot, "--dump-dom", probe.as_uri()],
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert found and found.group(1) != "pending", f"the probe did not run: {proc.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&amp;", "&"))


def screenshot(browser: str, page: Path, out: Path, size: tuple[int, int] = (1200, 1600)) -> np.ndarray:
    """Render ``page`` to ``out`` (PNG) and return its pixels ``(H, W, channels)`` in [0, 1]."""
    import matplotlib.image

    subprocess.run([browser, *_FLAGS, f"--window-size={size[0]},{size[1]}", f"--screenshot={out}",
                    Path(page).resolve().as_uri()], capture_output=True, timeout=120, check=True)
    return matplotlib.image.imread(str(out))


FRAME = """<!doctype html><html><body style="margin:0">
<iframe src="PAGE" style="width:WIDTHpx;height:HEIGHTpx;border:0"></iframe></body></html>
"""


def screenshot_at(browser: str, page: Path, out: Path, fragment: str = "", size: tuple[int, int] = (1280, 1400),
                  wait_ms: int = 10000) -> np.ndarray:
    """Like :func:`screenshot`, but after the page has loaded (scripts run, images decoded, up to ``wait_ms`` of
    virtual time) and scrolled to ``#fragment``: a frame page next to ``page`` shows it, since a fragment in the
    address of a headless screenshot is not scrolled to."""
    import matplotlib.image

    page = Path(page).resolve()
    frame = page.parent / f"_browser_frame_{page.stem}_{fragment or 'top'}.html"
    target = page.name + (f"#{fragment}" if fragment else "")
    frame.write_text(FRAME.replace("PAGE", target).replace("WIDTH", str(size[0])).replace("HEIGHT", str(size[1])))
    try:
        subprocess.run([browser, *_FLAGS, f"--virtual-time-budget={wait_ms}", f"--window-size={size[0]},{size[1]}",
                        f"--screenshot={out}", frame.as_uri()], capture_output=True, timeout=120, check=True)
    finally:
        frame.unlink()
    return matplotlib.image.imread(str(out))


def looks_rendered(pixels: np.ndarray) -> str | None:
    """``None`` if a screenshot shows a page (some ink, not all of it, text and pictures in several colours), else
    what is wrong with it."""
    pixels = pixels[::2, ::2, :3]  # every other pixel is enough to tell, and four times faster
    inked = (pixels < 0.85).any(axis=2).mean()  # share of pixels that are not (nearly) white
    if not 0.01 < inked < 0.9:
        return f"the page looks blank (or all dark): {inked:.3%} inked"
    colours = len(np.unique((pixels * 15).astype(int).reshape(-1, 3), axis=0))
    if colours <= 8:
        return f"the page has {colours} colours: no text or pictures rendered"
    return None
