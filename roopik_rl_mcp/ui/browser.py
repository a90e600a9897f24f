"""One warm headless Chromium per process, started inside bubblewrap, driven by Playwright's async API.

Why async in a thread of its own: the MCP server calls tools from worker threads, and Playwright's sync
API binds its objects to the thread that created them, so captures from several threads would queue
behind one another. Here one event loop owns Playwright; any thread submits a coroutine and waits for
its result, and captures run concurrently in their own browser contexts (4 at once finish in less than
twice one). Chromium's own sandbox is off (--no-sandbox): bubblewrap is the sandbox, and Playwright talks
to the browser over its pipe (fd 3/4), so the browser needs no network namespace it can reach out of.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shlex
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, TypeVar

from roopik_rl_mcp.ui import runtime, sandbox

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

logger = logging.getLogger(__name__)

T = TypeVar("T")
CHROMIUM_FLAGS = ("--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run",
                  "--disable-sync")
"""Beside Playwright's own (it passes --disable-features itself: another one here would replace its list)."""
LAUNCH_TIMEOUT_MS = 30_000
CLOSE_TIMEOUT_S = 5.0


class BrowserHost:
    """The event loop thread, Playwright and the browser: started on first use, restarted when lost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._starting: asyncio.Lock | None = None
        self._wrapper_dir: str | None = None
        self.isolation = ""
        self.isolation_note = ""
        self.launches = 0

    # -- the loop thread -------------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="ui-browser-loop", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop

    def call(self, work: Callable[[Browser], Awaitable[T]], timeout_s: float) -> T:
        """Run `work(browser)` on the loop thread and wait for it (from any thread but that one)."""
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._with_browser(work), loop)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"the browser did not finish within {timeout_s:.0f} s") from None

    async def _with_browser(self, work: Callable[[Browser], Awaitable[T]]) -> T:
        return await work(await self.browser())

    # -- the browser -----------------------------------------------------------------------------------
    async def browser(self) -> Browser:
        """The running browser, launched (or relaunched after a crash) when there is none."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            self._browser = None
            if self._playwright is None:
                from playwright.async_api import async_playwright

                self._playwright = await async_playwright().start()
            self._browser = await self._launch(self._playwright)
            self.launches += 1
            return self._browser

    async def _launch(self, playwright: Playwright) -> Browser:
        chromium = runtime.ensure_chromium()
        outside_usr = [] if chromium.startswith("/usr/") else [os.path.dirname(chromium)]
        level, why = sandbox.isolation_for(outside_usr)
        if level == "bwrap":
            try:
                browser = await playwright.chromium.launch(
                    executable_path=self._wrapper(chromium, outside_usr), args=list(CHROMIUM_FLAGS),
                    timeout=LAUNCH_TIMEOUT_MS, env=sandbox.sandbox_env())
                self.isolation, self.isolation_note = "bwrap", ""
                return browser
            except Exception as error:  # a Chromium that does not start inside bubblewrap here
                if os.environ.get(sandbox.FORCE_ENV) == "bwrap":
                    raise
                why = f"Chromium did not start inside bubblewrap: {str(error).splitlines()[0][:300]}"
                logger.warning("%s; starting it unsandboxed", why)
        browser = await playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS),
                                                   timeout=LAUNCH_TIMEOUT_MS)
        self.isolation, self.isolation_note = "process", why
        return browser

    def _wrapper(self, chromium: str, ro_paths: list[str]) -> str:
        """The executable Playwright starts: a shell script that execs Chromium inside bubblewrap."""
        if self._wrapper_dir is None:
            self._wrapper_dir = tempfile.mkdtemp(prefix="roopik-chromium-")
            atexit.register(shutil.rmtree, self._wrapper_dir, True)
        argv = sandbox.bwrap_argv([chromium], ro_paths=ro_paths)
        path = os.path.join(self._wrapper_dir, "chromium")
        with open(path, "w", encoding="utf-8") as script:
            script.write("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in argv) + ' "$@"\n')
        os.chmod(path, 0o700)
        return path

    async def restart(self, reason: str) -> None:
        """Drop the browser (a renderer that does not let its context close); the next capture relaunches."""
        logger.warning("restarting the UI browser: %s", reason)
        browser, self._browser = self._browser, None
        if browser is not None:
            try:
                await asyncio.wait_for(browser.close(), CLOSE_TIMEOUT_S)
            except Exception:
                await self._stop_playwright()

    def restart_soon(self, reason: str) -> None:
        """From any thread: schedule a restart without waiting for it (a capture that never came back)."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.restart(reason), self._loop)

    async def _stop_playwright(self) -> None:
        """Stopping the driver kills the browsers it started, hung or not."""
        playwright, self._playwright = self._playwright, None
        if playwright is not None:
            try:
                await asyncio.wait_for(playwright.stop(), CLOSE_TIMEOUT_S)
            except Exception as error:
                logger.warning("the Playwright driver did not stop cleanly: %s", error)

    def close(self) -> None:
        """Close the browser and the driver (at exit, or in tests)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return

        async def shut() -> None:
            browser, self._browser = self._browser, None
            if browser is not None:
                try:
                    await asyncio.wait_for(browser.close(), CLOSE_TIMEOUT_S)
                except Exception:
                    pass
            await self._stop_playwright()

        try:
            asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=2 * CLOSE_TIMEOUT_S + 2)
        except Exception as error:
            logger.warning("the UI browser did not close cleanly: %s", error)


_HOST: BrowserHost | None = None
_HOST_LOCK = threading.Lock()


def host() -> BrowserHost:
    """The process-wide browser host (nothing starts until the first capture)."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            _HOST = BrowserHost()
            atexit.register(_HOST.close)
        return _HOST
