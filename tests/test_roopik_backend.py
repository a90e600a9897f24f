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
        scenario.write_text(json.dumps({"token": TOKEN, **fields}))

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return setup, calls


async def test_a_clean_page_is_captured_in_the_reliable_order(client, store, roopik, home):
    setup, calls = roopik
    setup(errors_before_reload=[{"source": "console", "type": "error", "message": "from the first load"}],
          logs=[{"type": "log", "message": "hello"}])
    result = await client.call_tool("capture_feedback", {"task": "a card", "code": COMPONENT, "backend": "roopik",
                                                         "viewport": {"width": 800, "height": 600}})
    assert not result.is_error, result.content[0].text
    out = result.structured_content
    assert (out["status"], out["backend"], out["isolation"]) == ("passed", "roopik", "roopik (the IDE's own browser)")
    assert [c["name"] for c in calls()] == ["browser_set_viewport", "canvas_validate_components", "browser_get_errors",
                                            "browser_reload",
                                            "browser_get_errors", "browser_get_console_logs", "browser_screenshot"]
    assert calls()[0]["arguments"] == {"width": 800, "height": 600} and calls()[0]["ws_port"] == 9877
    assert "ROOPIK_JUDGE_API_KEY" not in calls()[0]["env_keys"], "the bridge gets only what it needs"
    [image] = [c for c in result.content if c.type == "image"]
    read = await client.read_resource(f"artifacts://{out['screenshot_ids'][0]}")
    assert base64.b64decode(read.contents[0].blob) == base64.b64decode(image.data)
    assert out["ui"]["console"][0]["text"] == "hello"
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


async def test_errors_after_reload_a_vite_project_and_canvas_build_errors(client, roopik, tmp_path):
    setup, calls = roopik
    setup(errors_after_reload=[
        {"source": "console", "type": "exception", "message": "TypeError: x is undefined",
         "location": {"url": "src/App.tsx", "lineNumber": 12, "columnNumber": 3}},
        {"source": "network", "type": "error", "message": "404", "url": "/missing.png", "method": "GET"}])
    project = tmp_path / "app"
    project.mkdir()
    out = await call(client, "capture_feedback", task="an app", code=COMPONENT, backend="roopik", project_dir=str(project))
    assert out["status"] == "error"
    [page_error] = [e for e in out["errors"] if e["kind"] == "PageError"]
    assert (page_error["file"], page_error["line"]) == ("src/App.tsx", 12)
    assert out["ui"]["failed_responses"] == ["GET /missing.png (404)"]
    names = [c["name"] for c in calls()]
    assert names[:2] == ["project_start", "browser_navigate"] and calls()[0]["arguments"] == {"projectPath": str(project)}
    assert calls()[1]["arguments"] == {"url": "http://localhost:5173/"}

    (tmp_path / "calls.jsonl").unlink()
    setup(components=[{"id": "c1", "name": "Card", "buildState": "failed", "error": "Card.tsx:3:7: Expected '>'",
                       "buildErrors": [{"message": "Expected '>'", "file": "Card.tsx", "line": 3, "column": 7}]}])
    built = await call(client, "capture_feedback", task="a card", code=COMPONENT, backend="roopik")
    assert (built["status"], built["compiled"]) == ("build_error", False)
    assert built["errors"][0] == {"kind": "BuildError", "message": "Expected '>'", "line": 3, "column": 7, "file": "Card.tsx"}
    assert [c["name"] for c in calls()][1:3] == ["canvas_validate_components", "component_get_info"]


async def test_a_blank_page_a_hanging_ide_a_wrong_token_and_a_missing_bridge(client, store, roopik, monkeypatch):
    setup, _ = roopik
    setup(blank=True)
    blank = await call(client, "capture_feedback", task="a card", code=COMPONENT, backend="roopik")
    assert blank["status"] == "error" and blank["ui"]["blank"] is True
    setup(hang="browser_reload")
    started = time.monotonic()
    hung = await call(client, "capture_feedback", task="a card", code=COMPONENT, backend="roopik", timeout_s=3)
    assert hung["status"] == "timeout" and time.monotonic() - started < 10
    stored = store.count("episodes")
    setup(token="another-session")
    message = await call_error(client, "capture_feedback", task="a card", code=COMPONENT, backend="roopik")
    assert "backend" in message and TOKEN not in message
    monkeypatch.setenv("ROOPIK_MCP_BRIDGE", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    message = await call_error(client, "capture_feedback", task="a card", code=COMPONENT, backend="roopik")
    assert "ROOPIK_MCP_BRIDGE" in message
    assert store.count("episodes") == stored, "a refused capture stores nothing"
