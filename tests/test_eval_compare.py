"""Stored evaluations listed and compared later (compare_evaluations), and charts as MCP image content."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from conftest import call, call_error
from fake_openai import FakeOpenAI
from roopik_rl_mcp.evaluation.tasks import load_tasks
from test_eval_models import wait_done


def _png_of(result) -> Image.Image:
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    picture = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
    assert picture.format == "PNG" and picture.width >= 400
    assert len(picture.convert("RGB").getcolors(maxcolors=1 << 16) or range(2)) > 10, "bars and text, not blank"
    return picture


@pytest.fixture
def coders(monkeypatch):
    """'strong' solves every task, 'half' only the even-numbered ones, 'weak' none."""
    tasks = {t.prompt.rstrip(): t for t in load_tasks(limit=4)}

    def coder(request: dict) -> str:
        prompt = request["messages"][0]["content"].split("```python\n", 1)[1].rsplit("```", 1)[0].rstrip()
        task = tasks[prompt]
        solves = {"strong": True, "weak": False, "half": int(task.task_id.rsplit("/", 1)[1]) % 2 == 0}
        if not solves[request["model"]]:
            return "I am not sure."
        return f"```python\n{task.prompt}{task.canonical_solution}```"

    with FakeOpenAI(coder) as fake:
        monkeypatch.setenv("ROOPIK_GENERATOR_BASE_URL", fake.url)
        yield fake


async def _evaluate(client, models: list[str], limit: int) -> dict:
    started = await call(client, "evaluate_checkpoint", models=models, limit=limit)
    done = await wait_done(client, started["job_id"])
    assert done["status"] == "succeeded", done.get("log_tail")
    return done


@pytest.mark.anyio
async def test_two_stored_evaluations_compared_on_their_shared_tasks(client, coders):
    first = await _evaluate(client, ["openai:weak", "openai:strong"], limit=3)   # HumanEval/0-2
    second = await _evaluate(client, ["openai:half", "openai:strong"], limit=4)  # HumanEval/0-3

    listed = (await call(client, "list_evaluations"))["evaluations"]
    assert [e["job_id"] for e in listed] == [second["job_id"], first["job_id"]], "newest first"
    assert listed[1]["models"] == {"weak": 0.0, "strong": 1.0} and listed[0]["n_tasks"] == 4
    first_id, second_id = listed[1]["evaluation_id"], listed[0]["evaluation_id"]

    # One by evaluation id, one by job id: both name a stored evaluation.
    raw = await client.call_tool("compare_evaluations", {"ids": [first_id, second["job_id"]]})
    assert not raw.is_error, raw.content[0].text
    out = raw.structured_content
    _png_of(raw)
    assert out["evaluation_ids"] == [first_id, second_id] and out["n_common_tasks"] == 3
    labels = [m["label"] for m in out["models"]]
    assert labels == ["weak", f"strong@{first_id}", "half", f"strong@{second_id}"], "clashing labels are suffixed"
    by_label = {m["label"]: m for m in out["models"]}
    assert by_label["half"]["pass_at_k"]["pass@1"] == pytest.approx(2 / 3), "HumanEval/3 is left out: 0 and 2 of 0-2"
    assert by_label[f"strong@{second_id}"]["n_tasks"] == 3 and by_label["weak"]["tasks_solved"] == 0
    half = next(c for c in out["comparisons"] if c["b"] == "half")
    assert half["a"] == "weak" and half["tasks_gained"] == ["HumanEval/0", "HumanEval/2"] and half["tasks_lost"] == []
    assert half["test"].startswith("exact McNemar") and half["p_value"] == 0.5
    assert any(f"{second_id}: 1 of its 4 tasks" in w for w in out["warnings"])
    assert "| half |" in out["table_markdown"]

    # An evaluation job's picture is its comparison chart.
    plot = await client.call_tool("job_plot", {"job_id": first["job_id"]})
    assert not plot.is_error, plot.content[0].text
    _png_of(plot)


@pytest.mark.anyio
async def test_compare_evaluations_refuses_what_it_cannot_compare(client, store):
    assert "ids: no stored evaluation with id 'nope'" in await call_error(client, "compare_evaluations", ids=["nope"])
    assert "ids" in await call_error(client, "compare_evaluations", ids=[])
    assert (await call(client, "list_evaluations"))["evaluations"] == []
    store.insert("evaluations", {"id": "ev_old", "job_id": "job_x", "benchmark": "humaneval",
                                 "result": {"pass_at_k": {"pass@1": 0.5}}})  # a pre-results-model row
    assert "older version" in await call_error(client, "compare_evaluations", ids=["ev_old"])
    listed = (await call(client, "list_evaluations"))["evaluations"]
    assert [e["evaluation_id"] for e in listed] == ["ev_old"], "old rows are still listed"
