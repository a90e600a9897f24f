"""capture_feedback for UI code through a real MCP session: the real build worker and the sandboxed Chromium.

The capture engine's own cases are in test_ui_capture.py; these check what a client sees: image content,
the stored episode and screenshot, the inferred language, the judge, and clear errors that store nothing.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from conftest import call, call_error
from roopik_rl_mcp.ui import runtime_problem
from roopik_rl_mcp.ui.runtime import chromium_path

_missing = runtime_problem() or (None if chromium_path() else "Chromium is not installed (apt-get install chromium)")
pytestmark = [pytest.mark.anyio,
              pytest.mark.skipif(bool(_missing), reason=f"UI capture needs its runtime: {_missing}")]

LOGIN = """import { useState } from "react";

export default function LoginForm() {
  const [user, setUser] = useState<string | null>(null);
  if (user) return <h1 className="p-8 text-2xl">Welcome, {user}</h1>;
  return (
    <form className="p-8 flex flex-col gap-2" onSubmit={(e) => { e.preventDefault(); setUser("ada"); }}>
      <label htmlFor="email">Email</label>
      <input id="email" type="email" className="border" />
      <button type="submit" className="rounded bg-blue-600 px-3 py-2 text-white">Login</button>
    </form>
  );
}
"""
STEPS = [{"action": "fill", "selector": "#email", "value": "ada@example.com"},
         {"action": "click", "selector": 'role=button[name="Login"]'},
         {"action": "expect_text", "selector": "h1", "value": "Welcome"}]


async def test_a_component_is_rendered_returned_as_an_image_stored_and_judged(client, store):
    result = await client.call_tool("capture_feedback", {"task": "Create a React login form", "code": LOGIN,
                                                         "ui_checks": STEPS})
    assert not result.is_error, result.content[0].text
    out = result.structured_content
    assert (out["status"], out["language"], out["language_inferred"], out["backend"]) == ("passed", "tsx", True, "browser")
    assert (out["tests_passed"], out["tests_total"], out["compiled"]) == (1, 1, True)
    assert out["ui"]["blank"] is False and "Email" in out["ui"]["visible_text"] and "Login" in out["ui"]["aria_snapshot"]
    [image] = [c for c in result.content if c.type == "image"]
    with Image.open(io.BytesIO(base64.b64decode(image.data))) as png:
        assert png.size == (1280, 800)
    episode = json.loads((await client.read_resource(f"episodes://{out['episode_id']}")).contents[0].text)
    assert episode["screenshot_id"] == out["screenshot_ids"][-1] and episode["test_outcomes"][0]["status"] == "passed"
    judged = await call(client, "judge_output", episode_id=out["episode_id"])
    assert judged["scores"]["functionality"] == 10.0 and judged["reward"] > 0.8


async def test_a_broken_component_and_a_failed_check_are_told_apart(client):
    syntax = await call(client, "capture_feedback", task="login", code=LOGIN.replace("</form>", "</frm>"))
    assert syntax["status"] == "build_error" and syntax["compiled"] is False
    [error] = [e for e in syntax["errors"] if e["kind"] == "BuildError"][:1]
    assert error["line"] and error["column"] and syntax["screenshot_ids"] == []
    throws = await call(client, "capture_feedback", task="login",
                        code="export default function X() { throw new Error('boom in render'); }\n", language="tsx")
    assert throws["status"] == "error" and any("boom in render" in e["message"] for e in throws["errors"])
    assert throws["ui"]["blank"] is True
    wrong = await call(client, "capture_feedback", task="login", code=LOGIN.replace('setUser("ada")', "undefined"),
                       ui_checks=STEPS)
    assert wrong["status"] == "failed" and (wrong["tests_passed"], wrong["tests_total"]) == (0, 1)
    assert any(e["kind"] == "CheckFailed" for e in wrong["errors"])


async def test_bad_ui_input_is_a_clear_error_and_stores_nothing(client, store):
    cases = [
        (dict(ui_checks=[{"action": "fill", "selector": "#email"}]), "ui_checks.0"),
        (dict(ui_checks=[{"action": "dance"}]), "ui_checks.0.action"),
        (dict(viewport={"width": 10, "height": 800}), "viewport.width"),
        (dict(screenshots_at_ms=[]), "screenshots_at_ms"),
        (dict(language="cobol"), "language"),
    ]
    for arguments, field in cases:
        message = await call_error(client, "capture_feedback", task="login", code=LOGIN, **arguments)
        assert field in message, (field, message)
    assert store.count("episodes") == 0 and store.count("artifacts") == 0


async def test_an_html_page_and_screenshots_over_time(client):
    page = ("<!doctype html><html><body><h1 id='t'>Hello</h1><script>"
            "setTimeout(() => document.getElementById('t').textContent = 'Later', 300)</script></body></html>")
    out = await call(client, "capture_feedback", task="a page that says hello", code=page, screenshots_at_ms=[0, 800])
    assert out["language"] == "html" and out["status"] == "passed" and len(out["screenshot_ids"]) == 2
    assert out["screenshot_ids"][0] != out["screenshot_ids"][1], "the page changed between the two shots"
