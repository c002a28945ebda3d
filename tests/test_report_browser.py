"""The report in a real browser: headless Chromium opens it, every image decodes, nothing is
fetched, the console stays silent; a screenshot is kept for a look.

Chromium is driven from the command line (``--dump-dom`` + ``--screenshot``): a small script,
injected into a copy of the report, writes what the page saw into the DOM. Without chromium the
test skips, or fails when ``CI`` is set (CI installs it).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from encoderlab.report import build_report
from test_report import make_study

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",  # lets the load event (and the check below) run
    "--window-size=1280,1800",
)
# Runs first in <head>: records failed loads and script errors, then on load writes every
# image's natural width and every fetched resource (data: URIs are not fetches) into the DOM.
CHECK = """<script>
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(
  String(e.message || (e.target && (e.target.src || e.target.tagName)))), true);
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.hidden = true;
  out.textContent = JSON.stringify({
    images: [...document.images].map((i) => i.naturalWidth),
    fetched: performance.getEntriesByType("resource").map((r) => r.name),
    errors: window.__errors,
  });
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    message = "chromium not found (apt-get install chromium): the report's browser test needs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def open_page(chromium: str, page: Path, screenshot: Path, profile: Path) -> dict[str, Any]:
    """Open ``page`` (with the check injected) in headless Chromium; return what it saw plus
    the console lines Chromium logged."""
    checked = page.with_name(f"{page.stem}.checked.html")
    checked.write_text(page.read_text().replace("<head>", "<head>" + CHECK, 1))
    cmd = [
        chromium,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        checked.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="browser-check" hidden="">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the page never finished loading (rc {proc.returncode}): {proc.stderr[-2000:]}"
    seen = json.loads(html.unescape(found.group(1)))
    seen["console"] = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return seen


def test_report_renders_in_chromium(
    chromium: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = build_report(make_study(tmp_path / "study"))
    shot = tmp_path / "report.png"
    seen = open_page(chromium, report, shot, tmp_path / "profile")
    assert len(seen["images"]) == 12 and all(w > 0 for w in seen["images"]), seen["images"]
    assert seen["fetched"] == [] and seen["errors"] == [] and seen["console"] == []
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    with capsys.disabled():
        print(f"\nreport screenshot: {shot}")


def test_the_checks_catch_a_broken_page(chromium: str, tmp_path: Path) -> None:
    """The same checks on a page with a broken image, a fetch and a console error."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head></head><body>"
        '<img src="data:image/png;base64,AAAA"><img src="http://127.0.0.1:9/x.png">'
        '<script>console.error("broken on purpose")</script></body></html>'
    )
    seen = open_page(chromium, page, tmp_path / "broken.png", tmp_path / "profile")
    assert seen["images"] == [0, 0]
    assert seen["fetched"] == ["http://127.0.0.1:9/x.png"]
    assert len(seen["errors"]) == 2
    assert any("broken on purpose" in line for line in seen["console"])
