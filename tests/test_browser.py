"""The HTML report in a real headless browser (Debian's chromium, installed by `make test`).

Driven over the DevTools protocol: the page is loaded from file://, then we check that a
screenshot is not blank, every section heading is there, every image decoded, nothing was
logged as an error, no script ran (no alert dialog from a hostile customer name) and no request
left the file (only file: and data: URLs). The page is also printed to PDF.
"""
from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--remote-debugging-port=0"]
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_OWNER = '"><img src=x onerror=alert(2)>'

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed and could not be installed here "
                             "(make test runs: apt-get install -y chromium; needs root and Debian's registry)")]


class DevTools:
    """A minimal DevTools-protocol client over one websocket (flattened target sessions)."""

    def __init__(self, url: str):
        import websocket
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, method: str, session: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        seen = [e for e in self.events if e.get("method") == method and e.get("sessionId") == session]
        while not seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout}s")
            m = json.loads(self.ws.recv())
            self.events.append(m)
            if m.get("method") == method and m.get("sessionId") == session:
                return m
            if m.get("method") == "Page.javascriptDialogOpening":  # an alert() blocks the load
                raise AssertionError(f"a script ran and opened a dialog: {m['params'].get('message')!r}")
        return seen[0]

    def evaluate(self, expr: str, session: str):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
        return r["result"].get("value")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        cdp = DevTools(f"ws://127.0.0.1:{port}{path}")
        yield cdp
        try:
            cdp.call("Browser.close")
        except Exception:  # noqa: BLE001 - the socket closes with the browser
            pass
    finally:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(cdp: DevTools, html: Path) -> tuple[str, list[dict]]:
    """Open `html` in a fresh tab; return (session id, that tab's events so far)."""
    target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    s = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.call(f"{domain}.enable", session=s)
    cdp.call("Emulation.setDeviceMetricsOverride",
             {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, s)
    cdp.call("Page.navigate", {"url": html.resolve().as_uri()}, s)
    cdp.wait_for("Page.loadEventFired", s)
    cdp.evaluate("1", s)  # flush: events raised during load arrive before this answer
    return s, [e for e in cdp.events if e.get("sessionId") == s]


def check_page(cdp: DevTools, html: Path, tmp_path: Path) -> str:
    from keyaccounts.report import SECTIONS

    s, events = load(cdp, html)
    # every section heading, in order
    headings = cdp.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent.trim())", s)
    assert headings == list(SECTIONS)
    # every image decoded (inline data: PNGs)
    images = cdp.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])", s)
    assert len(images) >= 8
    assert all(ok and width > 0 and src == "data:image/png;base64," for ok, width, src in images), images
    # no console errors, no exceptions, no dialogs (no script ran)
    bad = [e for e in events if e["method"] in ("Runtime.exceptionThrown", "Page.javascriptDialogOpening")
           or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
           or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert not bad, bad
    # no network request outside the file
    urls = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), \
        [u for u in urls if not u.startswith(("file:", "data:"))]
    assert html.resolve().as_uri() in urls
    # a screenshot that is not blank: a real range of grey levels and a fair share of ink
    from PIL import Image
    shot = base64.b64decode(cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, s)["data"])
    (tmp_path / f"{html.stem}.png").write_bytes(shot)
    grey = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype="float64")
    assert grey.shape[1] >= 1200 and grey.shape[0] > 2000  # the full page (less a scrollbar), beyond one screen
    assert grey.std() > 20 and (grey < 200).mean() > 0.02
    # printable: a multi-page PDF
    pdf = base64.b64decode(cdp.call("Page.printToPDF", {"printBackground": True}, s)["data"])
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") >= 3
    return cdp.evaluate("document.body.innerText", s)


def test_demo_report_in_browser(browser, demo_run, tmp_path):
    assert demo_run.exit_code == 0, demo_run.output
    text = check_page(browser, demo_run.report, tmp_path)
    assert "Key accounts" in text and "P10" in text


def test_hostile_names_stay_text_in_browser(browser, demo_run, tmp_path):
    from keyaccounts.config import load_pipeline
    from keyaccounts.demo import rebase_pipeline
    from keyaccounts.pipeline import load_inputs
    from keyaccounts.report import build_report
    from keyaccounts.tracking import Tracker

    p, _ = rebase_pipeline(load_pipeline(demo_run.repo / "pipelines" / "demo.yaml"), demo_run.workdir)
    p = p.model_copy(update={"report": p.report.model_copy(update={"backtest_days": 0, "top_n": 5})})
    loaded = load_inputs(p)
    loaded.tables.customers["name"] = HOSTILE_NAME
    loaded.tables.customers["owner"] = HOSTILE_OWNER
    rep = build_report(loaded, p, tracker=Tracker(demo_run.tracking_uri, models_dir=demo_run.workdir / "models"))
    html = tmp_path / "hostile.html"
    html.write_text(rep.html, encoding="utf-8")
    text = check_page(browser, html, tmp_path)
    assert HOSTILE_NAME in text and HOSTILE_OWNER in text  # shown as text, not run
