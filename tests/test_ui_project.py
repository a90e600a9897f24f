"""capture_feedback(project_dir=...) on a real Vite project through an MCP session: vite build, sandboxed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import call, call_error
from roopik_rl_mcp.ui import runtime_dir, runtime_problem
from roopik_rl_mcp.ui.runtime import chromium_path

_missing = runtime_problem() or (None if chromium_path() else "Chromium is not installed (apt-get install chromium)")
if not _missing and not (runtime_dir() / "node_modules" / "vite").is_dir():
    _missing = "vite is not in the UI runtime (npm ci in roopik_rl_mcp/ui/runtime)"
pytestmark = [pytest.mark.anyio, pytest.mark.skipif(bool(_missing), reason=f"Vite capture needs: {_missing}")]

MAIN = """import { createRoot } from "react-dom/client";
import { useState } from "react";

function App() {
  const [count, setCount] = useState(0);
  return <main><h1>Counter app</h1><button onClick={() => setCount(count + 1)}>Clicked {count}</button></main>;
}

createRoot(document.getElementById("root")!).render(<App />);
"""


def vite_project(root: Path, main: str = MAIN, with_modules: bool = True) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    (root / "index.html").write_text('<!doctype html><html><head><meta charset="utf-8"><title>App</title></head>'
                                     '<body><div id="root"></div><script type="module" src="/src/main.tsx"></script>'
                                     "</body></html>")
    (root / "vite.config.js").write_text('import { defineConfig } from "vite";\nimport react from "@vitejs/plugin-react";\n'
                                         "export default defineConfig({ plugins: [react()] });\n")
    (root / "src" / "main.tsx").write_text(main)
    if with_modules:
        (root / "node_modules").symlink_to(runtime_dir() / "node_modules")
    for path in [root, *root.rglob("*")]:  # the sandboxed build (uid 65534) reads it
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    root.parent.chmod(0o755)
    return root


async def test_a_vite_app_is_built_rendered_and_checked(client, tmp_path):
    project = vite_project(tmp_path / "app")
    before = sorted(p.name for p in project.iterdir())
    out = await call(client, "capture_feedback", task="a counter app", code=MAIN, project_dir=str(project), ui_checks=[
        {"action": "click", "selector": "text=Clicked 0"},
        {"action": "expect_text", "selector": "button", "value": "Clicked 1"}])
    assert out["status"] == "passed" and (out["tests_passed"], out["tests_total"]) == (1, 1), out["errors"]
    assert "Counter app" in out["ui"]["visible_text"] and out["screenshot_ids"]
    assert sorted(p.name for p in project.iterdir()) == before, "the project is read-only: nothing written in it"


async def test_a_syntax_error_in_the_app_is_a_build_error_with_its_location(client, tmp_path):
    project = vite_project(tmp_path / "app", main=MAIN.replace("createRoot(document", "createRoot(docu ment"))
    out = await call(client, "capture_feedback", task="a counter app", code=MAIN, project_dir=str(project))
    assert (out["status"], out["compiled"]) == ("build_error", False)
    [error] = out["errors"]
    assert (error["file"], error["line"], error["column"]) == ("src/main.tsx", 9, 17), error


async def test_an_error_thrown_in_the_app_points_at_the_projects_own_line(client, tmp_path):
    project = vite_project(tmp_path / "app", main=MAIN.replace(
        "  const [count", "  if (Date.now() > 0) throw new Error('boom');\n  const [count"))
    out = await call(client, "capture_feedback", task="a counter app", code=MAIN, project_dir=str(project))
    assert out["status"] == "error" and out["ui"]["blank"]
    [error] = [e for e in out["ui"]["page_errors"] if "boom" in e["message"]]
    assert (error["file"], error["line"]) == ("src/main.tsx", 5), error


async def test_a_project_without_node_modules_or_package_json_is_refused(client, store, home, tmp_path):
    bare = vite_project(tmp_path / "bare", with_modules=False)
    assert "npm install" in await call_error(client, "capture_feedback", task="t", code=MAIN, project_dir=str(bare))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "package.json" in await call_error(client, "capture_feedback", task="t", code=MAIN, project_dir=str(empty))
    assert "not a directory" in await call_error(client, "capture_feedback", task="t", code=MAIN,
                                                 project_dir=str(tmp_path / "missing"))
    inside = vite_project(home / "app")
    assert "data directory" in await call_error(client, "capture_feedback", task="t", code=MAIN, project_dir=str(inside))
    assert store.count("episodes") == 0


async def test_a_build_that_hangs_is_stopped_at_the_timeout(client, tmp_path):
    import time

    project = vite_project(tmp_path / "app")
    (project / "vite.config.js").write_text('import { defineConfig } from "vite";\n'
                                            "export default defineConfig({ plugins: [{ name: 'hang', buildStart() "
                                            "{ while (true) {} } }] });\n")
    started = time.monotonic()
    out = await call(client, "capture_feedback", task="t", code=MAIN, project_dir=str(project), timeout_s=4)
    assert out["status"] == "timeout" and time.monotonic() - started < 10
