"""Fixtures of the web tests: a fake analyzer publishing into a LiveHub (``webfakes.FakePublisher``), a live server
on a free loopback port, and Debian's chromium driven by Playwright (skipped where absent). Reusable by the
end-to-end browser tests under tests/web."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from webfakes import FakePublisher

from realtime.store import Store, open_store
from realtime.web import LiveHub, create_app, start_server

CHROMIUM = os.environ.get("REALTIME_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "gym.sqlite"))
    yield s
    s.close()


@pytest.fixture
def live_server():
    """``live_server(hub, store, token=..., **create_app kwargs)`` -> ServerHandle on a free loopback port."""
    handles = []

    def start(hub: LiveHub, store: Store | None, *, token: str | None = None, **kwargs):
        handle = start_server(create_app(hub, store, token=token, **kwargs), "127.0.0.1", 0)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop(5.0)


@pytest.fixture
def fake_publisher():
    """``fake_publisher(hub, store, cameras=..., **kw)`` -> a started FakePublisher, stopped at teardown."""
    publishers = []

    def start(hub: LiveHub, store: Store | None = None, **kwargs) -> FakePublisher:
        publisher = FakePublisher(hub, store, **kwargs).start()
        publishers.append(publisher)
        return publisher

    yield start
    for publisher in publishers:
        publisher.stop(close_sets=False)


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium through Playwright (its own browser download is not reachable here)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
