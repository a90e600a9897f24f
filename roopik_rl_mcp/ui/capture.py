"""capture_ui: build the code, render it in the sandboxed browser, and turn what happened into one result.

Status, first match wins: build_error (it did not compile), timeout (it did not settle, or the checks ran
past timeout_s), error (an uncaught error, an unhandled rejection, an error while rendering, or a blank
page), failed (a check failed), passed.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from html import escape
from collections.abc import Iterable, Sequence
from typing import Any

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.ui import blank as blank_detection
from roopik_rl_mcp.ui.checks import parse_ui_checks
from roopik_rl_mcp.ui.models import (
    LANGUAGES,
    BuildMessage,
    CheckResult,
    ConsoleMessage,
    PageError,
    Screenshot,
    SourceLocation,
    Status,
    UICaptureResult,
    UICheck,
    UITimings,
)
from roopik_rl_mcp.ui.sourcemap import SourceMap, StackMapper

MAX_CODE_CHARS = 1_000_000
MAX_SCREENSHOTS = 10
MIN_VIEWPORT, MAX_VIEWPORT = 200, 4096
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 1.0, 120.0
BROWSER_MARGIN_S = 20.0
"""Beyond timeout_s, the time a capture may take to start the browser and close its context."""
COMPONENT_URL = "/component.js"
SPARE_ENV = "ROOPIK_UI_SPARE_CONTEXTS"
"""How many browser contexts to keep ready between captures (default 1; one per expected parallel capture)."""
_DEVTOOLS_HINT = "Download the React DevTools"
"""React's development build says this on every page; it is not feedback."""


def status_of(result: UICaptureResult, timed_out: bool) -> Status:
    if not result.compiled:
        return "build_error"
    if timed_out:
        return "timeout"
    if result.page_errors or result.blank:
        return "error"
    if any(not check.passed for check in result.checks):
        return "failed"
    return "passed"


_FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,199}")
_TAILWIND_CDN = re.compile(r"cdn\.tailwindcss\.com|@tailwindcss/browser", re.IGNORECASE)
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)


def _with_tailwind(page: str, timings: UITimings) -> tuple[str, str]:
    """(page with a stylesheet link right after <head>, on the same line so error lines stay true; its CSS)."""
    from roopik_rl_mcp.ui.build import worker

    head = _HEAD.search(page)
    if head is None:
        return page, ""
    started = time.perf_counter()
    css = worker().tailwind(page, "html")
    timings.tailwind_ms = (time.perf_counter() - started) * 1000
    link = '<link rel="stylesheet" href="/roopik/tailwind.css">'
    return page[:head.end()] + link + page[head.end():], css


def _validate(code: str, language: str, viewport: Sequence[int], screenshots_at_ms: Iterable[int] | None,
              timeout_s: float, filename: str | None) -> tuple[tuple[int, int], list[int], str]:
    if language not in LANGUAGES:
        raise UserError("language", f"unknown language {language!r} for a UI capture; expected one of {', '.join(LANGUAGES)}")
    if not isinstance(code, str) or not code.strip():
        raise UserError("code", "empty: give the component's source (or the whole page for html)")
    if len(code) > MAX_CODE_CHARS:
        raise UserError("code", f"{len(code)} characters; at most {MAX_CODE_CHARS}")
    if len(viewport) != 2 or not all(isinstance(v, int) and MIN_VIEWPORT <= v <= MAX_VIEWPORT for v in viewport):
        raise UserError("viewport", f"expected [width, height], each {MIN_VIEWPORT}-{MAX_VIEWPORT} pixels")
    if not MIN_TIMEOUT_S <= timeout_s <= MAX_TIMEOUT_S:
        raise UserError("timeout_s", f"expected {MIN_TIMEOUT_S:.0f}-{MAX_TIMEOUT_S:.0f} seconds")
    at = [0] if screenshots_at_ms is None else list(screenshots_at_ms)
    if not at or len(at) > MAX_SCREENSHOTS:
        raise UserError("screenshots_at_ms", f"expected 1-{MAX_SCREENSHOTS} times")
    if not all(isinstance(ms, int) and 0 <= ms < timeout_s * 1000 for ms in at):
        raise UserError("screenshots_at_ms", "each time is whole milliseconds after the page settled, 0 to timeout_s")
    name = filename or ("index.html" if language == "html" else f"component.{language}")
    if not _FILENAME.fullmatch(name):
        raise UserError("filename", "expected a file name like components/Login/Login.tsx (letters, digits, . _ - /)")
    return (viewport[0], viewport[1]), at, name


def _component_html(title: str, groups: list[str]) -> bytes:
    scripts = "".join(f'<script src="/roopik/vendor/{g}.js"></script>' for g in groups)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
            f'<link rel="stylesheet" href="/component.css"></head><body><div id="root"></div>{scripts}'
            f'<script src="{COMPONENT_URL}"></script></body></html>').encode("utf-8")


def _location(mapper: StackMapper, stack: str, url: str, line: int, column: int, prefer: str) -> SourceLocation | None:
    frame = mapper.first_frame(stack, prefer=prefer)
    if frame is None and url and line:
        frame = mapper.position(url, line, column)
    if frame is None:
        return None
    return SourceLocation(file=frame[0], line=frame[1], column=frame[2])


def _console_location(mapper: StackMapper, stack: str, prefer: str) -> SourceLocation | None:
    """The caller of console.*: the first frame on the page's origin (the wrapper's own frame has none)."""
    frame = mapper.first_frame("\n".join(line for line in stack.splitlines() if "http://roopik.local" in line), prefer)
    return SourceLocation(file=frame[0], line=frame[1], column=frame[2]) if frame else None


@dataclass
class _Page:
    """What the browser serves for one capture, and how to read its stack traces back."""

    resources: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    maps: dict[str, SourceMap] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)


def _html_page(code: str, filename: str, result: UICaptureResult, timings: UITimings) -> _Page:
    from roopik_rl_mcp.ui import runtime
    from roopik_rl_mcp.ui.page import ORIGIN

    page = _Page(rename={f"{ORIGIN}/": filename})
    html = code
    if _TAILWIND_CDN.search(code) and runtime.runtime_problem() is None:
        html, css = _with_tailwind(code, timings)
        if css:
            page.resources["/roopik/tailwind.css"] = ("text/css; charset=utf-8", css.encode("utf-8"))
            result.notes.append("the page loads Tailwind from a CDN (blocked: no network); it got the CSS for "
                                "its classes from the local Tailwind instead")
    page.resources["/"] = ("text/html; charset=utf-8", html.encode("utf-8"))
    return page


def _component_page(code: str, language: str, filename: str, result: UICaptureResult,
                    timings: UITimings) -> _Page | None:
    """The built component's page, or None when it did not build (the errors are on `result`)."""
    from roopik_rl_mcp.ui import build, runtime
    from roopik_rl_mcp.ui.page import ORIGIN

    runtime.ensure_runtime()
    worker = build.worker()
    built = worker.build(code, language, filename)
    timings.build_ms, timings.tailwind_ms = built.esbuild_ms, built.tailwind_ms
    result.build_warnings = built.warnings
    if not built.ok:
        result.compiled = False
        result.build_errors = built.errors or [BuildMessage(text="the build failed without a message")]
        result.isolation = worker.isolation
        return None
    vendor = worker.vendor()
    page = _Page()
    for group in built.groups:
        page.resources[f"/roopik/vendor/{group}.js"] = ("text/javascript; charset=utf-8", vendor[group].encode("utf-8"))
    page.resources[COMPONENT_URL] = ("text/javascript; charset=utf-8", built.js.encode("utf-8"))
    page.resources["/component.css"] = ("text/css; charset=utf-8", built.css.encode("utf-8"))
    page.resources["/"] = ("text/html; charset=utf-8", _component_html(filename, built.groups))
    page.maps[f"{ORIGIN}{COMPONENT_URL}"] = SourceMap(built.map)
    page.rename = {name: _display_source(name) for name in json.loads(built.map).get("sources", [])}
    page.rename.update({f"{ORIGIN}/roopik/vendor/{g}.js": f"vendor/{g}.js" for g in built.groups})
    return page


def _render(spec, timeout_s: float):  # type: ignore[no-untyped-def]
    """The page's outcome from the browser thread; a browser that does not answer in time is replaced."""
    from roopik_rl_mcp.ui.browser import host
    from roopik_rl_mcp.ui.page import RenderOutcome, render

    browser_host = host()

    async def stuck() -> None:
        await browser_host.restart("a capture's context did not close (its page never settled)")

    async def work(browser):  # type: ignore[no-untyped-def]
        outcome = await render(browser, spec, timeout_s, pool=_pool(), on_stuck=stuck)
        if not outcome.context_closed:
            outcome.notes.append("the browser was restarted: the page's context did not close")
        return outcome

    try:
        return browser_host.call(work, timeout_s=timeout_s + BROWSER_MARGIN_S)
    except TimeoutError as error:
        browser_host.restart_soon(f"a capture did not come back: {error}")
        return RenderOutcome(timed_out=True, timeout_stage="the browser", notes=[str(error)])


def capture_ui(code: str, language: str, *, ui_checks: Sequence[UICheck | dict[str, Any]] | None = None,
               viewport: Sequence[int] = (1280, 800), screenshots_at_ms: Sequence[int] | None = None,
               timeout_s: float = 20.0, filename: str | None = None) -> UICaptureResult:
    """Build, render and capture one component (tsx/jsx/ts/js, default export) or page (html)."""
    from roopik_rl_mcp.ui import runtime
    from roopik_rl_mcp.ui.browser import host
    from roopik_rl_mcp.ui.page import PageSpec

    started = time.perf_counter()
    size, at_ms, filename = _validate(code, language, viewport, screenshots_at_ms, timeout_s, filename)
    checks = parse_ui_checks(ui_checks)
    runtime.ensure_chromium()
    timings = UITimings()
    result = UICaptureResult(status="passed", language=language, compiled=True)  # type: ignore[arg-type]
    if language == "html":
        page = _html_page(code, filename, result, timings)
    else:
        built = _component_page(code, language, filename, result, timings)
        if built is None:
            result.status, result.timings = "build_error", timings
            result.duration_ms = (time.perf_counter() - started) * 1000
            return result
        page = built

    spec = PageSpec(resources=page.resources, viewport=size, screenshots_at_ms=at_ms, checks=checks)
    outcome = _render(spec, max(MIN_TIMEOUT_S, timeout_s - (time.perf_counter() - started)))
    browser_host = host()
    result.isolation = browser_host.isolation
    if browser_host.isolation_note:
        result.notes.append(f"browser isolation {browser_host.isolation}: {browser_host.isolation_note}")
    _fill(result, outcome, StackMapper(page.maps, page.rename), filename)
    timings.render_ms, timings.checks_ms = outcome.render_ms, outcome.checks_ms
    result.timings = timings
    result.status = status_of(result, outcome.timed_out or _checks_timed_out(outcome.checks))
    if outcome.timed_out:
        result.notes.append(f"timed out during {outcome.timeout_stage} after {timeout_s:.0f} s")
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def capture_project(project_dir: str, *, ui_checks: Sequence[UICheck | dict[str, Any]] | None = None,
                    viewport: Sequence[int] = (1280, 800), screenshots_at_ms: Sequence[int] | None = None,
                    timeout_s: float = 20.0) -> UICaptureResult:
    """Build a Vite project with its own node_modules (sandboxed) and capture its page like a component."""
    from roopik_rl_mcp.ui import project, runtime
    from roopik_rl_mcp.ui.browser import host
    from roopik_rl_mcp.ui.page import ORIGIN, PageSpec

    started = time.perf_counter()
    size, at_ms, _ = _validate("<project>", "tsx", viewport, screenshots_at_ms, timeout_s, None)
    checks = parse_ui_checks(ui_checks)
    runtime.ensure_chromium()
    timings = UITimings()
    result = UICaptureResult(status="passed", language="tsx", compiled=True)
    resources, errors, isolation, timings.build_ms, timed_out = project.build_project(project_dir, timeout_s)
    if timed_out or resources is None:
        result.isolation, result.timings = isolation, timings
        result.compiled = not errors and not timed_out
        result.build_errors = errors if not timed_out else []
        result.status = "timeout" if timed_out else "build_error"
        if timed_out:
            result.notes.append(f"timed out during the vite build after {timeout_s:.0f} s")
        result.duration_ms = (time.perf_counter() - started) * 1000
        return result
    if "/" not in resources:
        raise UserError("project_dir", "the build produced no index.html (is it a Vite app?)")
    maps = {f"{ORIGIN}{path}": SourceMap(resources[f"{path}.map"][1].decode("utf-8", "replace"))
            for path in resources if path.endswith(".js") and f"{path}.map" in resources}
    spec = PageSpec(resources=resources, viewport=size, screenshots_at_ms=at_ms, checks=checks)
    outcome = _render(spec, max(MIN_TIMEOUT_S, timeout_s - (time.perf_counter() - started)))
    result.isolation = host().isolation
    _fill(result, outcome, _ProjectStackMapper(maps), "")
    timings.render_ms, timings.checks_ms = outcome.render_ms, outcome.checks_ms
    result.timings = timings
    result.status = status_of(result, outcome.timed_out or _checks_timed_out(outcome.checks))
    if outcome.timed_out:
        result.notes.append(f"timed out during {outcome.timeout_stage} after {timeout_s:.0f} s")
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


class _ProjectStackMapper(StackMapper):
    """In a Vite app an error's location is its first frame in the project's own files, not React's."""

    def first_frame(self, text: str, prefer: str | None = None) -> tuple[str, int, int] | None:
        for line in text.splitlines():
            frame = super().first_frame(line)
            if frame is not None and not frame[0].startswith("node_modules/"):
                return frame
        return super().first_frame(text)


_POOL = None


def _pool():  # type: ignore[no-untyped-def]
    """The spare-context pool (used on the browser's event loop thread only)."""
    global _POOL
    if _POOL is None:
        from roopik_rl_mcp.ui.page import ContextPool

        _POOL = ContextPool(size=int(os.environ.get(SPARE_ENV, "1")))
    return _POOL


def _display_source(source: str) -> str:
    """`roopik-component:Login.tsx` -> `Login.tsx`; a package file from node_modules/ on; the generated
    entry (a path in the runtime directory) by its name."""
    if source.startswith("roopik-component:"):
        return source.removeprefix("roopik-component:")
    if "node_modules/" in source:
        return "node_modules/" + source.split("node_modules/", 1)[1]
    return source if ":" in source else source.rsplit("/", 1)[-1]


def _checks_timed_out(checks: list[CheckResult]) -> bool:
    return any(c.message == "not run: the capture's timeout was reached" for c in checks)


def _fill(result: UICaptureResult, outcome, mapper: StackMapper, filename: str) -> None:  # type: ignore[no-untyped-def]
    """Copy the outcome into the result, with stacks and locations mapped to the component's lines."""
    if outcome.crash:
        result.page_errors.append(PageError(kind="error", message=f"the page failed: {outcome.crash}"))
    for event in outcome.events:
        data = event.data
        if event.kind == "console":
            if str(data.get("text", "")).startswith(_DEVTOOLS_HINT):
                continue
            result.console.append(ConsoleMessage(
                level=str(data.get("level", "log")), text=str(data.get("text", "")),
                location=_console_location(mapper, str(data.get("stack", "")), filename)))
        elif event.kind in ("error", "unhandledrejection", "render"):
            stack = mapper.stack(str(data.get("stack", "")))
            result.page_errors.append(PageError(
                kind=event.kind, message=str(data.get("message", "")), stack=stack,
                component_stack=mapper.stack(str(data.get("componentStack", ""))),
                location=_location(mapper, str(data.get("stack", "")), str(data.get("url", "")),
                                   int(data.get("line") or 0), int(data.get("column") or 0), filename)))
    if outcome.dropped_events:
        result.notes.append(f"{outcome.dropped_events} console messages (beyond 400) or errors (beyond 100) were dropped")
    result.failed_responses = outcome.failed_responses
    result.blocked_requests = outcome.blocked_requests
    result.aria_snapshot = outcome.aria_snapshot
    result.visible_text = outcome.visible_text
    result.screenshots = [Screenshot(at_ms=at, png=png, width=w, height=h) for at, png, w, h in outcome.screenshots]
    if result.screenshots:
        result.blank = blank_detection.is_blank(result.screenshots[-1].png)
    elif not outcome.timed_out:
        result.blank = True
    result.checks = outcome.checks
    result.tests_total = sum(1 for c in outcome.checks if c.is_test)
    result.tests_passed = sum(1 for c in outcome.checks if c.is_test and c.passed)
    result.notes.extend(outcome.notes)
