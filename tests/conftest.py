"""Shared fixtures: every test gets its own data directory and a real server on it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client

from roopik_rl_mcp.server import build_server
from roopik_rl_mcp.store import Store

REPO_ROOT = Path(__file__).resolve().parent.parent


def needs_level(*levels: str, why: str = "") -> pytest.MarkDecorator:
    """Skip unless the sandbox runs at one of `levels` here, saying which level the test needs and which
    this machine gives (`make test-levels` runs the suite at each; ROOPIK_SANDBOX_ISOLATION forces one)."""
    from roopik_rl_mcp.sandbox import isolation, isolation_level

    level = isolation_level()
    given = f"{isolation.FORCE_ENV}={level} forces {level}" if os.environ.get(isolation.FORCE_ENV) else \
        f"this machine gives {level}"
    reason = f"needs the {' or '.join(levels)} isolation level{f' ({why})' if why else ''}; {given}"
    return pytest.mark.skipif(level not in levels, reason=reason)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async test modules set `pytestmark = pytest.mark.anyio`: setup and teardown share one task."""
    return "asyncio"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """One tiny model for the whole session (built by the trainers' helper in a subprocess on first use)."""
    return tmp_path_factory.mktemp("models") / "tiny-llama"


@pytest.fixture
def home(tmp_path, monkeypatch, tiny_model_dir) -> Path:
    monkeypatch.setenv("ROOPIK_RL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for key in ("ROOPIK_JUDGE_BASE_URL", "ROOPIK_JUDGE_MODEL", "ROOPIK_JUDGE_API_KEY", "ROOPIK_GENERATOR_BASE_URL",
                "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ROOPIK_RL_TINY_MODEL", str(tiny_model_dir))  # one build shared by all data dirs
    return tmp_path / "home"


@pytest.fixture
def store(home) -> Store:
    return Store(home / "episodes.db")


@pytest.fixture
async def client(store) -> AsyncIterator[Client]:
    async with Client(build_server(store)) as session:
        yield session


async def call(client: Client, tool: str, **arguments) -> dict:
    """Call a tool that must succeed; return its structured output."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments) -> str:
    """Call a tool that must fail; return the error text."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have failed: {result.structured_content}"
    return result.content[0].text
