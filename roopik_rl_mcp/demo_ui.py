"""The UI half of the demo: React components built and rendered in the sandboxed browser, correct and broken.

Each task has a working component and variants broken the ways generated UI code breaks: a syntax error,
a throw while rendering, a missing element, and wrong behaviour that only `ui_checks` catch. They are
captured, judged and later paired like the Python episodes, so the DPO run sees UI preferences too.
"""

from __future__ import annotations

from dataclasses import dataclass

LOGIN = """import { useState } from "react";

export default function LoginForm() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [user, setUser] = useState<string | null>(null);
  if (user) return <h1 className="p-8 text-2xl font-semibold">Welcome, {user}</h1>;
  return (
    <form className="mx-auto mt-16 flex max-w-sm flex-col gap-3 rounded-lg border p-6 shadow"
          onSubmit={(e) => { e.preventDefault(); if (email && password) setUser(email); }}>
      <h1 className="text-xl font-semibold">Sign in</h1>
      <label htmlFor="email">Email</label>
      <input id="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)}
             className="rounded border px-2 py-1" />
      <label htmlFor="password">Password</label>
      <input id="password" type="password" value={password} onChange={(e) => setPassword(e.target.value)}
             className="rounded border px-2 py-1" />
      <button type="submit" className="rounded bg-blue-600 px-3 py-2 text-white">Login</button>
    </form>
  );
}
"""

LOGIN_CHECKS = [
    {"action": "expect_visible", "selector": "#password", "timeout_ms": 800},
    {"action": "fill", "selector": "#email", "value": "ada@example.com"},
    {"action": "fill", "selector": "#password", "value": "hunter2"},
    {"action": "click", "selector": 'role=button[name="Login"]'},
    {"action": "expect_text", "selector": "h1", "value": "Welcome", "timeout_ms": 800},
]

COUNTER = """import { useState } from "react";
import { Plus } from "lucide-react";

export default function Counter() {
  const [count, setCount] = useState(0);
  return (
    <div className="flex items-center gap-4 p-8">
      <span data-testid="count" className="text-3xl font-bold">{count}</span>
      <button aria-label="Add one" onClick={() => setCount(count + 1)}
              className="rounded-full bg-emerald-600 p-2 text-white"><Plus size={20} /></button>
    </div>
  );
}
"""

COUNTER_CHECKS = [
    {"action": "click", "selector": 'role=button[name="Add one"]', "timeout_ms": 800},
    {"action": "click", "selector": 'role=button[name="Add one"]', "timeout_ms": 800},
    {"action": "expect_text", "selector": "testid=count", "value": "2", "timeout_ms": 800},
]


@dataclass
class UITask:
    task: str
    checks: list[dict]
    variants: dict[str, str]


TASKS = [
    UITask(
        task="Create a React component that displays a login form with email and password fields and a Login "
             "button; after a successful login it shows a welcome message.",
        checks=LOGIN_CHECKS,
        variants={
            "correct": LOGIN,
            "syntax_error": LOGIN.replace("</form>", "</frm>"),
            "throws_in_render": LOGIN.replace("  if (user)", "  if (!user) throw new Error('session is undefined');\n"
                                                             "  if (user)"),
            "missing_password": LOGIN.replace(
                '      <label htmlFor="password">Password</label>\n', "").replace(
                '      <input id="password" type="password" value={password} onChange={(e) => setPassword(e.target.value)}\n'
                '             className="rounded border px-2 py-1" />\n', "").replace("email && password", "email"),
            "wrong_behaviour": LOGIN.replace("setUser(email)", "setUser(null)"),
        },
    ),
    UITask(
        task="Create a React counter: a number starting at 0 and a button that adds one to it.",
        checks=COUNTER_CHECKS,
        variants={
            "correct": COUNTER,
            "adds_two": COUNTER.replace("count + 1", "count + 2"),
            "no_button": COUNTER.replace('      <button aria-label="Add one" onClick={() => setCount(count + 1)}\n'
                                         '              className="rounded-full bg-emerald-600 p-2 text-white">'
                                         '<Plus size={20} /></button>\n', ""),
        },
    ),
]


async def capture_ui_tasks(client, call, say) -> list[dict]:
    """Capture and judge every variant; returns one summary row per episode (with its screenshot's path)."""
    from roopik_rl_mcp.artifacts import artifact_path

    rows = []
    for ui_task in TASKS:
        for name, code in ui_task.variants.items():
            fb = await call(client, "capture_feedback", task=ui_task.task, code=code, ui_checks=ui_task.checks,
                            model=name, session_id="demo", metadata={"variant": name})
            jd = await call(client, "judge_output", episode_id=fb["episode_id"])
            shot = str(artifact_path(fb["screenshot_ids"][-1])) if fb["screenshot_ids"] else None
            rows.append({"task_id": ui_task.task[:40], "variant": name, **fb, "reward": jd["reward"],
                         "scores": jd["scores"], "screenshot": shot})
            errors = ", ".join(sorted({e["kind"] for e in fb["errors"]})) or "-"
            say(f"  {fb['language']:<5} {name:<18} {fb['status']:<11} checks {fb['tests_passed']}/{fb['tests_total']:<2} "
                f"reward {jd['reward']:.3f}  {errors}")
    return rows
