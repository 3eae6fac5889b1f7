"""The UI in a real browser: Debian's Chromium driven by Playwright against a real ``airflow
api-server`` on a free loopback port. Logs in through the simple auth manager's login page, opens
the plugin from Airflow's navigation (the page is embedded in the Airflow UI) and checks what is
visible: the timeline, the coverage picture and a parity report; then the dark theme and a narrow
window without horizontal scrolling.

Screenshots go to the test's temporary folder; with ``FEATURE_ROLLOUT_SCREENSHOTS=<dir>`` (``make
screenshots`` sets ``docs/img``) they are saved there too. The API server is started in its own
session and stopped by PID. Chromium comes from Debian (``scripts/ensure-chromium.sh``, run by
``make test``); without it the test skips, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.ui.conftest import history_at

AIRFLOW = str(Path(sys.executable).parent / "airflow")
PASSWORD = "browser-test-pw"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def chromium() -> str:
    path = os.environ.get("FEATURE_ROLLOUT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        skip_or_fail("Debian's chromium is not installed (scripts/ensure-chromium.sh installs it)")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``airflow api-server`` with the plugin, SQLite metadata and the connection on a registry with history."""
    base = tmp_path_factory.mktemp("browser")
    registry = f"sqlite:///{base / 'registry.db'}"
    history = history_at(base, registry)
    home = base / "airflow"
    home.mkdir()
    (home / "dags").mkdir()
    (home / "passwords.json").write_text(json.dumps({"admin": PASSWORD}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT": json.dumps({
            "conn_type": "feature_rollout", "extra": {"repo_path": str(history.repo), "registry_url": registry}}),
    })
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    log = open(home / "api-server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([AIRFLOW, "api-server", "--port", str(port), "-H", "127.0.0.1"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (home / "api-server.log").read_text(errors="replace")[-3000:]
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3) as reply:
                if reply.status == 200:
                    break
            assert time.monotonic() < deadline, "the API server did not become healthy in 120 s"
            time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield instance
        finally:
            instance.close()


def save(page: Any, name: str, folder: Path, **options: Any) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), **options)
    target = os.environ.get("FEATURE_ROLLOUT_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def log_in(page: Any, url: str) -> None:
    """The real login flow: the UI redirects to the simple auth manager's form."""
    page.goto(f"{url}/")
    page.wait_for_url("**/auth/login**", timeout=60_000)
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda u: "/auth/login" not in u, timeout=60_000)


def test_the_plugin_inside_the_airflow_ui(api_server: str, browser: Any, tmp_path: Path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        log_in(page, api_server)
        page.goto(f"{api_server}/plugin/feature-rollout")
        frame = page.frame_locator("iframe")
        frame.get_by_role("link", name="demo", exact=True).click()
        frame.get_by_role("link", name="driver_stats").click()
        frame.locator("h1", has_text="driver_stats").wait_for(timeout=30_000)

        timeline = frame.locator("ul.timeline li")
        assert timeline.count() == 8
        assert timeline.first.inner_text().startswith("staged")
        assert "rolled back" in frame.locator("ul.timeline").inner_text()
        coverage = frame.locator("svg.coverage")
        assert coverage.is_visible()
        box = coverage.bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 60
        assert frame.locator("svg.coverage rect.covered").count() == 4
        report = frame.locator("[id^=parity-]").first
        assert report.is_visible()
        assert "failed" in report.inner_text() and "Worst mismatches" in report.inner_text()
        # the hostile description is shown as text, not run
        assert "<script>alert(1)</script>" in frame.locator("p.description").inner_text()
        save(page, "ui-view-light", tmp_path, full_page=False)

        # Dark theme: the UI keeps it under localStorage "theme"; the embedded page follows.
        page.evaluate("window.localStorage.setItem('theme', 'dark')")
        page.reload()
        frame = page.frame_locator("iframe")
        frame.get_by_role("link", name="demo", exact=True).click()
        frame.get_by_role("link", name="driver_stats").click()
        frame.locator("h1", has_text="driver_stats").wait_for(timeout=30_000)
        assert frame.locator("html").get_attribute("data-theme") == "dark"
        background = frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
        assert background == "rgb(17, 24, 39)"
        save(page, "ui-view-dark", tmp_path, full_page=False)
    finally:
        context.close()


def test_narrow_windows_do_not_scroll_sideways(api_server: str, browser: Any, tmp_path: Path):
    context = browser.new_context(viewport={"width": 390, "height": 900})
    page = context.new_page()
    try:
        log_in(page, api_server)
        for path in ("/feature-rollout/", "/feature-rollout/workspaces/demo",
                     "/feature-rollout/workspaces/demo/views/driver_stats", "/feature-rollout/workspaces/demo/plans"):
            page.goto(f"{api_server}{path}")
            page.locator("h1").wait_for()
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 390px"
        page.goto(f"{api_server}/feature-rollout/workspaces/demo/views/driver_stats")
        assert page.locator("svg.coverage").is_visible()
        save(page, "ui-view-narrow", tmp_path, full_page=False)
    finally:
        context.close()
