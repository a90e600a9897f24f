"""capture_feedback recording what the agent already captured: a screenshot, console and build errors."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image, ImageDraw

from conftest import call, call_error

pytestmark = pytest.mark.anyio

COMPONENT = 'export default function Login() {\n  return <form><button>Log in</button></form>;\n}\n'


def png(draw_text: bool = True, size: tuple[int, int] = (320, 200)) -> str:
    image = Image.new("RGB", size, "white")
    if draw_text:
        ImageDraw.Draw(image).rectangle((40, 40, 200, 80), fill="navy")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def test_a_screenshot_is_kept_returned_as_image_and_readable(client, store, home):
    shot = png()
    result = await client.call_tool("capture_feedback", {"task": "a login form", "code": COMPONENT,
                                                         "screenshot_png_base64": shot, "page_url": "http://x/"})
    assert not result.is_error, result.content[0].text
    out = result.structured_content
    assert (out["status"], out["backend"], out["language"], out["passed"]) == ("passed", "artifacts", "jsx", True)
    assert out["ui"]["blank"] is False and out["ui"]["page_url"] == "http://x/"
    [image] = [c for c in result.content if c.type == "image"]
    assert image.mime_type == "image/png" and image.data == shot
    [artifact_id] = out["screenshot_ids"]
    read = await client.read_resource(f"artifacts://{artifact_id}")
    assert base64.b64decode(read.contents[0].blob) == base64.b64decode(shot)
    again = await call(client, "capture_feedback", task="a login form", code=COMPONENT, screenshot_png_base64=shot)
    assert again["screenshot_ids"] == [artifact_id] and store.count("artifacts") == 1, "stored once by content"
    episode = json.loads((await client.read_resource(f"episodes://{out['episode_id']}")).contents[0].text)
    assert episode["screenshot_id"] == artifact_id and episode["backend"] == "artifacts"


async def test_errors_and_blank_screenshots_decide_the_status(client):
    built_badly = await call(client, "capture_feedback", task="t", code=COMPONENT,
                             build_errors=["Login.tsx:2:10: Expected '>'"])
    assert (built_badly["status"], built_badly["compiled"]) == ("build_error", False)
    noisy = await call(client, "capture_feedback", task="t", code=COMPONENT, screenshot_png_base64=png(),
                       console_errors=["Uncaught TypeError: x is undefined"])
    assert noisy["status"] == "error" and noisy["errors"][0]["kind"] == "ConsoleError"
    blank = await call(client, "capture_feedback", task="t", code=COMPONENT, screenshot_png_base64=png(False))
    assert blank["status"] == "error" and blank["ui"]["blank"] is True
    assert any(e["kind"] == "BlankPage" for e in blank["errors"])


async def test_bad_artifacts_are_clear_errors_and_store_nothing(client, store):
    not_png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10).decode()
    message = await call_error(client, "capture_feedback", task="t", code=COMPONENT, screenshot_png_base64=not_png)
    assert "screenshot_png_base64" in message and "does not decode" in message
    message = await call_error(client, "capture_feedback", task="t", code=COMPONENT, screenshot_png_base64="%%%")
    assert "screenshot_png_base64" in message and "base64" in message
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, "JPEG")
    message = await call_error(client, "capture_feedback", task="t", code=COMPONENT,
                               screenshot_png_base64=base64.b64encode(jpeg.getvalue()).decode())
    assert "expected a PNG" in message
    assert "give at least one of" in await call_error(client, "capture_feedback", task="t", code=COMPONENT,
                                                      backend="artifacts")
    assert "console_errors" in await call_error(client, "capture_feedback", task="t", code=COMPONENT,
                                                console_errors=["x"] * 201)
    assert store.count("episodes") == 0 and store.count("artifacts") == 0
    assert "no artifact" in str(await _read_error(client, "artifacts://" + "0" * 64))


async def _read_error(client, uri: str) -> Exception:
    from mcp.shared.exceptions import MCPError

    with pytest.raises(MCPError) as raised:
        await client.read_resource(uri)
    return raised.value


async def test_the_offline_judge_scores_ui_episodes_by_what_rendered(client):
    rendered = await call(client, "capture_feedback", task="a login form", code=COMPONENT, screenshot_png_base64=png())
    blank = await call(client, "capture_feedback", task="a login form", code=COMPONENT, screenshot_png_base64=png(False))
    broken = await call(client, "capture_feedback", task="a login form", code=COMPONENT, build_errors=["x.tsx:1:1: boom"])
    judged = {name: await call(client, "judge_output", episode_id=episode["episode_id"])
              for name, episode in (("rendered", rendered), ("blank", blank), ("broken", broken))}
    assert judged["rendered"]["scores"]["functionality"] == 8.0, judged["rendered"]["rationale"]
    assert judged["blank"]["scores"]["functionality"] == 1.0 and judged["blank"]["scores"]["prompt_match"] == 0.0
    assert judged["broken"]["scores"] == {"functionality": 0.0, "quality": 0.0, "prompt_match": 0.0}
    assert judged["rendered"]["reward"] > judged["blank"]["reward"] > judged["broken"]["reward"]
    assert judged["rendered"]["reward_breakdown"]["error_rate"] == pytest.approx(0.2), "a clean render has no errors"
