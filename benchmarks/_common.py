"""Small shared helpers for the benchmark scripts (timing, percentiles, a stdio server)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile

from mcp import StdioServerParameters


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def describe(values_ms: list[float]) -> str:
    return (f"p50 {percentile(values_ms, 50):7.1f} ms  p95 {percentile(values_ms, 95):7.1f} ms  "
            f"mean {statistics.mean(values_ms):7.1f} ms  (n={len(values_ms)})")


def stdio_server(home: str | None = None) -> StdioServerParameters:
    home = home or tempfile.mkdtemp(prefix="roopik-bench-")
    env = {**os.environ, "ROOPIK_RL_HOME": home}
    return StdioServerParameters(command=sys.executable, args=["-m", "roopik_rl_mcp", "serve"], env=env)
