"""Fixtures of the browser tests: `pgjobs console` as a process, and Debian's Chromium through
Playwright (its own browser download cannot run here, so it launches /usr/bin/chromium).

Without Chromium the tests skip, except in CI (CI=true), where they fail: CI installs it
(`make setup`, system-deps).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import processes
from tests.e2e import chart_helpers
from tests.e2e.operator_helpers import Process, Services

CHROMIUM = os.environ.get("PGJOBS_CHROMIUM", "/usr/bin/chromium")
#: Set to a directory to keep the screenshots there too (docs/images for the docs' pictures).
SCREENSHOTS_ENV = "PGJOBS_CONSOLE_SCREENSHOTS"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Console:
    """A running `pgjobs console` and where to reach it."""

    def __init__(self, process: Process, url: str) -> None:
        self.process = process
        self.url = url


@contextlib.contextmanager
def _console_identity(kube: Any, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig of the chart's console ServiceAccount under the chart's console RBAC (which
    proves that RBAC enough for every button); admin without a helm binary (outside CI)."""
    helm = chart_helpers.helm_binary()
    if helm is None:
        warnings.warn("helm is not built (`make helm`): the console acts as admin", stacklevel=2)
        yield Path(kube.kubeconfig)
        return
    release = f"console-{uuid.uuid4().hex[:8]}"
    values = {"fullnameOverride": release, "console": {"enabled": True}}
    rendered = chart_helpers.render(helm, tmp_path, values, release=release, namespace=namespace)
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    objects = [
        obj
        for obj in rendered
        if obj["kind"] in kinds
        and obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "console"
    ]
    assert len(objects) == len(kinds)
    with chart_helpers.applied(kube, objects):
        yield kube.kubeconfig_for_serviceaccount(namespace, f"{release}-console")


@pytest.fixture
def console(services: Services, kube: Any, namespace: str, tmp_path: Path) -> Iterator[Console]:
    """`pgjobs console` against the test's database, acting on PgJobs as the chart's console."""
    port = _free_port()
    with _console_identity(kube, namespace, tmp_path) as kubeconfig:
        process = services.console(port, "--kubeconfig", str(kubeconfig), "--refresh-seconds", "0.5")
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        processes.wait_for(lambda: _safely(answers), 30, what="the console to listen")
        yield Console(process, url)


def _safely(check: Any) -> bool:
    try:
        return bool(check())
    except OSError:
        return False


@pytest.fixture
def browser(console: Console) -> Iterator[Any]:
    """A headless Chromium; skipped when there is none, but never in CI.

    Started after the console (and so after the database fixture): Playwright's sync API runs
    an event loop of its own, and asyncio.run (the database's migrate) refuses to run inside it."""
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; make setup does)"
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        missing = "playwright is not installed (it comes with the dev extra)"
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the browser tests: {missing}", pytrace=False)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def screenshot(page: Any, tmp_path: Path) -> Any:
    """screenshot(name): a PNG of the page under the test's tmp dir (and $PGJOBS_CONSOLE_SCREENSHOTS)."""
    keep = os.environ.get(SCREENSHOTS_ENV)

    def take(name: str) -> Path:
        path = tmp_path / "screenshots" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(path), full_page=False)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path

    return take
