"""The documentation site as a reader sees it: ``mkdocs build --strict`` builds it (no broken link or anchor, no
page left out of the navigation), then headless Chromium opens the home page, the two references, the benchmarks
and the published reproduction report from disk: every image loads, every internal link resolves, the page is
rendered.

``DDL_DOCS_SCREENSHOTS=DIR`` keeps the screenshots in DIR, to look at them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.browser import find_browser, inspect_page, looks_rendered, screenshot_at

REPO = Path(__file__).resolve().parents[2]
#: One site build and one browser session for the module: its tests stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("docs_site")

#: Page of the built site -> (the least text it shows, the images it must show: a number, or its Markdown's).
PAGES = {
    "index.html": (2000, 0),
    "reference/cli.html": (8000, 0),
    "reference/configuration.html": (8000, 0),
    "benchmarks.html": (8000, 2),
    "reproduction/report.html": (8000, "docs/reproduction/report.md"),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        pytest.skip("no Chromium, and it cannot be installed here (needs root and apt-get)")
    return found


@pytest.fixture(scope="module")
def seen(site: Path, browser: str, tmp_path_factory) -> dict[str, dict]:
    """Every page of :data:`PAGES` as the browser saw it, with its screenshot (``"shot"``), three at a time, and
    with ``DDL_DOCS_SCREENSHOTS`` the reproduction report's figures scrolled to (``"figures"``)."""
    shots = tmp_path_factory.mktemp("screenshots")

    def look(page: str) -> tuple[str, dict]:
        shot = shots / (page.replace("/", "-").removesuffix(".html") + ".png")
        return page, {**inspect_page(browser, site / page, screenshot=shot), "shot": shot}

    def figures() -> tuple[str, dict]:
        shot = shots / "reproduction-figures.png"
        screenshot_at(browser, site / "reproduction" / "report.html", shot, fragment="figures", wait_ms=5000)
        return "figures", {"shot": shot}

    keep = os.environ.get("DDL_DOCS_SCREENSHOTS")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(look, page) for page in PAGES] + ([pool.submit(figures)] if keep else [])
        out = dict(f.result() for f in futures)
    if keep:
        keep = Path(os.environ["DDL_DOCS_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for result in out.values():
            shutil.copy(result["shot"], keep / result["shot"].name)
    return out


def test_the_site_builds_every_page(site: Path) -> None:
    pages = {str(p.relative_to(site)) for p in site.rglob("*.html")}
    for page in PAGES:
        assert page in pages, f"{page} not built"
    sources = {str(p.relative_to(REPO / "docs").with_suffix(".html")) for p in (REPO / "docs").rglob("*.md")}
    assert sources <= pages, f"pages not built: {sorted(sources - pages)}"
    assert (site / "benchmarks" / "async_vs_allreduce.png").is_file(), "the hook adds the benchmark plots"
    assert not (site / "hooks.py").exists(), "the hook file is not published"


def _expected_images(spec: int | str) -> int:
    if isinstance(spec, int):
        return spec
    return len(re.findall(r"!\[[^\]]*\]\([^)]+\)", (REPO / spec).read_text()))


@pytest.mark.parametrize("page", list(PAGES))
def test_a_reader_sees_the_page(seen: dict[str, dict], page: str) -> None:
    least_text, images = PAGES[page]
    result = seen[page]
    assert result["title"] and "ddl-commodity" in result["title"], result["title"]
    assert result["text_chars"] > least_text, f"{page}: only {result['text_chars']} characters of text"
    assert len(result["images"]) >= _expected_images(images), (page, result["images"])
    broken_images = [i for i in result["images"] if not (i["ok"] and i["width"] > 0)]
    assert not broken_images, broken_images
    internal = [link for link in result["links"] if link["ok"] is not None]
    assert len(internal) > 10, f"{page}: {len(internal)} internal links (the navigation alone has more)"
    broken = [link["href"] for link in internal if not link["ok"]]
    assert not broken, f"{page}: links that do not resolve: {broken}"
    problem = looks_rendered(matplotlib_image(result["shot"]))
    assert problem is None, f"{page}: {problem}"


def test_the_reproduction_figures_render(seen: dict[str, dict]) -> None:
    """The published report's figures, scrolled to: plots, not blank boxes (a screenshot for a person to look at:
    only with ``DDL_DOCS_SCREENSHOTS``; that every figure loads is tested above)."""
    if "figures" not in seen:
        pytest.skip("set DDL_DOCS_SCREENSHOTS=DIR to take and keep the screenshots")
    problem = looks_rendered(matplotlib_image(seen["figures"]["shot"]))
    assert problem is None, problem


def matplotlib_image(path: Path):
    import matplotlib.image

    return matplotlib.image.imread(str(path))
