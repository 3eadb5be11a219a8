"""The report as a person sees it: a tiny trained zoo's page opened in headless Chromium
(Debian's package, driven by Playwright), with no network, every plot drawn, hover and sorting
working, no console error, and a screenshot.

`make test` installs Chromium when /usr/bin/chromium is missing; without it this test skips
and says why. Set GENGAP_SCREENSHOTS=DIR to keep the screenshot for a look.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from gengap.report import write_report
from gengap.zoo import load_zoo_spec, measure_zoo, train_zoo

CHROMIUM = Path("/usr/bin/chromium")
# The flags that keep Chromium quiet on a machine with no network: no background fetches,
# no component updates, no sync, no GPU (Playwright adds --headless, --no-sandbox for root
# and a fresh, empty --user-data-dir).
FLAGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

ZOO = """
name = "tiny-browser"
seeds = [0]

[data]
name = "digits"
train_fraction = 0.2

[arch]
family = "cnn"
depth = 2
width = [4, 8]

[train]
lr = [0.02, 0.1]
max_epochs = 2
"""


def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing and could not be installed (`make test` runs "
                    "apt-get install chromium as root): the report is not checked in a browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    return sync_playwright


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    spec = root / "tiny.toml"
    spec.write_text(ZOO)
    store = train_zoo(load_zoo_spec(spec), root / "zoo", device="cpu", population="off")
    measure_zoo(store, "norm,output", device="cpu")
    out = root / "report.html"
    write_report(store, out, bootstrap=200)
    return out


@pytest.mark.slow
def test_the_report_reads_in_chromium(report_file: Path, tmp_path: Path):
    sync_playwright = browser()
    page_text = report_file.read_text()
    figures = page_text.count('class="plotly-graph-div"')
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = chromium.new_page(viewport={"width": 1360, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            requests: list[str] = []
            page.route("**/*", lambda route: (
                requests.append(route.request.url),
                route.continue_() if route.request.url.startswith("file:") else route.abort(),
            ))
            page.goto(report_file.as_uri(), wait_until="load")

            # every figure drawn (plotly's SVG in place) and every static image decoded
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {figures}",
                timeout=30_000)
            assert figures == 8  # ranking, heatmap, 4 scatters, curves, predictor
            drawn = page.eval_on_selector_all(
                ".plotly-graph-div", "ds => ds.map(d => d.querySelectorAll('.main-svg').length)")
            assert len(drawn) == figures and all(n > 0 for n in drawn), drawn
            images = page.eval_on_selector_all(
                "figure.static img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
            assert len(images) == 2 and all(w and w > 100 for w in images), images

            # hovering a run in a scatter plot names its hyperparameters
            point = page.locator("#scatter .scatterlayer .point").first
            point.scroll_into_view_if_needed()
            point.hover(force=True)
            hover = page.locator("#scatter .hoverlayer").first
            hover.wait_for(state="attached")
            page.wait_for_function(
                "document.querySelector('#scatter .hoverlayer').textContent.includes('width')")
            text = hover.text_content() or ""
            assert "run " in text and "width = " in text and "lr = " in text, text

            # clicking a header ranks the table by that column
            page.locator("#ranking th", has_text="measure").click()
            names = page.eval_on_selector_all(
                "#ranking tbody tr td:nth-child(2)", "tds => tds.map(t => t.textContent)")
            assert names == sorted(names, reverse=True) and len(names) > 5

            page.evaluate("window.scrollTo(0, 0)")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            chromium.close()
    assert problems == [], problems
    assert requests == [report_file.as_uri()], requests  # nothing but the file itself
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])
    assert width == 1360 and height > 3000, (width, height)
    keep = os.environ.get("GENGAP_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
