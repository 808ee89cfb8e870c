"""Browser tests: Debian's Chromium, headless, driven by Playwright's sync API; axe-core
(vendored, `vendor/axe-core/`) for WCAG 2.1 A and AA; keyboard walks; and the whole system
started as `make run` starts it, on a fresh copy of the project.

The tests here are plain sync functions. While Playwright's sync API runs it marks its own
event loop as the thread's running loop, so an `async def` test (or `asyncio.run`) cannot
run beside it: the browser therefore lives for this package only, and is closed when its
last test has run.

Every test's page is screenshotted (full page) into `var/test-artifacts/web/` when the test
ends; `screenshot(page, "step")` adds one at a step that matters.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.system.test_make_run import (
    STOP_TIMEOUT_S,
    _alive,
    _clean_env,
    _copy_project,
    _descendants,
    _group_members,
    _port_is_free,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = Path("/usr/lib/chromium/chromium")
INSTALL_CHROMIUM = "apt-get install -y --no-install-recommends chromium fonts-liberation"
AXE = HERE / "vendor" / "axe-core" / "axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "web"
WEB_PORT = 8080
GATEWAY_PORT = 8000
# What `make run` listens on: the gateway, the three services and the web app.
DEMO_PORTS = {
    "gateway": GATEWAY_PORT,
    "participant": 8001,
    "consent": 8002,
    "messaging": 8003,
    "web": WEB_PORT,
}
START_TIMEOUT_S = 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/web starts a browser, most also the whole system."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (`playwright install` would fetch a build of its own)."""
    if not os.access(CHROMIUM, os.X_OK):
        message = f"no Chromium at {CHROMIUM}; install it with `{INSTALL_CHROMIUM}`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh context (no cookies from other tests), Norwegian and in Oslo's time;
    screenshotted when the test ends, whatever its outcome."""
    context = browser.new_context(
        locale="nb-NO",
        timezone_id="Europe/Oslo",
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(10_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        with suppress(PlaywrightError):  # a closed or crashed page has nothing to show
            _save_screenshot(opened, _file_name(request.node.name))
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as `var/test-artifacts/web/<test>--<name>.png`."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    test = current.split("::")[-1].rsplit(" ", 1)[0] if current else ""
    return _save_screenshot(page, _file_name(f"{test}--{name}" if test else name))


def _file_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "page"


def _save_screenshot(page: Page, stem: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{stem}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- accessibility ----------------------------------------------------------------------------


def axe_violations(page: Page, tags: list[str] | None = None) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, for the WCAG 2.1 A and AA rules (or
    `tags`). axe is injected through the DevTools protocol, so a Content-Security-Policy
    that forbids inline scripts does not stop it."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text())
    options = {"runOnly": {"type": "tag", "values": tags or WCAG_21_AA}}
    results = page.evaluate("(options) => axe.run(document, options)", options)
    return list(results["violations"])


def assert_accessible(page: Page) -> None:
    """No WCAG 2.1 A or AA violation that axe-core finds on the page as it is now."""
    violations = axe_violations(page)
    assert not violations, _describe_violations(page.url, violations)


def _describe_violations(url: str, violations: list[dict[str, Any]]) -> str:
    lines = [f"{len(violations)} WCAG 2.1 AA violation(s) found by axe-core on {url}:"]
    for violation in violations:
        nodes = violation["nodes"]
        targets = ", ".join(" ".join(map(str, node["target"])) for node in nodes[:3])
        more = f" (+{len(nodes) - 3} more)" if len(nodes) > 3 else ""
        lines.append(
            f"- {violation['id']} [{violation['impact']}] {violation['help']}: {targets}{more}"
        )
        if nodes and nodes[0].get("failureSummary"):
            summary = " ".join(nodes[0]["failureSummary"].split())
            lines.append(f"    {summary}")
    return "\n".join(lines)


# --- the keyboard -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FocusStop:
    """One element that Tab reached."""

    tag: str  # lower case: "a", "button", "input", ...
    label: str  # its accessible name, roughly: aria-label(ledby), <label>, text, title
    href: str | None  # a link's href attribute, as written
    name: str | None  # a form control's name attribute
    focus_visible: bool  # outline or box-shadow while focused (see assert_focus_visible)


# An element described in the page (null for none, or the document itself).
_DESCRIBE = """
(el) => {
  if (!el || el === document.body || el === document.documentElement) return null;
  const text = (node) => (node ? (node.innerText || node.textContent || '') : '')
    .replace(/\\s+/g, ' ').trim();
  const labelledby = (el.getAttribute('aria-labelledby') || '').split(/\\s+/)
    .map((id) => text(document.getElementById(id))).filter(Boolean).join(' ');
  const labels = Array.from(el.labels || []).map(text).filter(Boolean).join(' ');
  const label = (el.getAttribute('aria-label') || '').trim() || labelledby || labels
    || (el.matches('input[type=submit], input[type=button], input[type=reset]') ? el.value : '')
    || text(el) || el.getAttribute('alt') || el.getAttribute('title')
    || el.getAttribute('placeholder') || '';
  const style = getComputedStyle(el);
  const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
  const shadow = Boolean(style.boxShadow) && style.boxShadow !== 'none';
  return {
    tag: el.tagName.toLowerCase(),
    label: label.replace(/\\s+/g, ' ').trim(),
    href: el.getAttribute('href'),
    name: el.getAttribute('name'),
    focus_visible: outline || shadow,
    style: `outline-style ${style.outlineStyle}, outline-width ${style.outlineWidth}, `
      + `box-shadow ${style.boxShadow}`,
  };
}
"""
_DESCRIBE_FOCUSED = f"() => ({_DESCRIBE})(document.activeElement)"

# The walk starts on an element before the first tabbable one: focusable, but not by Tab.
_FOCUS_TOP = """
() => {
  const start = document.createElement('span');
  start.tabIndex = -1;
  start.dataset.broenTabStart = '';
  document.body.prepend(start);
  start.focus();
}
"""
# One step of the walk: the element Tab reached, whether it is the walk's first (focus came
# round) or the one before (focus did not move).
_TAB_STEP = f"""
() => {{
  document.querySelectorAll('[data-broen-tab-start]').forEach((el) => el.remove());
  const el = document.activeElement;
  const described = ({_DESCRIBE})(el);
  if (described) {{
    window.__broenTabFirst = window.__broenTabFirst || el;
    described.first = el === window.__broenTabFirst;
    described.again = el === window.__broenTabLast;
    window.__broenTabLast = el;
  }}
  return described;
}}
"""
_TAB_DONE = "() => { delete window.__broenTabFirst; delete window.__broenTabLast; }"


def tab_through(page: Page, max_steps: int = 60) -> list[FocusStop]:
    """Press Tab from the top of the page until focus leaves the page or comes back to the
    first element; every element it stopped on, in order. Fails when focus does not come
    round within `max_steps` presses, or stays on one element (a keyboard trap)."""
    page.evaluate(_TAB_DONE)
    page.evaluate(_FOCUS_TOP)
    stops: list[FocusStop] = []
    try:
        for _ in range(max_steps):
            page.keyboard.press("Tab")
            focused = page.evaluate(_TAB_STEP)
            if focused is None:
                return stops
            stop = FocusStop(
                focused["tag"],
                focused["label"],
                focused["href"],
                focused["name"],
                focused["focus_visible"],
            )
            if focused["again"]:
                raise AssertionError(f"Tab does not move focus away from {stop} (a trap?)")
            if stops and focused["first"]:
                return stops
            stops.append(stop)
    finally:
        page.evaluate(_TAB_DONE)
    walked = "\n".join(f"  {stop}" for stop in stops[-5:])
    raise AssertionError(
        f"focus did not come round within {max_steps} Tab presses; the last stops:\n{walked}"
    )


def assert_focus_visible(page: Page) -> None:
    """The focused element shows that it is focused: an outline (style not none, width
    above 0; Chromium's own focus ring counts) or a box-shadow (WCAG 2.4.7)."""
    focused = page.evaluate(_DESCRIBE_FOCUSED)
    assert focused is not None, "nothing on the page has focus"
    assert focused["focus_visible"], (
        f"<{focused['tag']}> {focused['label']!r} has focus but shows no focus indicator "
        f"({focused['style']})"
    )


# --- the whole system, as `make run` starts it ------------------------------------------------


@dataclass(frozen=True)
class DemoWeb:
    """The running demo: `make run` in `workdir`, a fresh copy of the project."""

    web_url: str  # http://127.0.0.1:8080
    gateway_url: str  # http://127.0.0.1:8000
    workdir: Path
    log: Path  # what `make run` printed (stdout and stderr), growing while it runs

    def output(self) -> str:
        """Everything `make run` has printed so far (the seeded demo staff and their ids)."""
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="package")
def demo_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWeb]:
    """`make run` (BROEN_ENV=dev, the Procfile under honcho) on a copy of the project with
    an empty `var/`, healthy on every port; Ctrl-C'd (SIGINT to its process group, SIGKILL
    after a timeout) when the package's last test has run."""
    taken = [port for port in DEMO_PORTS.values() if not _port_is_free(port)]
    if taken:
        pytest.fail(
            f"ports {taken} are already in use; the web tests start `make run`, which needs "
            f"{sorted(DEMO_PORTS.values())} free (is a `make run` still running?)"
        )
    base = tmp_path_factory.mktemp("demo-web")
    workdir = base / "broen"
    _copy_project(workdir)
    log = base / "make-run.log"
    env = _clean_env(PYTHONPATH=str(workdir))
    with log.open("wb") as output:
        # -o: the linked .venv counts as installed; never reinstall the shared venv from here.
        process = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "run"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started: set[int] = set()
    try:
        _wait_until_healthy(process, log)
        started = _descendants(process.pid)
        yield DemoWeb(
            web_url=f"http://127.0.0.1:{WEB_PORT}",
            gateway_url=f"http://127.0.0.1:{GATEWAY_PORT}",
            workdir=workdir,
            log=log,
        )
    finally:
        _stop(process, started | _descendants(process.pid))


def _wait_until_healthy(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = dict(DEMO_PORTS)
    while waiting and time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make run exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        for name, port in list(waiting.items()):
            with suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                    del waiting[name]
        time.sleep(0.2)
    if waiting:
        pytest.fail(
            f"no healthy /healthz within {START_TIMEOUT_S:.0f} s from {sorted(waiting)}:\n"
            f"{log.read_text()[-4000:]}"
        )


def _stop(process: subprocess.Popen[bytes], started: set[int]) -> None:
    """Ctrl-C, as in a terminal; then SIGKILL whatever is left of it."""
    pgid = process.pid
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        _group_members(pgid) or any(_alive(pid) for pid in started)
    ):
        time.sleep(0.2)
    for pid in _group_members(pgid) | {pid for pid in started if _alive(pid)}:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
