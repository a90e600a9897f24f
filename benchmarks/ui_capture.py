"""UI capture latency: cold (a fresh process: build worker + browser start) and warm p50/p95 for a login form.

In the same run, as the floor and the parts: esbuild alone (inside the warm worker, and the esbuild CLI
bundling React from scratch as a process-per-build design would), a bare Playwright `page.set_content` +
screenshot on the same warm browser, and 4 captures in parallel against one.
Targets on the 2-core dev machine: warm p50 <= 0.5 s, cold <= 4 s, 4 parallel < 2x one.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import describe  # noqa: E402

from roopik_rl_mcp.ui import capture_ui, runtime_problem, shutdown  # noqa: E402
from roopik_rl_mcp.ui.runtime import chromium_path, runtime_dir  # noqa: E402

WARM_RUNS = 30
COLD_RUNS = 3
PARALLEL_ROUNDS = 5
PAUSE_S = 0.3
"""Between warm captures, as between an agent's tool calls (the spare context is made meanwhile)."""

LOGIN = """import { useState } from "react";
import { Mail, Lock } from "lucide-react";

export default function LoginForm() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [user, setUser] = useState<string | null>(null);
  if (user) return <main className="p-8"><h1 className="text-2xl">Welcome, {user}</h1></main>;
  return (
    <form className="mx-auto mt-16 flex max-w-sm flex-col gap-3 rounded-lg border p-6 shadow"
          onSubmit={(e) => { e.preventDefault(); if (email && password) setUser(email); }}>
      <h1 className="text-xl font-semibold">Sign in</h1>
      <label htmlFor="email" className="flex items-center gap-2"><Mail size={16} /> Email</label>
      <input id="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} className="rounded border px-2 py-1" />
      <label htmlFor="password" className="flex items-center gap-2"><Lock size={16} /> Password</label>
      <input id="password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} className="rounded border px-2 py-1" />
      <button type="submit" className="rounded bg-blue-600 px-3 py-2 text-white">Login</button>
    </form>
  );
}
"""
STATIC_LOGIN = ("<form><h1>Sign in</h1><label for=e>Email</label><input id=e><label for=p>Password</label>"
                "<input id=p type=password><button>Login</button></form>")
CHECKS = [{"action": "fill", "selector": "#email", "value": "ada@example.com"},
          {"action": "fill", "selector": "#password", "value": "pw"},
          {"action": "click", "selector": 'role=button[name="Login"]'},
          {"action": "expect_text", "selector": "h1", "value": "Welcome"}]

COLD_SCRIPT = """
import json, sys, time
started = time.perf_counter()
from roopik_rl_mcp.ui import capture_ui
result = capture_ui(sys.stdin.read(), "tsx")
print(json.dumps({"ms": (time.perf_counter() - started) * 1000, "status": result.status,
                  "isolation": result.isolation, "render_ms": result.timings.render_ms}))
"""


def cold() -> list[dict]:
    runs = []
    for _ in range(COLD_RUNS):
        done = subprocess.run([sys.executable, "-c", COLD_SCRIPT], input=LOGIN, capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parent.parent)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


def warm(pause_s: float, checks: list | None = None) -> list[float]:
    times = []
    for _ in range(WARM_RUNS):
        if pause_s:
            time.sleep(pause_s)
        started = time.perf_counter()
        result = capture_ui(LOGIN, "tsx", ui_checks=checks)
        times.append((time.perf_counter() - started) * 1000)
        if result.status != "passed":
            raise SystemExit(f"warm capture ended {result.status}: {result.model_dump(exclude={'screenshots'})}")
    return times


def esbuild_alone() -> tuple[list[float], list[float], float]:
    """(in-worker esbuild ms, worker round trip ms incl. Tailwind, one esbuild CLI bundle with React)."""
    from roopik_rl_mcp.ui.build import worker

    inside, trip = [], []
    for i in range(WARM_RUNS):
        started = time.perf_counter()
        out = worker().build(LOGIN.replace("Sign in", f"Sign in {i}"), "tsx", "LoginForm.tsx")
        trip.append((time.perf_counter() - started) * 1000)
        inside.append(out.esbuild_ms)
    root = runtime_dir()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "LoginForm.tsx").write_text(LOGIN)
        Path(tmp, "entry.tsx").write_text('import { createRoot } from "react-dom/client";\nimport C from "./LoginForm";\n'
                                          'createRoot(document.getElementById("root")!).render(<C />);\n')
        started = time.perf_counter()
        subprocess.run([str(root / "node_modules" / ".bin" / "esbuild"), "entry.tsx", "--bundle", "--jsx=automatic",
                        "--sourcemap", "--outfile=out.js", "--log-level=error", "--define:process.env.NODE_ENV=\"development\""],
                       cwd=tmp, check=True, env={"NODE_PATH": str(root / "node_modules"), "PATH": "/usr/bin:/bin"})
        cli_ms = (time.perf_counter() - started) * 1000
    return inside, trip, cli_ms


async def _bare_once(browser) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.set_content(STATIC_LOGIN)
    await page.screenshot(type="png")
    await context.close()
    return (time.perf_counter() - started) * 1000


async def _bare_four(browser) -> float:  # type: ignore[no-untyped-def]
    import asyncio

    started = time.perf_counter()
    await asyncio.gather(*[_bare_once(browser) for _ in range(4)])
    return (time.perf_counter() - started) * 1000


def bare_playwright() -> tuple[list[float], list[float]]:
    """set_content + screenshot in a fresh context on the same warm browser (the floor of any capture): one
    at a time, and 4 at once."""
    from roopik_rl_mcp.ui.browser import host

    one = []
    for _ in range(WARM_RUNS):
        time.sleep(PAUSE_S / 3)
        one.append(host().call(_bare_once, timeout_s=30))
    four = []
    for _ in range(PARALLEL_ROUNDS):
        time.sleep(PAUSE_S)
        four.append(host().call(_bare_four, timeout_s=60))
    return one, four


def parallel() -> tuple[list[float], list[float]]:
    one, four = [], []
    with ThreadPoolExecutor(4) as pool:
        for _ in range(PARALLEL_ROUNDS):
            time.sleep(PAUSE_S)
            started = time.perf_counter()
            capture_ui(LOGIN, "tsx")
            one.append((time.perf_counter() - started) * 1000)
            time.sleep(PAUSE_S)
            started = time.perf_counter()
            statuses = list(pool.map(lambda i: capture_ui(LOGIN.replace("Sign in", f"Sign in {i}"), "tsx").status,
                                     range(4)))
            four.append((time.perf_counter() - started) * 1000)
            if statuses != ["passed"] * 4:
                raise SystemExit(f"parallel captures ended {statuses}")
    return one, four


def main() -> None:
    problem = runtime_problem() or (None if chromium_path() else "Chromium is not installed")
    if problem:
        raise SystemExit(f"ui_capture benchmark skipped: {problem}")
    cold_runs = cold()
    cold_ms = [r["ms"] for r in cold_runs]
    print(f"UI capture, login form (tsx, Tailwind, lucide-react), isolation {cold_runs[0]['isolation']}")
    print(f"  cold (fresh process: import, build worker, browser start, capture): "
          f"{', '.join(f'{ms:.0f}' for ms in cold_ms)} ms  (median {statistics.median(cold_ms):.0f} ms; target <= 4000)")
    capture_ui(LOGIN, "tsx")  # warm-up in this process
    paused = warm(PAUSE_S)
    print(f"  warm, {PAUSE_S:.1f} s between calls: {describe(paused)}  (target p50 <= 500)")
    back_to_back = warm(0.0)
    print(f"  warm, back to back:         {describe(back_to_back)}")
    with_checks = warm(PAUSE_S, CHECKS)
    print(f"  warm + 4 ui_checks (login): {describe(with_checks)}")
    inside, trip, cli_ms = esbuild_alone()
    print(f"  esbuild alone, warm worker: {describe(inside)}")
    print(f"  build round trip (esbuild + Tailwind + JSON): {describe(trip)}")
    print(f"  esbuild CLI, one bundle with React (process per build): {cli_ms:.0f} ms")
    bare, bare_four = bare_playwright()
    print(f"  baseline: bare Playwright new context + set_content + screenshot: {describe(bare)}")
    print(f"  baseline, 4 at once: median {statistics.median(bare_four):.0f} ms "
          f"= {statistics.median(bare_four) / statistics.median(bare):.2f}x one")
    one, four = parallel()
    ratio = statistics.median(four) / statistics.median(one)
    print(f"  one capture: median {statistics.median(one):.0f} ms; 4 in parallel: median {statistics.median(four):.0f} ms "
          f"= {ratio:.2f}x one (target < 2x)")
    shutdown()


if __name__ == "__main__":
    main()
