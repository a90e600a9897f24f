"""One capture in the browser: a fresh context, the page served from memory on one origin, and what it did.

Every request off the origin is aborted and recorded; downloads are refused, popups closed, service
workers blocked, dialogs dismissed. The page is reached by a real navigation (not set_content), so the
init script (init_script.js) is in place before any page script runs. The page counts as rendered after
`load`, two animation frames and a short settle (not network idle: a page that polls never idles).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from PIL import Image

from roopik_rl_mcp.ui.checks import run_checks
from roopik_rl_mcp.ui.models import CheckResult, FailedResponse, UICheck

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Request, Response, Route, WebSocketRoute

logger = logging.getLogger(__name__)

ORIGIN = "http://roopik.local"
INIT_SCRIPT = Path(__file__).with_name("init_script.js").read_text(encoding="utf-8")
BINDING = "__roopikEvent"
SETTLE_MS = 50
MAX_BLOCKED = 200
MAX_VISIBLE_TEXT = 20_000
MAX_ARIA = 50_000
CONTEXT_CLOSE_TIMEOUT_S = 3.0


_TASKS: set[asyncio.Future] = set()


def _background(awaitable: Awaitable) -> None:
    """Run without waiting for it, holding a reference (the event loop keeps only weak ones)."""
    task = asyncio.ensure_future(awaitable)
    _TASKS.add(task)
    task.add_done_callback(_settled)


def _settled(task: asyncio.Future) -> None:
    _TASKS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.info("UI background step failed: %s", str(task.exception()).splitlines()[0] if str(task.exception()) else task.exception())


@dataclass
class PageSpec:
    """What to serve and how to look at it."""

    resources: dict[str, tuple[str, bytes]]  # path -> (content type, body); "/" is the page
    viewport: tuple[int, int] = (1280, 800)
    screenshots_at_ms: list[int] = field(default_factory=lambda: [0])
    checks: list[UICheck] = field(default_factory=list)


@dataclass
class PageEvent:
    kind: str  # console, error, unhandledrejection, render
    data: dict


@dataclass
class RenderOutcome:
    """Raw observations; capture.py maps locations through the source map and decides the status."""

    events: list[PageEvent] = field(default_factory=list)
    failed_responses: list[FailedResponse] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    screenshots: list[tuple[int, bytes, int, int]] = field(default_factory=list)  # (at_ms, png, width, height)
    aria_snapshot: str = ""
    visible_text: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    timed_out: bool = False
    timeout_stage: str = ""
    render_ms: float = 0.0
    checks_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    dropped_events: int = 0
    context_closed: bool = True
    crash: str = ""

    def errors(self) -> list[PageEvent]:
        return [e for e in self.events if e.kind != "console"]

    def console_errors(self) -> list[PageEvent]:
        return [e for e in self.events if e.kind == "console" and e.data.get("level") == "error"]


class _Session:
    """The handlers of one context; they only append to the outcome."""

    def __init__(self) -> None:
        self.spec = PageSpec(resources={})
        self.outcome = RenderOutcome()
        self.main: Page | None = None
        self._blocked: set[str] = set()

    def bind(self, spec: PageSpec, outcome: RenderOutcome) -> None:
        self.spec, self.outcome = spec, outcome

    def _block(self, url: str) -> None:
        if len(self.outcome.blocked_requests) < MAX_BLOCKED:
            self.outcome.blocked_requests.append(url)
        self._blocked.add(url)

    async def route(self, route: Route, request: Request) -> None:
        url = request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != ORIGIN:
            self._block(url)
            await route.abort("blockedbyclient")
            return
        resource = self.spec.resources.get(parts.path or "/")
        if resource is not None:
            content_type, body = resource
            await route.fulfill(status=200, content_type=content_type, body=body,
                                headers={"Cache-Control": "no-store"})
        elif parts.path == "/favicon.ico":
            await route.fulfill(status=204, body=b"")
        else:
            await route.fulfill(status=404, content_type="text/plain", body=b"not found")

    async def web_socket(self, socket: WebSocketRoute) -> None:
        self._block(socket.url)
        await socket.close(code=1008, reason="blocked: the page has no network")

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.outcome.failed_responses.append(FailedResponse(url=response.url, status=response.status))

    def on_request_failed(self, request: Request) -> None:
        if request.url not in self._blocked:
            self.outcome.failed_responses.append(FailedResponse(url=request.url, error=request.failure or "failed"))

    def on_page(self, page: Page) -> None:
        if self.main is not None and page is not self.main:
            self.outcome.notes.append(f"popup closed: {page.url}")
            _background(page.close())

    def on_binding(self, _source: dict, kind: str, data: dict) -> None:
        if isinstance(data, dict):
            self.outcome.events.append(PageEvent(kind=str(kind), data=data))

    def on_download(self, download) -> None:
        self.outcome.notes.append(f"download refused: {download.url}")

    async def on_dialog(self, dialog) -> None:
        self.outcome.notes.append(f"{dialog.type} dialog dismissed: {dialog.message[:200]}")
        await dialog.dismiss()


class ContextPool:
    """Keeps up to `size` spare contexts ready (binding, init script, routes, a blank page: ~0.1 s of the
    browser's time each), made after a capture while the caller is busy elsewhere. Every capture still
    gets a context of its own, used once."""

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._spares: list[tuple[Browser, asyncio.Task]] = []

    async def take(self, browser: Browser) -> _Prepared:
        while self._spares:
            owner, spare = self._spares.pop(0)
            if owner is not browser or not browser.is_connected():
                spare.add_done_callback(_discard)
                continue
            try:
                return await spare
            except Exception as error:  # the browser went away while it was being made
                logger.info("spare UI context unusable: %s", error)
        return await _prepare(browser)

    def refill(self, browser: Browser) -> None:
        while len(self._spares) < self.size and browser.is_connected():
            spare = asyncio.ensure_future(_prepare(browser))
            spare.add_done_callback(_retrieve)
            self._spares.append((browser, spare))

    def drop(self) -> None:
        spares, self._spares = self._spares, []
        for _, spare in spares:
            spare.add_done_callback(_discard)


def _retrieve(task: asyncio.Task) -> None:
    """A spare that failed (the browser closed while it was made) is only worth a log line."""
    if not task.cancelled() and task.exception() is not None:
        logger.info("spare UI context not made: %s", str(task.exception()).splitlines()[0])


def _discard(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is None:
        _background(_close(task.result().context))


@dataclass
class _Prepared:
    context: BrowserContext
    page: Page
    session: _Session


async def _prepare(browser: Browser, viewport: tuple[int, int] = (1280, 800)) -> _Prepared:
    session = _Session()
    context = await browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1, accept_downloads=False,
        service_workers="block", locale="en-US", timezone_id="UTC", java_script_enabled=True)
    try:
        await context.expose_binding(BINDING, session.on_binding)
        await context.add_init_script(INIT_SCRIPT)
        await context.route("**/*", session.route)
        await context.route_web_socket(re.compile(r".*"), session.web_socket)
        context.on("page", session.on_page)
        page = await context.new_page()
    except BaseException:
        await _close(context)
        raise
    session.main = page
    page.on("response", session.on_response)
    page.on("requestfailed", session.on_request_failed)
    page.on("download", session.on_download)
    page.on("dialog", session.on_dialog)
    return _Prepared(context=context, page=page, session=session)


async def render(browser: Browser, spec: PageSpec, timeout_s: float, pool: ContextPool | None = None,
                 on_stuck: Callable[[], Awaitable[None]] | None = None) -> RenderOutcome:
    """Open, settle, screenshot, snapshot, run the checks; never longer than `timeout_s` in the page.

    A page that ended cleanly is closed after this returns (~20 ms saved per capture); one that timed out
    or crashed is closed first, and `on_stuck` (a browser restart) runs when its context will not close.
    """
    from playwright.async_api import Error as PlaywrightError

    outcome = RenderOutcome()
    started = time.perf_counter()
    prepared = await asyncio.wait_for(pool.take(browser) if pool else _prepare(browser), timeout_s)
    prepared.session.bind(spec, outcome)
    try:
        await asyncio.wait_for(_drive(prepared.page, prepared.session, timeout_s, started), timeout_s)
    except asyncio.TimeoutError:
        outcome.timed_out = True
        outcome.timeout_stage = outcome.timeout_stage or "render"
    except PlaywrightError as error:  # the renderer crashed, or the page closed itself
        outcome.crash = str(error).splitlines()[0][:500] if str(error) else type(error).__name__
    except BaseException:  # cancelled (the caller gave up): nothing may stay open
        await _close(prepared.context)
        raise
    if not outcome.render_ms:
        outcome.render_ms = (time.perf_counter() - started) * 1000
    prepared.session.bind(PageSpec(resources={}), RenderOutcome())  # late events go nowhere
    if outcome.timed_out or outcome.crash:
        outcome.context_closed = await _retire(prepared.context, browser, pool, on_stuck)
    else:
        _background(_retire(prepared.context, browser, pool, on_stuck))
    return outcome


async def _retire(context: BrowserContext, browser: Browser, pool: ContextPool | None,
                  on_stuck: Callable[[], Awaitable[None]] | None) -> bool:
    """Close a used context; then make the next spare, or restart the browser if it would not close."""
    closed = await _close(context)
    if not closed and on_stuck is not None:
        await on_stuck()
    elif closed and pool is not None:
        pool.refill(browser)
    return closed


async def _drive(page: Page, session: _Session, timeout_s: float, started: float) -> None:
    from playwright.async_api import Error as PlaywrightError

    outcome, spec = session.outcome, session.spec
    page.set_default_timeout(timeout_s * 1000)
    current = page.viewport_size or {}
    if (current.get("width"), current.get("height")) != tuple(spec.viewport):
        await page.set_viewport_size({"width": spec.viewport[0], "height": spec.viewport[1]})

    outcome.timeout_stage = "load"
    await page.goto(f"{ORIGIN}/", wait_until="load", timeout=timeout_s * 1000)
    outcome.timeout_stage = "first frames"
    await page.evaluate("settle => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() =>"
                        " setTimeout(done, settle))))", SETTLE_MS)
    settled = time.perf_counter()
    outcome.timeout_stage = "screenshot"
    for at_ms in sorted(set(spec.screenshots_at_ms)):
        wait = settled + at_ms / 1000 - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        png = await page.screenshot(type="png", animations="allow", caret="hide")
        with Image.open(io.BytesIO(png)) as image:
            outcome.screenshots.append((at_ms, png, image.width, image.height))
    outcome.timeout_stage = "snapshot"
    body = page.locator("body")
    aria, text = await asyncio.gather(body.aria_snapshot(), body.inner_text())
    outcome.aria_snapshot, outcome.visible_text = aria[:MAX_ARIA], text[:MAX_VISIBLE_TEXT]
    outcome.render_ms = (time.perf_counter() - started) * 1000
    dropped = await page.evaluate("() => typeof window.__roopikDropped === 'function' ? window.__roopikDropped() : -1")
    if dropped == -1:  # without the init script nothing the page did would be seen: never a pass
        raise PlaywrightError("the capture's init script is not installed in the page")
    outcome.dropped_events = int(dropped)
    if spec.checks:
        outcome.timeout_stage = "checks"
        checks_started = time.perf_counter()
        deadline = started + timeout_s
        try:
            outcome.checks = await run_checks(page, spec.checks, outcome, deadline)
        finally:
            outcome.checks_ms = (time.perf_counter() - checks_started) * 1000
    outcome.timeout_stage = ""


async def _close(context: BrowserContext) -> bool:
    """Close the context; False when it would not close in time (a renderer stuck in a loop)."""
    try:
        await asyncio.wait_for(context.close(), CONTEXT_CLOSE_TIMEOUT_S)
        return True
    except Exception as error:
        if "has been closed" in str(error):  # the browser went first (shutdown, crash): nothing left open
            return True
        logger.warning("UI capture context did not close: %s", str(error).splitlines()[0] if str(error) else error)
        return False
