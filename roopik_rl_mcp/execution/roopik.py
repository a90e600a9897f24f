"""backend="roopik": capture what the Roopik IDE's own browser shows, as an MCP client of its server.

The IDE serves MCP over a local WebSocket that outside programs reach through its stdio bridge
(`roopik-mcp [--ws-port N]`, authenticated by the session's ROOPIK_MCP_TOKEN). Console and network capture
attach lazily on the first browser call, so errors during the first load would be missed: the reliable
order is browser_get_errors (attaches) -> browser_reload -> settle -> browser_get_errors, console logs and
browser_screenshot. A Vite project is started first with project_start and opened with browser_open (which
navigates an open browser and opens one otherwise; browser_navigate fails when none is open); canvas
components report their build and runtime errors through canvas_validate_components / component_get_info.

Configuration: ROOPIK_MCP_BRIDGE (the bridge command line; default `roopik-mcp` on PATH),
ROOPIK_MCP_WS_PORT, ROOPIK_MCP_TOKEN, and ROOPIK_MCP_BRIDGE_ENV (comma-separated names of further variables the
bridge should get; it gets only PATH, HOME, LANG, ROOPIK_MCP_WS_URL and the token otherwise). The token goes to
the bridge through its environment only (the bridge reads ROOPIK_MCP_TOKEN when no --token is given): never on
a command line (other users can read those), in the database, a log or a result.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import time
from typing import TYPE_CHECKING, Any

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.execution.base import ConsoleEntry, Execution, PageErrorEntry, Screenshot, UIObservation
from roopik_rl_mcp.sandbox.models import ExecError

if TYPE_CHECKING:
    from roopik_rl_mcp.schemas import CaptureFeedbackInput

BRIDGE_ENV, PORT_ENV, TOKEN_ENV = "ROOPIK_MCP_BRIDGE", "ROOPIK_MCP_WS_PORT", "ROOPIK_MCP_TOKEN"
EXTRA_ENV = "ROOPIK_MCP_BRIDGE_ENV"
SETTLE_S = 1.0
"""After browser_reload: long enough for a dev page to render, far below a tool timeout."""
PAGE_ERROR_TYPES = ("exception", "uncaught", "pageerror", "unhandledrejection")
ISOLATION = "roopik (the IDE's browser)"


def bridge_command() -> list[str]:
    """The bridge's argv, or a UserError saying how to point the server at it."""
    configured = os.environ.get(BRIDGE_ENV, "").strip()
    argv = shlex.split(configured) if configured else ([found] if (found := shutil.which("roopik-mcp")) else [])
    if not argv:
        raise UserError("backend", f"'roopik' needs the Roopik IDE's stdio bridge: set {BRIDGE_ENV} to its path "
                                   "(the `roopik-mcp` binary shipped with the IDE) or put it on PATH")
    if not shutil.which(argv[0]):
        raise UserError("backend", f"{BRIDGE_ENV} names {argv[0]!r}, which is not an executable here: point it at "
                                   "the `roopik-mcp` binary shipped with the Roopik IDE")
    if port := os.environ.get(PORT_ENV, "").strip():
        argv += ["--ws-port", port]
    return argv


def _bridge_env() -> dict[str, str]:
    """Only what the bridge needs: none of the server's other secrets (ROOPIK_MCP_BRIDGE_ENV names more)."""
    extra = filter(None, os.environ.get(EXTRA_ENV, "").split(","))
    names = ["PATH", "HOME", "LANG", "SYSTEMROOT", "ROOPIK_MCP_WS_URL", *extra]
    env = {key: os.environ[key] for key in names if key in os.environ}
    if token := os.environ.get(TOKEN_ENV):
        env[TOKEN_ENV] = token
    return env


def _scrub(text: str) -> str:
    token = os.environ.get(TOKEN_ENV)
    return text.replace(token, "<ROOPIK_MCP_TOKEN>") if token else text


class _Session:
    """Calls Roopik tools and reads their JSON text / image results.

    Roopik's tools answer `{success, data, error}` inside; a failure may come as an isError result or as
    `success: false` in the text, so both count as the tool failing."""

    def __init__(self, client: Any, tools: set[str]) -> None:
        self.client, self.tools = client, tools

    async def call(self, name: str, optional: bool = False, **arguments: Any) -> Any:
        """The tool's result (dict, or PNG bytes for an image); a UserError when it fails, None if `optional`."""
        if name not in self.tools:
            raise UserError("backend", f"the Roopik server has no tool {name!r} (it offers: {', '.join(sorted(self.tools))})")
        result = await self.client.call_tool(name, arguments)
        texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
        images = [c for c in result.content if getattr(c, "type", None) == "image"]
        value = result.structured_content if result.structured_content is not None else _json(texts)
        failed = result.is_error or (isinstance(value, dict) and value.get("success") is False)
        if failed:
            if optional:
                return None
            why = value.get("error") if isinstance(value, dict) and value.get("error") else " ".join(texts)
            raise UserError("backend", _scrub(f"Roopik's {name} failed: {str(why)[:500]}"))
        if images:
            return base64.b64decode(images[0].data)
        if isinstance(value, dict) and value.get("success") is True and isinstance(value.get("data"), dict):
            return value["data"]
        return value


def _json(texts: list[str]) -> Any:
    try:
        return json.loads(texts[0]) if texts else {}
    except ValueError:
        return {"text": texts[0]}


def _location(item: dict) -> dict:
    where = item.get("location")
    if isinstance(where, dict):
        return {"file": where.get("url") or where.get("file"), "line": where.get("lineNumber") or where.get("line"),
                "column": where.get("columnNumber") or where.get("column")}
    return {}


async def _capture(request: CaptureFeedbackInput, session: _Session) -> dict[str, Any]:
    seen: dict[str, Any] = {"build": [], "runtime": []}
    if request.project_dir:
        started = await session.call("project_start", projectPath=request.project_dir)
        if not started.get("url"):
            raise UserError("project_dir", f"Roopik started {request.project_dir} but gave no URL: "
                                           f"{str(started)[:300]}")
        seen["url"] = started["url"]
    elif request.page_url:
        seen["url"] = request.page_url
    if seen.get("url"):
        opener = "browser_open" if "browser_open" in session.tools else "browser_navigate"
        await session.call(opener, url=seen["url"])
    if "browser_set_viewport" in session.tools:
        await session.call("browser_set_viewport", width=request.viewport.width, height=request.viewport.height,
                           deviceScaleFactor=1, mobile=False)
    if not request.project_dir and request.language in ("tsx", "jsx") and "canvas_validate_components" in session.tools:
        validated = await session.call("canvas_validate_components", optional=True) or {}  # no canvas open
        for component in validated.get("components", []):
            if component.get("error") or component.get("buildState") == "failed" or component.get("runtimeError"):
                info = await session.call("component_get_info", componentId=component.get("id"))
                build = info.get("buildErrors") or ([component["error"]] if component.get("error") else [])
                seen["build"] += [b if isinstance(b, dict) else {"message": str(b)} for b in build]
                if runtime := info.get("runtimeError") or component.get("runtimeError"):
                    seen["runtime"].append(runtime)
    await session.call("browser_get_errors")  # attaches console and network capture
    await session.call("browser_reload")
    await _sleep(SETTLE_S)
    seen["errors"] = (await session.call("browser_get_errors")).get("errors", [])
    if "browser_get_console_logs" in session.tools:
        seen["logs"] = (await session.call("browser_get_console_logs")).get("logs", [])
    seen["png"] = await session.call("browser_screenshot")
    return seen


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


async def _run(request: CaptureFeedbackInput) -> dict[str, Any]:
    import anyio
    from mcp import Client, StdioServerParameters

    command = bridge_command()
    server = StdioServerParameters(command=command[0], args=command[1:], env=_bridge_env())
    with anyio.fail_after(request.timeout_s):
        async with Client(server, read_timeout_seconds=request.timeout_s) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            return await _capture(request, _Session(client, tools))


def _execution(request: CaptureFeedbackInput, seen: dict[str, Any], started: float) -> Execution:
    from roopik_rl_mcp.ui.blank import is_blank

    build = [ExecError(kind="BuildError", message=_scrub(str(b.get("message") or b.get("text") or b))[:2000],
                       file=b.get("file"), line=b.get("line"), column=b.get("column")) for b in seen["build"]]
    page_errors, console, failed, errors = [], [], [], list(build)
    for item in seen.get("errors", []):
        message = _scrub(str(item.get("message", "")))[:2000]
        kind = str(item.get("type", "")).lower()
        if item.get("source") == "network":
            failed.append(f"{item.get('method', 'GET')} {item.get('url', '')} ({message})")
            errors.append(ExecError(kind="NetworkError", message=message))
        elif any(word in kind for word in PAGE_ERROR_TYPES):
            page_errors.append(PageErrorEntry(message=message, **_location(item)))
            errors.append(ExecError(kind="PageError", message=message, **_location(item)))
        else:
            console.append(ConsoleEntry(level="error", text=message))
            errors.append(ExecError(kind="ConsoleError", message=message, **_location(item)))
    for runtime in seen["runtime"]:
        message = _scrub(str(runtime.get("message", runtime)))[:2000]
        page_errors.append(PageErrorEntry(message=message, stack=runtime.get("stack")))
        errors.append(ExecError(kind="RenderError", message=message))
    for log in seen.get("logs", []):
        if log.get("type") != "error":  # errors came from browser_get_errors already
            where = _location(log)
            location = ":".join(str(where[key]) for key in ("file", "line", "column") if where.get(key))
            console.append(ConsoleEntry(level=str(log.get("type", "log")), location=location or None,
                                        text=_scrub(str(log.get("message", "")))[:4000]))
    png = seen.get("png") if isinstance(seen.get("png"), bytes) else None
    blank = is_blank(png) if png else None
    if blank:
        errors.append(ExecError(kind="BlankPage", message="the IDE's page rendered (nearly) nothing"))
    status = "build_error" if build else "error" if (page_errors or blank) else "passed"
    return Execution(
        status=status, passed=status == "passed", compiled=not build, errors=errors, backend="roopik",
        isolation=ISOLATION, duration_ms=int((time.monotonic() - started) * 1000),
        ui=UIObservation(page_url=seen.get("url") or request.page_url,
                         viewport=(request.viewport.width, request.viewport.height), console=console,
                         page_errors=page_errors, failed_responses=failed, blank=blank),
        screenshots=[Screenshot(at_ms=0, png=png)] if png else [],
    )


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    return leaf


def run(request: CaptureFeedbackInput) -> Execution:
    import anyio

    bridge_command()  # a missing bridge is a clear error before anything starts
    started = time.monotonic()
    try:
        try:
            seen = anyio.run(_run, request)
        except BaseExceptionGroup as group:  # the client's task group wraps what went wrong
            raise _first_leaf(group) from None
    except TimeoutError:
        return Execution(status="timeout", passed=False, compiled=True, backend="roopik", isolation=ISOLATION,
                         duration_ms=int((time.monotonic() - started) * 1000),
                         errors=[ExecError(kind="Timeout", message=f"the Roopik IDE did not answer within "
                                                                   f"{request.timeout_s:.0f} s")])
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the bridge failed to start or went away: say so, store nothing
        raise UserError("backend", _scrub(f"could not talk to the Roopik IDE through {' '.join(bridge_command()[:1])}: "
                                          f"{exc.__class__.__name__}: {exc}"[:600])) from None
    return _execution(request, seen, started)
