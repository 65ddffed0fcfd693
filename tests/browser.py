"""A page as a person sees it: headless Chromium renders it, takes a screenshot and reports, from inside the
browser, which images loaded and which links resolve (a probe page loads the page in an iframe; file pages
may read each other only with ``--allow-file-access-from-files``)."""

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


def inspect_page(browser: str, page: Path) -> dict:
    """What the browser saw of ``page``: title, amount of text, every image (loaded?) and link (resolves?)."""
    page = Path(page).resolve()
    probe = page.parent / "_browser_probe.html"
    probe.write_text(PROBE.replace("PAGE", page.name))
    try:
        proc = subprocess.run([browser, *_FLAGS, "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()],
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
