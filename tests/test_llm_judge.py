"""judge_output with an LLM judge: a real HTTP server on 127.0.0.1 stands in for the model API."""

from __future__ import annotations


import pytest

from conftest import call, call_error
from fake_openai import FakeOpenAI

pytestmark = pytest.mark.anyio

CODE = "def inc(x):\n    return x + 1\n"
TESTS = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(0) == 2\n"


def verdict(_: dict) -> str:
    return 'Here is my verdict: {"functionality": 6, "quality": 8, "prompt_match": 9, "rationale": "one test fails"}'


async def test_llm_judge_scores_and_reward(client, store, monkeypatch):
    with FakeOpenAI(verdict) as fake:
        monkeypatch.setenv("ROOPIK_JUDGE_BASE_URL", fake.url)
        monkeypatch.setenv("ROOPIK_JUDGE_API_KEY", "judge-key")
        monkeypatch.setenv("ROOPIK_JUDGE_MODEL", "judge-model")
        episode = await call(client, "capture_feedback", task="increment x", code=CODE, tests=TESTS)
        judged = await call(client, "judge_output", episode_id=episode["episode_id"])
    assert judged["judge"] == "llm"
    assert judged["scores"] == {"functionality": 6.0, "quality": 8.0, "prompt_match": 9.0}
    assert judged["rationale"] == "one test fails"
    expected = 0.3 + 0.2 * 0.5 + 0.2 * 0.6 + 0.15 * 0.8 + 0.15 * 0.9
    assert judged["reward"] == pytest.approx(expected)
    [request] = fake.requests
    assert request["model"] == "judge-model" and fake.headers[0]["authorization"] == "Bearer judge-key"
    user = request["messages"][1]["content"][0]["text"]
    assert "increment x" in user and "tests passed: 1 / 2" in user and "AssertionError" in user
    stored = store.get("judgments", judged["judgment_id"])
    assert stored["judge"] == "llm" and stored["model"] == "judge-model"


async def test_screenshot_is_sent_to_a_multimodal_judge(client, store, monkeypatch, tmp_path):
    from PIL import Image

    screenshot = tmp_path / "shot.png"
    Image.new("RGB", (8, 8), "red").save(screenshot)
    with FakeOpenAI(verdict) as fake:
        monkeypatch.setenv("ROOPIK_JUDGE_BASE_URL", fake.url)
        episode = await call(client, "capture_feedback", task="increment x", code=CODE, tests=TESTS)
        store.update("episodes", episode["episode_id"], {"screenshot_path": str(screenshot)})
        await call(client, "judge_output", episode_id=episode["episode_id"], judge="llm", model="vision-model")
    parts = fake.requests[0]["messages"][1]["content"]
    assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert fake.requests[0]["model"] == "vision-model"


async def test_unusable_answer_falls_back_offline_on_auto_and_fails_on_llm(client, store, monkeypatch):
    with FakeOpenAI(lambda _: "I refuse to answer in JSON") as fake:
        monkeypatch.setenv("ROOPIK_JUDGE_BASE_URL", fake.url)
        episode = await call(client, "capture_feedback", task="increment x", code=CODE, tests=TESTS)
        auto = await call(client, "judge_output", episode_id=episode["episode_id"])
        assert auto["judge"] == "offline" and "LLM judge unavailable" in auto["rationale"]
        before = store.count("judgments")
        message = await call_error(client, "judge_output", episode_id=episode["episode_id"], judge="llm")
        assert message.startswith("Error executing tool judge_output: judge:") and "JSON" in message
        assert store.count("judgments") == before


async def test_unreachable_endpoint_is_reported(client, monkeypatch):
    monkeypatch.setenv("ROOPIK_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: nothing listens
    episode = await call(client, "capture_feedback", task="increment x", code=CODE, tests=TESTS)
    message = await call_error(client, "judge_output", episode_id=episode["episode_id"], judge="llm")
    assert "judge endpoint failed" in message
