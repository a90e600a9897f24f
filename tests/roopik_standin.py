"""A stand-in for the Roopik IDE's stdio bridge: a real MCP server with Roopik's browser/project/canvas tools.

Scripted by a JSON file (ROOPIK_STANDIN_SCENARIO) and recording every call it gets (name and arguments)
as JSON lines in ROOPIK_STANDIN_LOG, so tests can check what our server asked and in which order. Like
the real bridge, it refuses to start without the session's token (close code 4003 there).

Scenario keys: token; errors_before_reload / errors_after_reload, logs (browser_get_errors /
browser_get_console_logs items); blank (a white screenshot); components (canvas_validate_components);
hang ("start" or a tool name: sleep 60 s there); fail ({tool: message}: that tool fails); envelope (answer
the way Roopik's tool layer does, `{success, data}` / `{success: false, error}`, instead of bare data and
isError results).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time

from mcp.server import MCPServer
from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image, ImageDraw

parser = argparse.ArgumentParser()
parser.add_argument("--ws-port", type=int, default=9876)
parser.add_argument("--ws-url")
parser.add_argument("--token")
args = parser.parse_args()
scenario = json.loads(open(os.environ["ROOPIK_STANDIN_SCENARIO"]).read())
token = args.token or os.environ.get("ROOPIK_MCP_TOKEN")
if token != scenario.get("token"):
    print("roopik-mcp: authentication failed (4003 invalid token)", file=sys.stderr)
    raise SystemExit(3)
if scenario.get("hang") == "start":
    time.sleep(60)
state = {"reloaded": False}
server = MCPServer("roopik-standin")


def record(name: str, **arguments) -> None:
    state["last"] = name
    with open(os.environ["ROOPIK_STANDIN_LOG"], "a") as log:
        log.write(json.dumps({"name": name, "arguments": arguments, "ws_port": args.ws_port,
                              "env_keys": sorted(os.environ)}) + "\n")
    if scenario.get("hang") == name:
        time.sleep(60)


def text(value) -> CallToolResult:
    """`value` as JSON text, or the failure the scenario asks for (of the tool that was recorded last)."""
    name = state["last"]
    if name in scenario.get("fail", {}):
        if scenario.get("envelope"):
            return CallToolResult(content=[TextContent(type="text", text=json.dumps(
                {"success": False, "error": scenario["fail"][name]}))])
        return CallToolResult(content=[TextContent(type="text", text=scenario["fail"][name])], is_error=True)
    if scenario.get("envelope"):
        value = {"success": True, "data": value}
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(value))])


@server.tool()
def browser_get_errors(limit: int | None = None, tabId: str | None = None) -> CallToolResult:  # noqa: N803
    record("browser_get_errors")
    errors = scenario.get("errors_after_reload" if state["reloaded"] else "errors_before_reload", [])
    return text({"errors": errors, "count": len(errors)})


@server.tool()
def browser_get_console_logs(types: list[str] | None = None, since: float | None = None, limit: int | None = None,
                             clear: bool | None = None, tabId: str | None = None) -> CallToolResult:  # noqa: N803
    record("browser_get_console_logs")
    logs = scenario.get("logs", [])
    return text({"logs": logs, "count": len(logs)})


@server.tool()
def browser_reload(ignoreCache: bool | None = None, tabId: str | None = None) -> CallToolResult:  # noqa: N803
    record("browser_reload")
    state["reloaded"] = True
    return text({"success": True})


@server.tool()
def browser_navigate(url: str, tabId: str | None = None) -> CallToolResult:  # noqa: N803
    record("browser_navigate", url=url)
    return text({"success": True, "url": url})


@server.tool()
def browser_open(url: str | None = None, newTab: bool | None = None) -> CallToolResult:  # noqa: N803
    record("browser_open", url=url)
    return text({"success": True, "tabId": "t1"})


@server.tool()
def browser_set_viewport(width: int, height: int, deviceScaleFactor: float = 1, mobile: bool = False,  # noqa: N803
                         tabId: str | None = None) -> CallToolResult:
    record("browser_set_viewport", width=width, height=height)
    state["viewport"] = (width, height)
    return text({"success": True})


@server.tool()
def browser_screenshot(tabId: str | None = None) -> CallToolResult:  # noqa: N803
    record("browser_screenshot")
    image = Image.new("RGB", state.get("viewport", (640, 400)), "white")
    if not scenario.get("blank"):
        ImageDraw.Draw(image).rectangle((20, 20, 300, 120), fill="navy")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return CallToolResult(content=[ImageContent(type="image", data=base64.b64encode(buffer.getvalue()).decode(),
                                                mime_type="image/png")])


@server.tool()
def project_start(projectPath: str, port: int | None = None) -> CallToolResult:  # noqa: N803
    record("project_start", projectPath=projectPath)
    return text({"url": "http://localhost:5173/", "projectRoot": projectPath, "framework": "vite", "message": "ok"})


@server.tool()
def canvas_validate_components(canvasId: str | None = None) -> CallToolResult:  # noqa: N803
    record("canvas_validate_components")
    components = scenario.get("components", [])
    failed = sum(1 for c in components if c.get("error") or c.get("runtimeError"))
    return text({"summary": {"total": len(components), "success": len(components) - failed, "failed": failed,
                             "building": 0, "hasErrors": bool(failed)}, "components": components})


@server.tool()
def component_get_info(componentId: str) -> CallToolResult:  # noqa: N803
    record("component_get_info", componentId=componentId)
    component = next(c for c in scenario.get("components", []) if c["id"] == componentId)
    return text({**component, "buildErrors": component.get("buildErrors", [])})


server.run("stdio")
