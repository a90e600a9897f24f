"""`roopik-rl-mcp doctor`, run as a user runs it: a real process on a fresh data directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from roopik_rl_mcp.sandbox import isolation_level


def test_doctor_reports_the_sandbox_libraries_and_data_dir(home):
    done = subprocess.run([sys.executable, "-m", "roopik_rl_mcp", "doctor"], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"sandbox     isolation={isolation_level()}:" in out
    warm = re.search(r"single run: passed in (\d+) ms through the warm sandbox \((\d+) ms for the first", out)
    assert warm, out
    assert re.search(r"batch of 24: 24 passed, [\d.]+ ms per test", out), out
    for library in ("mcp", "torch", "transformers", "peft", "trl", "sqlite-utils"):
        line = next(line for line in out.splitlines() if line.startswith(library + " "))
        assert "MISSING" not in line, line
    assert f"data        {home}" in out and "schema v2, 0 episodes, 0 pairs, 0 jobs" in out
    assert "judge       offline" in out
    assert out.rstrip().endswith("status      ok")
