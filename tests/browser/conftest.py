"""The web app in a real Chromium (Debian's), driven by Playwright, against the real stack."""

from __future__ import annotations

import http.server
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    sync_playwright,
)

from tests.conftest import IN_CI
from tests.e2e.conftest import Stack, postgres_stack

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download is not available: the system Chromium, with nothing
# that reaches out to the network or leaves state behind between runs.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright turns third-party storage partitioning off, so a cross-site frame gets no
# storage at all, as in a browser blocking third-party storage. Browsers ship with it on:
# the last --disable-features wins, and this one leaves partitioning alone.
PARTITIONED_STORAGE = ["--disable-features=HttpsUpgrades"]
OUTPUT = Path(__file__).parent / "output"
# Sign-in failures allowed per account and client before the throttle answers 429.
LOGIN_FAILURE_LIMIT = 2


@pytest.fixture(scope="module")
def stack(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack on PostgreSQL for a test module, in schemas of its own."""
    with postgres_stack(
        postgres_url,
        tmp_path_factory.mktemp("stack"),
        LOGIN_FAILURE_LIMIT=f"{LOGIN_FAILURE_LIMIT}/15 minutes",
        # The stand-in for the Space's page (see `embedder`) may frame the app.
        FRAME_ANCESTORS="'self' https://huggingface.co https://*.hf.space http://localhost:*",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def playwright(stack: Stack) -> Iterator[Playwright]:
    """Playwright's driver. Its sync API runs an event loop of its own in this thread, so
    every async fixture (the stack's database) is set up before it starts and torn down
    after it stops."""
    if shutil.which(CHROMIUM) is None:
        message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(f"CI=true: the browser tests must run, but {message}")
        pytest.skip(message)
    with sync_playwright() as driver:
        yield driver


@dataclass
class Browser:
    """One fresh Chromium profile, recording what its pages did wrong."""

    context: BrowserContext
    base_url: str
    output: Path
    problems: list[str] = field(default_factory=list)

    def new_page(self) -> Page:
        page = self.context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("request", self._request)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _request(self, request: Request) -> None:
        if not request.url.startswith(self.base_url):
            self.problems.append(f"request to another origin: {request.url}")

    def screenshot(self, page: Page, name: str) -> Path:
        self.output.mkdir(parents=True, exist_ok=True)
        path = self.output / f"{name}.png"
        page.screenshot(path=path, full_page=True)
        return path


@pytest.fixture
def browser(
    playwright: Playwright, stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Browser]:
    """A Chromium with a fresh user-data-dir; screenshots go to tests/browser/output/<test>/.

    Parametrized indirectly, its parameter is a list of extra Chromium arguments."""
    extra_args: list[str] = getattr(request, "param", [])
    output = OUTPUT / re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(output, ignore_errors=True)
    context = playwright.chromium.launch_persistent_context(
        tmp_path / "profile",
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS + extra_args,
        headless=True,
        base_url=stack.base_url,
        viewport={"width": 1280, "height": 800},
    )
    context.set_default_timeout(10_000)
    try:
        yield Browser(context, stack.base_url, output)
    finally:
        context.close()


@dataclass
class Embedder:
    """A page on another origin that frames the app at `url`, as the Space's page does."""

    port: int

    @property
    def allowed(self) -> str:
        """On another site (localhost is not 127.0.0.1) that FRAME_ANCESTORS names."""
        return f"http://localhost:{self.port}/"

    @property
    def refused(self) -> str:
        """On another origin (port) that FRAME_ANCESTORS does not name."""
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture
def embedder(stack: Stack) -> Iterator[Embedder]:
    """The Space's page on huggingface.co frames the app from another site. A stand-in must
    be served from loopback for real: Chromium refuses to let a page from anywhere else
    (a route Playwright answers, for one) frame a loopback address."""
    page = f'<h1>Space</h1><iframe src="{stack.base_url}/" width="400" height="700"></iframe>'

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Embedder(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
