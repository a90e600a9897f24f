"""Time from spawning the server to the answer of tools/list, over stdio.

Baselines in the same run: a bare `python -c pass`, and a minimal MCPServer with one tool (the SDK's
own floor), so the figure shows what this project adds on top of the interpreter and the SDK.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import time

import anyio
from mcp import Client, StdioServerParameters

from _common import describe, stdio_server

RUNS = 5
MINIMAL = textwrap.dedent("""
    from mcp.server import MCPServer
    server = MCPServer("minimal")
    @server.tool()
    def ping() -> str:
        return "pong"
    server.run("stdio")
""")


async def time_to_tools(params: StdioServerParameters) -> float:
    started = time.perf_counter()
    async with Client(params) as client:
        await client.list_tools()
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed


async def main() -> None:
    bare = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append((time.perf_counter() - started) * 1000)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(MINIMAL)
    minimal = [await time_to_tools(StdioServerParameters(command=sys.executable, args=[handle.name]))
               for _ in range(RUNS)]
    ours = [await time_to_tools(stdio_server()) for _ in range(RUNS)]
    print("server start -> tools/list answered (stdio, includes process start and MCP handshake)")
    print(f"  python -c pass (baseline)    {describe(bare)}")
    print(f"  minimal MCPServer (baseline) {describe(minimal)}")
    print(f"  roopik-rl-mcp                {describe(ours)}")
    floor = sorted(minimal)[len(minimal) // 2]
    print(f"  overhead over the minimal SDK server (p50): {sorted(ours)[len(ours) // 2] - floor:+.1f} ms")


if __name__ == "__main__":
    anyio.run(main)
