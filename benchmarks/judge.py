"""The LLM judge's own cost, against a loopback OpenAI-compatible server that answers at once.

Baseline in the same run: a bare `openai` client call to the same server with the same messages. The
difference is what the judge adds per call (prompt rendering, validation, the async client per call and
the database). Then judge_output calls per second through an MCP session, without and with the cache.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402

from _common import describe  # noqa: E402

CALLS = 60
VERDICT = json.dumps({"functionality": 8, "quality": 7, "prompt_match": 9, "rationale": "fine"})


async def main() -> None:
    os.environ["ROOPIK_RL_HOME"] = tempfile.mkdtemp(prefix="roopik-bench-")
    import openai

    from roopik_rl_mcp.judge import llm
    from roopik_rl_mcp.server import build_server

    with FakeOpenAI(lambda _: VERDICT) as fake:
        os.environ["ROOPIK_JUDGE_BASE_URL"] = fake.url
        async with Client(build_server()) as client:
            episodes = []
            for i in range(CALLS):
                result = await client.call_tool("capture_feedback", {
                    "task": f"increment by {i}", "code": f"def inc(x):\n    return x + {i}\n",
                    "tests": f"def check(candidate):\n    assert candidate(1) == {i + 1}\n"})
                episodes.append(result.structured_content["episode_id"])
            from roopik_rl_mcp.config import paths
            from roopik_rl_mcp.store import Store

            messages = llm.messages_for(Store(paths().db).get("episodes", episodes[0]))
            bare = openai.OpenAI(base_url=fake.url, api_key="x", max_retries=0)
            bare_ms = []
            for _ in range(CALLS):
                started = time.perf_counter()
                bare.chat.completions.create(model="m", messages=messages, temperature=0)
                bare_ms.append((time.perf_counter() - started) * 1000)

            judge_ms = []
            for episode_id in episodes:
                started = time.perf_counter()
                result = await client.call_tool("judge_output", {"episode_id": episode_id, "judge": "llm"})
                judge_ms.append((time.perf_counter() - started) * 1000)
                assert not result.is_error and result.structured_content["cached"] is False
            cached_ms = []
            for episode_id in episodes:
                started = time.perf_counter()
                result = await client.call_tool("judge_output", {"episode_id": episode_id, "judge": "llm"})
                cached_ms.append((time.perf_counter() - started) * 1000)
                assert result.structured_content["cached"] is True
    print(f"judge against a loopback endpoint, {CALLS} episodes (in-process MCP session)")
    print(f"  bare openai client call (baseline)  {describe(bare_ms)}")
    print(f"  judge_output, LLM, uncached         {describe(judge_ms)}")
    print(f"  judge_output, LLM, cached           {describe(cached_ms)}")
    print(f"  judgments/s: uncached {1000 * CALLS / sum(judge_ms):6.1f}, cached {1000 * CALLS / sum(cached_ms):6.1f}")


if __name__ == "__main__":
    anyio.run(main)
