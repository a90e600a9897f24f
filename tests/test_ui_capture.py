"""UI capture with the real thing: the Node build worker, Debian's Chromium inside bubblewrap, real sockets.

Skipped (with the reason) only where Chromium or the UI runtime's node_modules are not installed.
"""

from __future__ import annotations

import importlib.util
import io
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.ui import capture_ui, parse_ui_checks, runtime_problem
from roopik_rl_mcp.ui.runtime import chromium_path

_missing = runtime_problem() or (None if chromium_path() else "Chromium is not installed (apt-get install chromium)")
if importlib.util.find_spec("playwright") is None:
    _missing = _missing or "the playwright package is not installed (pip install playwright)"
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"UI capture needs its runtime: {_missing}")

REPO = Path(__file__).resolve().parent.parent
BWRAP = subprocess.run(["sh", "-c", "command -v bwrap"], capture_output=True).returncode == 0

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

LOGIN_STEPS = [
    {"action": "fill", "selector": "#email", "value": "ada@example.com"},
    {"action": "fill", "selector": "label:has-text('Password') + input", "value": "hunter2"},
    {"action": "click", "selector": 'role=button[name="Login"]'},
    {"action": "expect_text", "selector": "h1", "value": "Welcome"},
    {"action": "expect_text", "selector": "h1", "value": "ada@example.com"},
    {"action": "expect_no_errors"},
]


def png_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return image.size


def test_component_renders_with_a_screenshot() -> None:
    result = capture_ui(LOGIN, "tsx", filename="LoginForm.tsx")
    assert result.status == "passed", result.model_dump(exclude={"screenshots"})
    assert result.compiled and not result.blank and not result.page_errors
    assert [m for m in result.console if m.level == "error"] == []
    assert len(result.screenshots) == 1 and result.screenshots[0].at_ms == 0
    assert png_size(result.screenshots[0].png) == (1280, 800)
    assert 'button "Login"' in result.aria_snapshot and 'textbox "Email"' in result.aria_snapshot
    assert "Sign in" in result.visible_text
    assert result.isolation == ("bwrap" if BWRAP else "process")
    assert result.timings.build_ms > 0 and result.timings.render_ms > 0


def test_syntax_error_is_a_build_error_with_line_and_column() -> None:
    code = "export default function Broken() {\n  return <div className=\"a\">{1 +}</div>;\n}\n"
    result = capture_ui(code, "tsx", filename="Broken.tsx")
    assert result.status == "build_error" and not result.compiled
    error = result.build_errors[0]
    assert (error.file, error.line, error.column) == ("Broken.tsx", 2, 33)
    assert error.text == 'Unexpected "}"'
    assert result.screenshots == []


def test_unknown_import_names_the_package() -> None:
    code = 'import leftPad from "left-pad";\n\nexport default function A() {\n  return <p>{leftPad("x", 3)}</p>;\n}\n'
    result = capture_ui(code, "jsx")
    assert result.status == "build_error"
    error = result.build_errors[0]
    assert error.line == 1 and error.text.startswith("package 'left-pad' is not available; available: ")
    assert "react" in error.text and "lucide-react" in error.text


@pytest.mark.parametrize("spec,why", [("./Button", "refused"), ("node:fs", "node builtin"),
                                      ("https://esm.sh/react", "no network"), ("react/../../../etc/passwd", "'..'")])
def test_imports_outside_the_runtime_are_refused(spec: str, why: str) -> None:
    code = f'import * as m from "{spec}";\nexport default function A() {{ return <p>{{String(Object.keys(m))}}</p>; }}\n'
    result = capture_ui(code, "tsx")
    assert result.status == "build_error"
    assert why in result.build_errors[0].text and result.build_errors[0].line == 1


def test_throw_during_render_is_an_error_on_a_blank_page() -> None:
    code = ('import { useState } from "react";\n\nexport default function Boom() {\n  const [n] = useState(1);\n'
            '  if (n) throw new Error("render exploded");\n  return <p>never</p>;\n}\n')
    result = capture_ui(code, "tsx", filename="Boom.tsx")
    assert result.status == "error" and result.blank
    error = next(e for e in result.page_errors if e.kind == "render")
    assert error.message == "render exploded"
    assert error.location is not None and (error.location.file, error.location.line) == ("Boom.tsx", 5)
    assert "Boom.tsx:5:" in error.stack
    assert "at Boom (Boom.tsx:" in error.component_stack
    assert [m.text for m in result.console if m.level == "error"] == []  # React's own probing is not reported


def test_silenced_errors_and_console_error_are_still_captured() -> None:
    code = """console.error = () => {};
window.onerror = () => true;
window.addEventListener("error", (e) => { e.preventDefault(); e.stopImmediatePropagation(); }, true);
window.addEventListener("unhandledrejection", (e) => e.preventDefault(), true);

export default function Quiet() {
  console.error("hidden %s", "message");
  Object.defineProperty(console, "error", { value: () => {}, configurable: true });
  console.error("defined away");
  setTimeout(() => { throw new Error("late failure"); }, 0);
  Promise.reject(new Error("nobody waits"));
  return <p>looks fine</p>;
}
"""
    result = capture_ui(code, "tsx", filename="Quiet.tsx")
    errors = [m for m in result.console if m.level == "error"]
    assert any(m.text == "hidden message" for m in errors), result.console
    assert any(m.text == "defined away" for m in errors), result.console
    hidden = next(m for m in errors if m.text == "hidden message")
    assert hidden.location is not None and (hidden.location.file, hidden.location.line) == ("Quiet.tsx", 7)
    late = next(e for e in result.page_errors if e.kind == "error")
    assert "late failure" in late.message
    assert late.location is not None and (late.location.file, late.location.line) == ("Quiet.tsx", 10)
    assert any(e.kind == "unhandledrejection" and "nobody waits" in e.message for e in result.page_errors)
    assert result.status == "error" and not result.blank


def test_console_error_from_a_component_is_captured() -> None:
    code = ('export default function Keys() {\n  const items = ["a", "b"];\n'
            '  return <ul>{items.map((x) => <li>{x}</li>)}</ul>;\n}\n')
    result = capture_ui(code, "tsx", filename="Keys.tsx")
    assert result.status == "passed"  # a warning is not an uncaught error
    assert any(m.level == "error" and 'unique "key" prop' in m.text for m in result.console), result.console


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection it accepts."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.server.close()


def test_requests_off_the_origin_never_arrive() -> None:
    listener = Listener()
    try:
        url = f"http://127.0.0.1:{listener.port}/steal"
        code = f"""import {{ useEffect, useState }} from "react";
export default function Leak() {{
  const [state, setState] = useState("pending");
  useEffect(() => {{
    fetch("{url}?via=fetch").then(() => setState("reached"), () => setState("blocked"));
    new Image().src = "{url}?via=img";
    navigator.sendBeacon("{url}?via=beacon", "x");
    try {{ new WebSocket("ws://127.0.0.1:{listener.port}/ws"); }} catch (e) {{}}
  }}, []);
  return <p>{{state}}</p>;
}}
"""
        result = capture_ui(code, "tsx", ui_checks=[{"action": "expect_text", "selector": "p", "value": "blocked"}])
        time.sleep(0.5)  # anything in flight would have connected by now
        assert listener.connections == 0
        assert f"{url}?via=fetch" in result.blocked_requests
        assert f"{url}?via=img" in result.blocked_requests
        assert any(u.startswith(f"ws://127.0.0.1:{listener.port}") for u in result.blocked_requests), result.blocked_requests
        assert result.status == "passed", result.checks
    finally:
        listener.close()


def test_infinite_render_loop_times_out_and_the_next_capture_works() -> None:
    code = "export default function Spin() {\n  while (true) {}\n  return <p>never</p>;\n}\n"
    started = time.perf_counter()
    result = capture_ui(code, "tsx", timeout_s=3)
    elapsed = time.perf_counter() - started
    assert result.status == "timeout"
    assert elapsed < 3 + 10, elapsed  # the timeout plus closing (or restarting) the browser
    after = capture_ui(LOGIN, "tsx")
    assert after.status == "passed" and not after.blank


def test_checks_that_pass() -> None:
    result = capture_ui(LOGIN, "tsx", ui_checks=LOGIN_STEPS)
    assert result.status == "passed", result.checks
    assert (result.tests_passed, result.tests_total) == (3, 3)
    assert [c.passed for c in result.checks] == [True] * 6


def test_checks_that_fail() -> None:
    steps = [
        {"action": "expect_visible", "selector": "testid=missing", "timeout_ms": 200},
        {"action": "expect_count", "selector": "input", "count": 2},
        {"action": "click", "selector": "text=Logout", "timeout_ms": 300},
        {"action": "expect_text", "selector": "h1", "value": "Welcome"},
        {"action": "expect_hidden", "selector": "text=Sign in"},
    ]
    result = capture_ui(LOGIN, "tsx", ui_checks=steps)
    assert result.status == "failed"
    assert (result.tests_passed, result.tests_total) == (1, 4)
    assert not result.checks[0].passed and result.checks[1].passed
    assert not result.checks[2].passed and not result.checks[2].is_test
    for later in result.checks[3:]:
        assert not later.passed and later.message.startswith("not run: step 2 (click 'text=Logout') failed")


def test_wrong_behaviour_is_caught_by_checks() -> None:
    wrong = LOGIN.replace("if (email && password) setUser(email);", "setUser(null);")
    result = capture_ui(wrong, "tsx", ui_checks=LOGIN_STEPS)
    assert result.status == "failed" and (result.tests_passed, result.tests_total) == (1, 3)


def test_html_page_is_served_as_is() -> None:
    page = """<!doctype html><html><head><title>Hi</title></head><body>
<h1 id="t">static</h1>
<script>
document.getElementById("t").textContent = "scripted";
</script>
<script>
null.boom;
</script>
</body></html>"""
    result = capture_ui(page, "html", ui_checks=[{"action": "expect_text", "selector": "#t", "value": "scripted"}])
    assert result.compiled and result.checks[0].passed
    assert "scripted" in result.visible_text and not result.blank
    error = result.page_errors[0]
    assert error.location is not None and (error.location.file, error.location.line) == ("index.html", 7)
    assert result.status == "error"


def test_tailwind_classes_get_real_css() -> None:
    code = ('export default function Red() {\n'
            '  return <div data-testid="box" className="h-40 w-40 bg-red-500" />;\n}\n')
    result = capture_ui(code, "tsx", ui_checks=[{"action": "expect_visible", "selector": "testid=box"}])
    assert result.status == "passed"
    with Image.open(io.BytesIO(result.screenshots[0].png)) as image:
        red, green, blue = image.convert("RGB").getpixel((80, 80))  # preflight: no body margin, box at 0,0
    assert red > 200 and green < 100 and blue < 100, (red, green, blue)


def test_screenshots_at_times() -> None:
    code = ('import { useEffect, useState } from "react";\nexport default function Late() {\n'
            '  const [on, setOn] = useState(false);\n  useEffect(() => { setTimeout(() => setOn(true), 300); }, []);\n'
            '  return on ? <h1 className="text-6xl">Arrived</h1> : null;\n}\n')
    result = capture_ui(code, "tsx", screenshots_at_ms=[0, 700], viewport=(640, 480))
    assert [s.at_ms for s in result.screenshots] == [0, 700]
    assert png_size(result.screenshots[1].png) == (640, 480)
    assert result.status == "passed" and not result.blank  # judged on the last screenshot


def test_malformed_ui_checks_are_clear_errors() -> None:
    with pytest.raises(UserError) as fill:
        capture_ui(LOGIN, "tsx", ui_checks=[{"action": "click", "selector": "text=x"}, {"action": "fill", "selector": "#email"}])
    assert str(fill.value) == "ui_checks[1]: fill needs a value"
    with pytest.raises(UserError) as unknown:
        parse_ui_checks([{"action": "tap", "selector": "x"}])
    assert unknown.value.field == "ui_checks[0].action" and "unknown action 'tap'" in unknown.value.problem
    with pytest.raises(UserError) as extra:
        parse_ui_checks([{"action": "click", "selector": "x", "colour": "red"}])
    assert extra.value.field == "ui_checks[0].colour"
    with pytest.raises(UserError) as bounds:
        parse_ui_checks([{"action": "expect_visible", "selector": "x", "timeout_ms": 60_000}])
    assert bounds.value.field == "ui_checks[0].timeout_ms"


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(UserError) as language:
        capture_ui(LOGIN, "vue")
    assert language.value.field == "language" and "tsx" in language.value.problem
    with pytest.raises(UserError) as viewport:
        capture_ui(LOGIN, "tsx", viewport=(10, 10))
    assert viewport.value.field == "viewport"
    with pytest.raises(UserError) as times:
        capture_ui(LOGIN, "tsx", screenshots_at_ms=[-1])
    assert times.value.field == "screenshots_at_ms"


def test_missing_default_export_is_an_error() -> None:
    result = capture_ui("export function NotDefault() { return <p>x</p>; }\n", "tsx")
    assert result.status == "error"
    assert "no default export" in result.page_errors[0].message and "NotDefault" in result.page_errors[0].message


def test_parallel_captures_from_threads() -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: capture_ui(LOGIN.replace("Sign in", f"Sign in {i}"), "tsx"), range(4)))
    assert [r.status for r in results] == ["passed"] * 4
    assert [f"Sign in {i}" in r.visible_text for i, r in enumerate(results)] == [True] * 4


def test_importing_the_package_does_not_import_playwright() -> None:
    code = "import sys, roopik_rl_mcp.ui; print('playwright' in sys.modules, 'PIL.Image' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.stdout.split() == ["False", "False"], done.stderr


def live_children():  # type: ignore[no-untyped-def]
    """(process, name, command line) of this process's descendants that are running (no zombies)."""
    import psutil

    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append((process, process.name(), " ".join(process.cmdline())))
        except psutil.Error:
            continue
    return found


def _namespace(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


@pytest.mark.skipif(not BWRAP, reason="bubblewrap is not installed (apt-get install bubblewrap)")
def test_browser_and_build_worker_run_sandboxed() -> None:
    capture_ui(LOGIN, "tsx")
    # the Playwright driver (node, unsandboxed by design: it is the trusted side of the pipe) is left out
    sandboxed = [(process, name) for process, name, cmdline in live_children()
                 if name in ("chromium", "node", "esbuild") and "playwright/driver" not in cmdline]
    checked = set()
    for process, name in sandboxed:
        try:  # a short-lived Chromium helper may exit between the listing and these reads
            uid, net, mnt = process.uids().real, _namespace(process.pid, "net"), _namespace(process.pid, "mnt")
        except (FileNotFoundError, ProcessLookupError, psutil.NoSuchProcess):
            continue
        assert uid == 65534, (name, uid)
        assert net != _namespace("self", "net") and mnt != _namespace("self", "mnt"), name
        root = f"/proc/{process.pid}/root"
        assert not os.path.exists(f"{root}{REPO}/pyproject.toml"), name  # the repository: no
        assert not os.path.exists(f"{root}{os.path.expanduser('~')}/.bashrc"), name  # the home: no
        checked.add(name)
    assert {"chromium", "node"} <= checked, checked


def test_popups_downloads_and_file_urls_get_nothing() -> None:
    code = """import { useEffect, useState } from "react";
export default function Escape() {
  const [file, setFile] = useState("pending");
  useEffect(() => {
    window.open("https://example.com/popup");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob(["x"])); link.download = "x.txt"; document.body.append(link); link.click();
    fetch("file:///etc/passwd").then(() => setFile("read"), () => setFile("refused"));
  }, []);
  return <p>{file}</p>;
}
"""
    result = capture_ui(code, "tsx", ui_checks=[{"action": "expect_text", "selector": "p", "value": "refused"}])
    assert result.status == "passed", result.checks
    assert "https://example.com/popup" in result.blocked_requests
    assert any(note.startswith("popup closed") for note in result.notes), result.notes


def test_a_crashed_browser_is_replaced() -> None:
    from roopik_rl_mcp.ui.browser import host

    capture_ui(LOGIN, "tsx")
    launches = host().launches
    main = [process for process, name, cmdline in live_children() if name == "chromium" and "--type=" not in cmdline]
    assert len(main) == 1
    main[0].kill()
    main[0].wait(5)
    deadline = time.monotonic() + 10
    result = capture_ui(LOGIN, "tsx")
    while result.status != "passed" and time.monotonic() < deadline:  # a capture caught mid-crash ends error
        result = capture_ui(LOGIN, "tsx")
    assert result.status == "passed" and host().launches == launches + 1


def test_result_round_trips_as_json() -> None:
    from roopik_rl_mcp.ui import UICaptureResult

    result = capture_ui(LOGIN, "tsx")
    again = UICaptureResult.model_validate_json(result.model_dump_json())
    assert again.screenshots[0].png == result.screenshots[0].png and again.status == result.status


FALLBACK = """
import json, socket, sys, threading
from roopik_rl_mcp.ui import capture_ui
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(4); server.settimeout(3)
port = server.getsockname()[1]
code = ('import { useEffect } from "react";\\nexport default function A() {\\n'
        f'  useEffect(() => {{ fetch("http://127.0.0.1:{port}/x").catch(() => {{}}); }}, []);\\n'
        '  return <h1>unsandboxed but routed</h1>;\\n}\\n')
result = capture_ui(code, "tsx")
try:
    server.accept(); arrived = True
except OSError:
    arrived = False
print(json.dumps({"status": result.status, "isolation": result.isolation, "arrived": arrived,
                  "blocked": result.blocked_requests, "notes": result.notes}))
"""


def test_without_bubblewrap_the_level_says_process_and_requests_are_still_blocked() -> None:
    import json

    done = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "ROOPIK_UI_ISOLATION": "process"})
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == "passed" and report["isolation"] == "process", report
    assert report["arrived"] is False and any(u.endswith("/x") for u in report["blocked"]), report


def test_html_with_the_tailwind_cdn_gets_local_css() -> None:
    page = ('<!doctype html><html><head><script src="https://cdn.tailwindcss.com"></script></head>\n'
            '<body class="m-0"><div class="h-40 w-40 bg-red-500"></div>\n<script>undefinedThing();</script></body></html>')
    result = capture_ui(page, "html")
    assert "https://cdn.tailwindcss.com/" in result.blocked_requests
    with Image.open(io.BytesIO(result.screenshots[0].png)) as image:
        red, green, blue = image.convert("RGB").getpixel((80, 80))
    assert red > 200 and green < 100 and blue < 100, (red, green, blue)
    assert result.page_errors[0].location is not None and result.page_errors[0].location.line == 3  # lines unchanged


def test_console_floods_are_capped() -> None:
    code = ('export default function Loud() {\n  for (let i = 0; i < 2000; i++) console.log("line", i);\n'
            '  setTimeout(() => { throw new Error("after the flood"); });\n  return <p>loud</p>;\n}\n')
    result = capture_ui(code, "tsx")
    # 400 sent; React's DevTools hint is one of them and is left out of the result
    assert len(result.console) == 399 and any("dropped" in note for note in result.notes), result.notes
    assert [e.message for e in result.page_errors] == ["after the flood"]  # a flood cannot crowd an error out
    assert result.status == "error"


PACKAGES = {
    "framer-motion + clsx": ('import { motion } from "framer-motion";\nimport clsx from "clsx";\n'
                             'export default function M() {\n  return <motion.div initial={{ opacity: 0 }} animate={{ opacity: 1 }} '
                             'className={clsx("p-4", "bg-green-500")}>Animated</motion.div>;\n}\n', "Animated"),
    "recharts": ('import { LineChart, Line, XAxis, YAxis } from "recharts";\n'
                 'const data = [{ x: 1, y: 2 }, { x: 2, y: 5 }, { x: 3, y: 3 }];\n'
                 'export default function C() {\n  return <LineChart width={400} height={300} data={data}><XAxis dataKey="x" />'
                 '<YAxis /><Line dataKey="y" stroke="#f00" /></LineChart>;\n}\n', "1\n2\n3"),
    "lucide namespace + react-dom": ('import * as Icons from "lucide-react";\nimport ReactDOM from "react-dom";\n'
                                     'export default function N() {\n  return <p><Icons.Heart /> portal: {typeof ReactDOM.createPortal}</p>;\n}\n',
                                     "portal: function"),
}


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_runtime_packages_render(name: str) -> None:
    code, text = PACKAGES[name]
    result = capture_ui(code, "tsx", screenshots_at_ms=[0, 500])
    assert result.status == "passed", result.model_dump(exclude={"screenshots"})
    assert text in result.visible_text
    assert [m.text for m in result.console if m.level == "error"] == []
