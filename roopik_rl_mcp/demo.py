"""`roopik-rl-mcp demo`: the whole loop, offline, as an MCP client of the real server over stdio.

HumanEval tasks -> candidates (the canonical solution and broken variants of it, or samples from an
OpenAI-compatible endpoint when ROOPIK_GENERATOR_BASE_URL is set), and React UI tasks with correct and
broken components (demo_ui.py) -> capture_feedback -> judge_output ->
log_preference(auto) -> start_dpo on the tiny model -> evaluate_checkpoint base vs adapter -> summary.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from mcp import Client, StdioServerParameters

from roopik_rl_mcp.config import paths
from roopik_rl_mcp.evaluation.tasks import Task, load_tasks
from roopik_rl_mcp.mutations import variants

HONEST_NOTE = """\
What this run shows, and what it cannot: every number above comes from real code execution, a real
judge and a real TRL DPO run, but the model trained here is a tiny 2-layer network built on this
machine in seconds. DPO visibly moves its preferences (log-prob margins and reward accuracy on the
training pairs), yet it cannot write working Python, so pass@k stays near 0 for base and adapter alike.
For real gains pass start_dpo(base_model=...) / evaluate_checkpoint(model=...) a code model you have
(e.g. a local Qwen2.5-Coder-0.5B directory), ideally on a GPU."""


@dataclass
class DemoOptions:
    n_tasks: int = 4
    dpo_steps: int = 100
    eval_tasks: int = 4
    max_new_tokens: int = 64
    home: str | None = None


def say(text: str = "") -> None:
    print(text, flush=True)


async def call(client: Client, tool: str, **arguments: Any) -> dict:
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content[0].text if result.content else result}")
    return result.structured_content or {}


def pick_tasks(n: int) -> list[Task]:
    """The first HumanEval tasks whose solution admits at least three broken variants."""
    chosen = []
    for task in load_tasks("humaneval"):
        if len(variants(task.prompt, task.canonical_solution, task.entry_point)) >= 4:
            chosen.append(task)
        if len(chosen) == n:
            break
    return chosen


def generated_candidates(task: Task, n: int = 4) -> dict[str, str]:
    """Samples from an OpenAI-compatible endpoint, when one is configured."""
    import openai

    client = openai.OpenAI(base_url=os.environ["ROOPIK_GENERATOR_BASE_URL"],
                           api_key=os.environ.get("ROOPIK_GENERATOR_API_KEY") or "not-needed", timeout=120)
    model = os.environ.get("ROOPIK_GENERATOR_MODEL", "gpt-4o-mini")
    out = {}
    for index in range(n):
        response = client.chat.completions.create(model=model, temperature=0.8, messages=[
            {"role": "system", "content": "Complete the Python function. Answer with the full function only, no prose."},
            {"role": "user", "content": task.prompt}])
        text = response.choices[0].message.content or ""
        if "```" in text:
            text = text.split("```")[1].removeprefix("python").lstrip("\n")
        out[f"{model}#{index}"] = text
    return out


async def wait_for(client: Client, job_id: str, label: str, timeout_s: float = 900) -> dict:
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        state = await call(client, "job_status", job_id=job_id)
        line = f"  {label}: {state['status']}"
        if state.get("max_steps"):
            line += f" step {state.get('step') or 0}/{state['max_steps']}"
        metrics = state.get("metrics") or {}
        if "loss" in metrics:
            line += f" loss {metrics['loss']:.4f}"
        if "rewards/accuracies" in metrics:
            line += f" reward-acc {metrics['rewards/accuracies']:.2f}"
        if line != last:
            say(line)
            last = line
        if state["status"] not in ("queued", "running"):
            return state
        if time.monotonic() > deadline:
            await call(client, "cancel_job", job_id=job_id)
            raise RuntimeError(f"{label} did not finish within {timeout_s:.0f} s")
        await _sleep(1.0)


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


async def ui_capture(client: Client) -> list[dict]:
    """The UI tasks, or one line saying why they were skipped (no browser or npm runtime installed)."""
    from roopik_rl_mcp.demo_ui import capture_ui_tasks
    from roopik_rl_mcp.ui import runtime_problem
    from roopik_rl_mcp.ui.runtime import chromium_path

    problem = runtime_problem() or (None if chromium_path() else "Chromium is not installed (apt-get install chromium)")
    if problem:
        say(f"  skipped: {problem}")
        return []
    return await capture_ui_tasks(client, call, say)


async def run_demo(options: DemoOptions) -> int:
    started = time.monotonic()
    home = options.home or str(paths().home)
    env = {**os.environ, "ROOPIK_RL_HOME": home}
    server = StdioServerParameters(command=sys.executable, args=["-m", "roopik_rl_mcp", "serve"], env=env)
    generator = bool(os.environ.get("ROOPIK_GENERATOR_BASE_URL"))
    say(f"roopik-rl-mcp demo: data in {home}; candidates from "
        f"{'the configured generator endpoint' if generator else 'canonical solutions + broken variants'}")
    async with Client(server, read_timeout_seconds=300) as client:
        tools = await client.list_tools()
        say(f"connected over stdio: {len(tools.tools)} tools ({', '.join(t.name for t in tools.tools)})\n")

        say("1. capture_feedback + judge_output")
        episodes = []
        for task in pick_tasks(options.n_tasks):
            candidates = generated_candidates(task) if generator else variants(
                task.prompt, task.canonical_solution, task.entry_point)
            for name, code in candidates.items():
                fb = await call(client, "capture_feedback", task=task.prompt, code=code, tests=task.test,
                                entry_point=task.entry_point, model=name, session_id="demo",
                                metadata={"task_id": task.task_id, "variant": name})
                jd = await call(client, "judge_output", episode_id=fb["episode_id"])
                episodes.append({"task_id": task.task_id, "variant": name, **fb, "reward": jd["reward"],
                                 "scores": jd["scores"]})
                say(f"  {task.task_id:<14} {name:<18} {fb['status']:<11} tests {fb['tests_passed']}/"
                    f"{fb['tests_total']:<3} reward {jd['reward']:.3f}")

        say("\n1b. capture_feedback on UI: React components rendered in the sandboxed browser, with ui_checks")
        ui_episodes = await ui_capture(client)
        episodes.extend(ui_episodes)

        say("\n2. log_preference(auto=true, min_margin=0.1)")
        prefs = await call(client, "log_preference", auto=True, min_margin=0.1)
        reasons: dict[str, int] = {}
        for skip in prefs["skipped"]:
            reasons[skip["reason"].split(" (")[0]] = reasons.get(skip["reason"].split(" (")[0], 0) + 1
        say(f"  {len(prefs['created'])} new pairs, {prefs['total_pairs']} stored in all; skipped: {reasons or 'none'}")

        say(f"\n3. start_dpo on the tiny model ({options.dpo_steps} steps)")
        job = await call(client, "start_dpo", max_steps=options.dpo_steps, batch_size=4, max_length=384,
                         learning_rate=2e-3, lora_r=16, lora_alpha=32, min_margin=0.1, name="demo")
        say(f"  job {job['job_id']} on {job['n_pairs']} pairs -> {job['output_dir']}")
        dpo = await wait_for(client, job["job_id"], "dpo")
        if dpo["status"] != "succeeded":
            say(f"  DPO failed: {dpo.get('error')}\n{dpo.get('log_tail') or ''}")
            return 1

        say(f"\n4. evaluate_checkpoint: base vs adapter on {options.eval_tasks} HumanEval tasks")
        ev_job = await call(client, "evaluate_checkpoint", model=dpo["output_dir"], limit=options.eval_tasks,
                            max_new_tokens=options.max_new_tokens)
        evaluation = await wait_for(client, ev_job["job_id"], "eval")
        if evaluation["status"] != "succeeded":
            say(f"  evaluation failed: {evaluation.get('error')}\n{evaluation.get('log_tail') or ''}")
            return 1

    print_summary(episodes, prefs, dpo, evaluation, time.monotonic() - started)
    return 0


def isolation_summary(levels: set[str]) -> list[str]:
    """The sandbox level the Python episodes ran under, and one warning with the fix when weaker than bwrap:
    a machine without bubblewrap still runs the demo, and the user should know what that costs."""
    from roopik_rl_mcp.sandbox import isolation as iso

    if not levels:
        return []
    lines = [f"Sandbox isolation: {', '.join(sorted(levels))} ({'; '.join(iso.MEANING.get(lvl, lvl) for lvl in sorted(levels))})"]
    if levels != {"bwrap"}:
        warning = iso.current().warning() or (f"sandbox isolation {', '.join(sorted(levels))} is weaker than bwrap "
                                               "(fix: apt-get install bubblewrap, or bash scripts/setup-system.sh)")
        lines.append(f"WARNING: {warning}")
    return lines


def print_summary(episodes: list[dict], prefs: dict, dpo: dict, evaluation: dict, elapsed: float) -> None:
    say("\n" + "=" * 72 + "\nSUMMARY\n" + "=" * 72)
    for line in isolation_summary({e["isolation"] for e in episodes if e.get("language") == "python" and e.get("isolation")}):
        say(line)
    by_variant: dict[str, list[dict]] = {}
    for episode in episodes:
        by_variant.setdefault(episode["variant"].split("#")[0], []).append(episode)
    say(f"Episodes: {len(episodes)} ({sum(e['passed'] for e in episodes)} passed all tests)")
    say(f"  {'variant':<18}{'n':>3}{'pass rate':>11}{'tests passed':>14}{'mean reward':>13}")
    for name, group in by_variant.items():
        tests = sum(e["tests_passed"] for e in group), sum(e["tests_total"] for e in group)
        say(f"  {name:<18}{len(group):>3}{sum(e['passed'] for e in group) / len(group):>11.0%}"
            f"{f'{tests[0]}/{tests[1]}':>14}{sum(e['reward'] for e in group) / len(group):>13.3f}")
    shots = [e for e in episodes if e.get("screenshot")]
    if shots:
        say("UI screenshots:")
        for episode in shots:
            say(f"  {episode['variant']:<18} {episode['status']:<11} {episode['screenshot']}")
    say(f"Preference pairs: {len(prefs['created'])} new, {prefs['total_pairs']} stored")
    metrics = dpo.get("metrics") or {}
    say(f"DPO ({dpo['job_id']}): {dpo.get('step')}/{dpo.get('max_steps')} steps, adapter in {dpo['output_dir']}")
    for key, label in (("pref_accuracy", "share of pairs where log p(chosen) > log p(rejected)"),
                       ("logp_margin", "mean log p(chosen) - log p(rejected)")):
        if f"{key}_before" in metrics:
            say(f"  {label}: before {metrics[f'{key}_before']:.3f} -> after {metrics[f'{key}_after']:.3f}")
    if "implicit_reward_accuracy" in metrics:
        say(f"  DPO implicit reward vs the reference model: accuracy {metrics['implicit_reward_accuracy']:.3f}, "
            f"margin {metrics['implicit_reward_margin']:.3f}")
    for key in ("loss", "rewards/accuracies", "rewards/margins"):
        if key in metrics:
            say(f"  last logged {key}: {metrics[key]:.4f}")
    result = evaluation.get("result") or {}
    say(f"Evaluation ({evaluation['job_id']}): {result.get('n_tasks')} tasks, n={result.get('n_samples')}")
    for model in result.get("models", []):
        scores = ", ".join(f"{k} {v:.3f}" for k, v in model["pass_at_k"].items())
        say(f"  {model['label']:<8} {scores}; {model['passed']}/{model['total']} completions passed; "
            f"avg {model['avg_generated_tokens']:.1f} tokens generated")
    say(f"\nTotal time: {elapsed:.0f} s\n\n{HONEST_NOTE}")
    summary_path = paths().home / "last_demo_summary.json"
    summary_path.write_text(json.dumps({"episodes": episodes, "pairs": prefs, "dpo": dpo, "evaluation": evaluation},
                                       indent=2, default=str))
    say(f"\nFull details: {summary_path}")
