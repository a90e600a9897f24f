"""capture_feedback latency for a small Python snippet over stdio, p50/p95.

Baseline in the same run: the same snippet and tests run by a bare `python3 -c` subprocess (no
sandbox, no harness, no MCP, no database), the floor of any process-per-run design.
"""

from __future__ import annotations

import subprocess
import sys
import time

import anyio
from mcp import Client

from _common import describe, stdio_server

RUNS = 30
CODE = "def add(a, b):\n    return a + b\n"
TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"


async def main() -> None:
    bare = []
    program = CODE + TESTS + "check(add)\n"
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", program], check=True)
        bare.append((time.perf_counter() - started) * 1000)
    ours, inside = [], []
    async with Client(stdio_server()) as client:
        for _ in range(3):  # warm-up
            await client.call_tool("capture_feedback", {"task": "add", "code": CODE, "tests": TESTS})
        for _ in range(RUNS):
            started = time.perf_counter()
            result = await client.call_tool("capture_feedback", {"task": "add", "code": CODE, "tests": TESTS})
            ours.append((time.perf_counter() - started) * 1000)
            assert result.structured_content["passed"], result
            inside.append(result.structured_content["duration_ms"])
            isolation = result.structured_content["isolation"]
    print(f"capture_feedback of a 2-line function with 2 asserts (isolation: {isolation})")
    print(f"  bare python3 subprocess (baseline)   {describe(bare)}")
    print(f"  capture_feedback over stdio          {describe(ours)}")
    print(f"  of which the test run (duration_ms) {describe(inside)}")
    p50 = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print(f"  ratio to baseline (p50): {p50(ours) / p50(bare):.2f}x")


if __name__ == "__main__":
    anyio.run(main)
