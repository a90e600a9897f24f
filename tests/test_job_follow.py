"""Following a job from an MCP client: wait_for_job with progress notifications, job_plot as an image."""

from __future__ import annotations

import base64
import io
import time

import pytest
from PIL import Image

from conftest import call, call_error

pytestmark = pytest.mark.anyio

PAIRS = [("def add(a, b):\n", "    return a + b\n", "    return a - b\n"),
         ("def square(x):\n", "    return x * x\n", "    return x + x\n")]


async def test_wait_for_job_reports_progress_and_job_plot_draws_the_curves(client):
    for prompt, chosen, rejected in PAIRS:
        await call(client, "log_preference", prompt=prompt, chosen=chosen, rejected=rejected,
                   chosen_reward=0.9, rejected_reward=0.2)
    job = await call(client, "start_dpo", max_steps=6, batch_size=2, max_length=64)
    notes: list[tuple[float, float | None, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        notes.append((value, total, message))

    deadline = time.monotonic() + 300
    while True:
        started = time.monotonic()
        result = await client.call_tool("wait_for_job", {"job_id": job["job_id"], "timeout_s": 20},
                                        progress_callback=progress)
        assert not result.is_error, result.content[0].text
        assert time.monotonic() - started < 25, "wait_for_job returns by its timeout"
        if result.structured_content["status"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline
    assert result.structured_content["status"] == "succeeded", result.structured_content.get("log_tail")
    assert notes and notes[-1][0] == 6 and notes[-1][1] == 6 and "succeeded" in notes[-1][2]
    assert any("step" in (m or "") for _, _, m in notes)

    import json
    from pathlib import Path

    summary = json.loads((Path(result.structured_content["output_dir"]) / "training_summary.json").read_text())
    assert summary["config"]["learning_rate"] is None, "the tool sends no default of its own"
    assert summary["hyperparameters"]["learning_rate"] == 5e-4 and summary["hyperparameters"]["epochs"] == 1.0
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert tools["start_dpo"].input_schema["properties"]["learning_rate"].get("default") is None

    plotted = await client.call_tool("job_plot", {"job_id": job["job_id"]})
    assert not plotted.is_error, plotted.content[0].text
    assert "loss" in plotted.structured_content["metrics"]
    [image] = [c for c in plotted.content if c.type == "image"]
    with Image.open(io.BytesIO(base64.b64decode(image.data))) as png:
        assert png.format == "PNG" and png.width > 300
    assert "no job" in await call_error(client, "wait_for_job", job_id="nope")
    assert "timeout_s" in await call_error(client, "wait_for_job", job_id=job["job_id"], timeout_s=120)
