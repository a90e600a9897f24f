"""The server as a real subprocess: over stdio (every tool) and over streamable HTTP (auth, host checks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx2 as httpx
import pytest
from mcp import Client, StdioServerParameters

from conftest import call, call_error

pytestmark = pytest.mark.anyio

CODE = "def double(x):\n    return 2 * x\n"
TESTS = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(0) == 0\n"


def server_params(home) -> StdioServerParameters:
    env = {**os.environ, "ROOPIK_RL_HOME": str(home)}
    return StdioServerParameters(command=sys.executable, args=["-m", "roopik_rl_mcp", "serve"], env=env)


async def test_every_tool_over_stdio(home):
    async with Client(server_params(home), read_timeout_seconds=120) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"capture_feedback", "judge_output", "judge_pair", "judge_group", "judge_stats", "start_training",
                         "log_preference", "export_preferences", "start_dpo", "evaluate_checkpoint", "job_status",
                         "wait_for_job", "job_plot", "cancel_job", "list_jobs", "list_evaluations",
                         "compare_evaluations"}
        good = await call(client, "capture_feedback", task="double x", code=CODE, tests=TESTS, entry_point="double")
        bad = await call(client, "capture_feedback", task="double x", code=CODE.replace("2 *", "3 *"), tests=TESTS)
        assert good["passed"] and bad["status"] == "failed" and bad["tests_passed"] == 1
        for episode in (good, bad):
            judged = await call(client, "judge_output", episode_id=episode["episode_id"])
            assert 0 <= judged["reward"] <= 1
        pairs = await call(client, "log_preference", auto=True, min_margin=0.05)
        assert len(pairs["created"]) == 1
        export = await call(client, "export_preferences")
        assert export["n_pairs"] == 1 and os.path.isfile(export["path"])
        job = await call(client, "start_dpo", max_steps=2, batch_size=1, max_length=64)
        evaluation = await call(client, "evaluate_checkpoint", limit=1, max_new_tokens=4)
        assert evaluation["status"] == "queued"
        listed = await call(client, "list_jobs")
        assert {j["job_id"] for j in listed["jobs"]} == {job["job_id"], evaluation["job_id"]}
        status = await call(client, "job_status", job_id=job["job_id"])
        assert status["status"] in ("running", "succeeded")
        for job_id in (evaluation["job_id"], job["job_id"]):
            assert (await call(client, "cancel_job", job_id=job_id))["status"] in ("cancelled", "succeeded")
        assert "no job" in await call_error(client, "job_status", job_id="nope")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def http_server(home):
    port, token = free_port(), "test-token-123"
    env = {**os.environ, "ROOPIK_RL_HOME": str(home), "ROOPIK_RL_MCP_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", "roopik_rl_mcp", "serve", "--http", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url, token
    proc.terminate()
    proc.wait(10)


async def test_http_needs_the_bearer_token(http_server):
    url, token = http_server
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, json=body, headers=headers)).status_code == 401
        wrong = await http.post(url, json=body, headers={**headers, "authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        rebinding = await http.post(url, json=body, headers={**headers, "authorization": f"Bearer {token}",
                                                             "host": "evil.example:80"})
        assert rebinding.status_code in (403, 421)
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}) as authed:
        from mcp.client.streamable_http import streamable_http_client

        async with Client(streamable_http_client(url, http_client=authed)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "capture_feedback" in names
            result = await call(client, "capture_feedback", task="double", code=CODE, tests=TESTS)
            assert result["passed"]


async def test_http_says_how_to_authenticate_and_has_no_oauth(http_server):
    """OAuth-capable clients probe the discovery paths first; a 404 there sends them to the header."""
    url, token = http_server
    root = url.removesuffix("/mcp")
    async with httpx.AsyncClient() as http:
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp",
                     "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            assert (await http.get(root + path)).status_code == 404, path
        refused = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401
        assert "Authorization: Bearer <token>" in refused.json()["fix"] and "ROOPIK_RL_MCP_TOKEN" in refused.json()["fix"]
        huge = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": "' + b"a" * 21_000_000 + b'"}}'
        too_big = await http.post(url, content=huge, headers={
            "authorization": f"Bearer {token}", "content-type": "application/json",
            "accept": "application/json, text/event-stream"})
        assert too_big.status_code == 413
