"""The LLM judge: any OpenAI-compatible chat endpoint, with the screenshot when there is one.

Configured by environment: ROOPIK_JUDGE_BASE_URL (e.g. http://127.0.0.1:8000/v1), ROOPIK_JUDGE_MODEL,
ROOPIK_JUDGE_API_KEY (falls back to OPENAI_API_KEY). Prompts are the templates in `prompts/`.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

from roopik_rl_mcp.config import prompts_dir
from roopik_rl_mcp.schemas import Scores

DEFAULT_MODEL = "gpt-4o-mini"


def _setting(name: str) -> str | None:
    """An env value, ignoring unsubstituted `${env:...}` placeholders some MCP clients pass through."""
    value = os.environ.get(name)
    return None if not value or value.startswith("${") else value


def configured() -> bool:
    return bool(_setting("ROOPIK_JUDGE_BASE_URL"))


class JudgeUnavailable(RuntimeError):
    """The endpoint could not be reached or answered something that is not a verdict."""


def _render_user(episode: dict) -> str:
    template = (prompts_dir() / "judge_user.md").read_text()
    errors = "\n".join(f"- {e.get('kind')}: {e.get('message')} (line {e.get('line')})" for e in episode.get("errors") or [])
    return template.format_map(
        {
            "task": episode["task"],
            "language": episode.get("language") or "python",
            "code": episode["code"][:20_000],
            "status": episode["status"],
            "tests_passed": episode.get("tests_passed") or 0,
            "tests_total": episode.get("tests_total") or 0,
            "errors": errors or "(none)",
            "stdout": (episode.get("stdout") or "")[:2000] or "(empty)",
            "stderr": (episode.get("stderr") or "")[:2000] or "(empty)",
            "ui": _ui_section(episode.get("ui")),
        }
    )


def _ui_section(ui: dict | None) -> str:
    """What the browser saw, for UI episodes: the judge reads this beside the screenshot."""
    if not ui:
        return ""
    console = "\n".join(f"- [{c.get('level')}] {c.get('text', '')[:300]}" for c in (ui.get("console") or [])[:20])
    page_errors = "\n".join(f"- {e.get('message', '')[:300]} (line {e.get('line')})" for e in (ui.get("page_errors") or [])[:10])
    return (
        "## Rendered page\n"
        f"blank: {ui.get('blank')}\n"
        f"uncaught page errors:\n{page_errors or '(none)'}\n"
        f"console:\n{console or '(none)'}\n"
        f"blocked requests: {', '.join((ui.get('blocked_requests') or [])[:10]) or '(none)'}\n\n"
        f"ARIA snapshot (truncated):\n```\n{(ui.get('aria_snapshot') or '(none)')[:4000]}\n```\n"
        f"visible text (truncated):\n```\n{(ui.get('visible_text') or '(none)')[:2000]}\n```"
    )


def _parse(text: str) -> tuple[Scores, str]:
    match = re.search(r"\{.*\}", text or "", re.DOTALL)
    if not match:
        raise JudgeUnavailable(f"the judge answered without a JSON object: {text[:200]!r}")
    try:
        data = json.loads(match.group(0))
        scores = Scores(
            functionality=float(data["functionality"]),
            quality=float(data["quality"]),
            prompt_match=float(data["prompt_match"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise JudgeUnavailable(f"the judge's answer is not a valid verdict: {exc}") from exc
    return scores, str(data.get("rationale") or "")


def judge(episode: dict, model: str | None = None, timeout_s: float = 60.0) -> tuple[Scores, str, str]:
    """Returns (scores, rationale, model used)."""
    import openai  # lazy: keeps server start fast

    client = openai.OpenAI(
        base_url=_setting("ROOPIK_JUDGE_BASE_URL"),
        api_key=_setting("ROOPIK_JUDGE_API_KEY") or _setting("OPENAI_API_KEY") or "not-needed",
        timeout=timeout_s,
        max_retries=1,
    )
    model = model or _setting("ROOPIK_JUDGE_MODEL") or DEFAULT_MODEL
    content: list[dict] = [{"type": "text", "text": _render_user(episode)}]
    screenshot = episode.get("screenshot_path")
    if screenshot and Path(screenshot).is_file():
        encoded = base64.b64encode(Path(screenshot).read_bytes()).decode()
        content.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}})
    try:
        response = client.chat.completions.create(
            model=model,
            temperature=0,
            messages=[
                {"role": "system", "content": (prompts_dir() / "judge_system.md").read_text()},
                {"role": "user", "content": content},
            ],
        )
    except openai.OpenAIError as exc:
        raise JudgeUnavailable(f"judge endpoint failed: {exc}") from exc
    scores, rationale = _parse(response.choices[0].message.content or "")
    return scores, rationale, model
