"""backend="roopik" through a real MCP session of our server, against a stand-in of Roopik's stdio bridge."""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import pytest

from conftest import call, call_error

pytestmark = pytest.mark.anyio

STANDIN = Path(__file__).with_name("roopik_standin.py")
COMPONENT = "export default function Card() {\n  return <div className=\"p-4\">Card</div>;\n}\n"
TOKEN = "roopik-session-token-9f8e"
AFTER_RELOAD = ["browser_get_errors", "browser_reload", "browser_get_errors", "browser_get_console_logs",
                "browser_screenshot"]


@pytest.fixture
def roopik(tmp_path, monkeypatch):
    """Point the server at the stand-in; returns (write the scenario, read the calls it got)."""
    scenario, log = tmp_path / "scenario.json", tmp_path / "calls.jsonl"
    monkeypatch.setenv("ROOPIK_MCP_BRIDGE", f"{sys.executable} {STANDIN}")
    monkeypatch.setenv("ROOPIK_MCP_TOKEN", TOKEN)
    monkeypatch.setenv("ROOPIK_MCP_WS_PORT", "9877")
    monkeypatch.setenv("ROOPIK_STANDIN_SCENARIO", str(scenario))
    monkeypatch.setenv("ROOPIK_STANDIN_LOG", str(log))
    monkeypatch.setenv("ROOPIK_MCP_BRIDGE_ENV", "ROOPIK_STANDIN_SCENARIO,ROOPIK_STANDIN_LOG")
    monkeypatch.setenv("ROOPIK_JUDGE_API_KEY", "sk-not-for-roopik")

    def setup(**fields) -> None:
        log.unlink(missing_ok=True)
        scenario.write_text(json.dumps({"token": TOKEN, **fields}))

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return setup, calls


def names(calls) -> list[str]:
    return [c["name"] for c in calls()]


async def test_a_clean_page_is_captured_in_the_reliable_order(client, store, roopik, home):
    setup, calls = roopik
    setup(errors_before_reload=[{"source": "console", "type": "error", "message": "from the first load"}],
          logs=[{"type": "log", "message": "hello", "location": {"url": "src/main.tsx", "lineNumber": 4}}])
    result = await client.call_tool("capture_feedback", {"task": "a card", "code": COMPONENT, "backend": "roopik",
                                                         "viewport": {"width": 800, "height": 600}})
    assert not result.is_error, result.content[0].text
    out = result.structured_content
    assert (out["status"], out["backend"], out["isolation"]) == ("passed", "roopik", "roopik (the IDE's browser)")
    assert out["errors"] == [], "errors of the first load are cleared by the reload"
    assert names(calls) == ["browser_set_viewport", "canvas_validate_components", *AFTER_RELOAD]
    assert calls()[0]["arguments"] == {"width": 800, "height": 600} and calls()[0]["ws_port"] == 9877
    assert "ROOPIK_JUDGE_API_KEY" not in calls()[0]["env_keys"], "the bridge gets only what it needs"
    [image] = [c for c in result.content if c.type == "image"]
    read = await client.read_resource(f"artifacts://{out['screenshot_ids'][0]}")
    assert base64.b64decode(read.contents[0].blob) == base64.b64decode(image.data)
    assert out["ui"]["console"] == [{"level": "log", "text": "hello", "location": "src/main.tsx:4"}]
    assert out["ui"]["blank"] is False
    assert TOKEN not in json.dumps([c.model_dump() for c in result.content]) + json.dumps(out)
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


async def test_errors_after_reload_in_a_vite_project(client, roopik, tmp_path):
    setup, calls = roopik
    setup(errors_after_reload=[
        {"source": "console", "type": "exception", "message": "TypeError: x is undefined",
         "location": {"url": "src/App.tsx", "lineNumber": 12, "columnNumber": 3}},
        {"source": "console", "type": "error", "message": "Warning: each child needs a key"},
        {"source": "network", "type": "error", "message": "404", "url": "/missing.png", "method": "GET"}])
    project = tmp_path / "app"
    project.mkdir()
    out = await call(client, "capture_feedback", task="an app", code=COMPONENT, backend="roopik", project_dir=str(project))
    assert out["status"] == "error"
    assert [(e["kind"], e["message"]) for e in out["errors"]] == [
        ("PageError", "TypeError: x is undefined"), ("ConsoleError", "Warning: each child needs a key"),
        ("NetworkError", "404")]
    assert (out["errors"][0]["file"], out["errors"][0]["line"], out["errors"][0]["column"]) == ("src/App.tsx", 12, 3)
    assert out["ui"]["failed_responses"] == ["GET /missing.png (404)"]
    assert out["ui"]["page_url"] == "http://localhost:5173/"
    assert names(calls) == ["project_start", "browser_open", "browser_set_viewport", *AFTER_RELOAD]
    assert calls()[0]["arguments"] == {"projectPath": str(project)}
    assert calls()[1]["arguments"] == {"url": "http://localhost:5173/"}


async def test_a_canvas_component_build_error(client, roopik):
    setup, calls = roopik
    setup(components=[{"id": "c1", "name": "Card", "buildState": "failed", "error": "Card.tsx:3:7: Expected '>'",
                       "buildErrors": [{"message": "Expected '>'", "file": "Card.tsx", "line": 3, "column": 7}]}])
    out = await call(client, "capture_feedback", task="a card", code=COMPONENT, backend="roopik")
    assert (out["status"], out["compiled"]) == ("build_error", False)
    assert out["errors"][0] == {"kind": "BuildError", "message": "Expected '>'", "line": 3, "column": 7, "file": "Card.tsx"}
    assert names(calls)[1:3] == ["canvas_validate_components", "component_get_info"]
    assert calls()[2]["arguments"] == {"componentId": "c1"}


async def test_page_url_with_roopik_envelopes_and_no_canvas_open(client, roopik):
    """Roopik's tool layer answers {success, data}; a failed canvas validation (no canvas open) is no error."""
    setup, calls = roopik
    setup(envelope=True, fail={"canvas_validate_components": "No active canvas"},
          errors_after_reload=[{"source": "console", "type": "error", "message": "boom"}])
    out = await call(client, "capture_feedback", task="a card", code=COMPONENT, backend="roopik",
                     page_url="http://localhost:3000/card")
    assert out["status"] == "passed" and [e["message"] for e in out["errors"]] == ["boom"]
    assert names(calls)[:3] == ["browser_open", "browser_set_viewport", "canvas_validate_components"]
    assert calls()[0]["arguments"] == {"url": "http://localhost:3000/card"}
    assert out["ui"]["page_url"] == "http://localhost:3000/card"


async def test_a_blank_page_is_an_error(client, roopik):
    setup, _ = roopik
    setup(blank=True)
    out = await call(client, "capture_feedback", task="a card", code=COMPONENT, backend="roopik")
    assert out["status"] == "error" and out["ui"]["blank"] is True
    assert [e["kind"] for e in out["errors"]] == ["BlankPage"]
    assert len(out["screenshot_ids"]) == 1


@pytest.mark.parametrize("where", ["start", "browser_reload"])
async def test_a_hanging_ide_times_out(client, roopik, where):
    setup, _ = roopik
    setup(hang=where)
    started = time.monotonic()
    out = await call(client, "capture_feedback", task="a card", code=COMPONENT, backend="roopik", timeout_s=3)
    assert out["status"] == "timeout" and out["errors"][0]["kind"] == "Timeout"
    assert time.monotonic() - started < 3 + 6


async def test_refusals_are_clear_store_nothing_and_never_show_the_token(client, store, roopik, monkeypatch, tmp_path):
    setup, _ = roopik
    refusals = []
    setup(token="another-session")  # the bridge exits, as the real one does on close code 4003
    refusals.append(await call_error(client, "capture_feedback", task="a", code=COMPONENT, backend="roopik"))
    assert "backend" in refusals[-1]
    setup(envelope=True, fail={"project_start": f"No node_modules in the project (token {TOKEN})"})
    refusals.append(await call_error(client, "capture_feedback", task="a", code=COMPONENT, backend="roopik",
                                     project_dir=str(tmp_path)))
    assert "project_start failed: No node_modules" in refusals[-1]
    setup(fail={"browser_reload": "No browser is open. Use browser_open first."})  # an isError result
    refusals.append(await call_error(client, "capture_feedback", task="a", code=COMPONENT, backend="roopik"))
    assert "browser_reload failed: No browser is open" in refusals[-1]
    monkeypatch.setenv("ROOPIK_MCP_BRIDGE", str(tmp_path / "no-such-roopik-mcp"))
    refusals.append(await call_error(client, "capture_feedback", task="a", code=COMPONENT, backend="roopik"))
    assert "ROOPIK_MCP_BRIDGE" in refusals[-1] and "no-such-roopik-mcp" in refusals[-1]
    monkeypatch.setenv("ROOPIK_MCP_BRIDGE", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    refusals.append(await call_error(client, "capture_feedback", task="a", code=COMPONENT, backend="roopik"))
    assert "ROOPIK_MCP_BRIDGE" in refusals[-1] and "roopik-mcp" in refusals[-1]
    assert all(TOKEN not in message for message in refusals)
    assert store.count("episodes") == 0, "a refused capture stores nothing"
