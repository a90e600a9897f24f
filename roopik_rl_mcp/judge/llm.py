"""The LLM judge: any OpenAI-compatible chat endpoint, reliable enough to build training data on.

- Structured output: the JSON-schema response format where the endpoint takes it, else JSON mode, else
  plain text parsed for the object; what an endpoint refused is remembered per (base URL, model).
- Every verdict is validated (types, 0-10 ranges); an invalid one is retried with the validation error,
  and nothing unvalidated is ever returned.
- Timeouts, connection errors, 429 (honouring Retry-After) and 5xx get bounded retries with backoff, all
  inside one total deadline that fits a client's 60 s tool timeout. The call is async and cancelled at
  the deadline, so an answer that trickles in byte by byte is cut too.
- Code, test output and page text are fenced as untrusted data (see prompts/judge_system.md).
Every failure is a JudgeUnavailable with a message a user can act on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from roopik_rl_mcp.config import prompts_dir
from roopik_rl_mcp.judge.endpoint import Endpoint, configured, resolve
from roopik_rl_mcp.schemas import Scores

__all__ = ["Answers", "JudgeUnavailable", "LLMVerdict", "ask", "configured", "judge", "template_hash"]

DEFAULT_DEADLINE_S = 45.0
"""Total time for one judge_output, retries included: under the usual 60 s MCP tool timeout."""


def deadline_s() -> float:
    return float(os.environ.get("ROOPIK_JUDGE_DEADLINE_S") or DEFAULT_DEADLINE_S)
MAX_ATTEMPTS = 4
MAX_BACKOFF_S = 8.0
SAMPLE_TEMPERATURE = 0.7
FORMATS = ("json_schema", "json_object", "text")
_refused_formats: dict[tuple[str, str], int] = {}  # (base_url, model) -> index into FORMATS that works


class JudgeUnavailable(RuntimeError):
    """The endpoint could not be reached in time or never answered a valid verdict."""


class Verdict(BaseModel):
    """What the judge must answer; the ranges are enforced, not hoped for."""

    functionality: float = Field(ge=0, le=10)
    quality: float = Field(ge=0, le=10)
    prompt_match: float = Field(ge=0, le=10)
    rationale: str = Field(description="Trimmed when stored (judge/service.py).")


@dataclass
class CallStats:
    """How one judgment went: stored with it, summed by judge_stats."""

    attempts: int = 0
    retries: int = 0
    parse_failures: int = 0
    out_of_range: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    response_format: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass
class LLMVerdict:
    scores: Scores
    rationale: str
    model: str
    samples: list[dict[str, float]]
    spread: dict[str, float]
    stats: CallStats
    latency_ms: int
    settings: dict[str, Any]


# -- the prompt ------------------------------------------------------------------------------------------
def fence(text: str) -> str:
    """Untrusted text cannot close its own fence."""
    return (text or "").replace("</untrusted-", "<\\/untrusted-")


def template_hash(*names: str) -> str:
    """Identifies the prompt a judgment was made with (cache key and judge_stats group)."""
    digest = hashlib.sha256()
    for name in names or ("judge_system.md", "judge_user.md"):
        digest.update((prompts_dir() / name).read_bytes())
    return digest.hexdigest()[:16]


def _ui_section(ui: dict | None) -> str:
    """What the browser saw, for UI episodes: the judge reads this beside the screenshot."""
    if not ui:
        return ""
    console = "\n".join(f"- [{c.get('level')}] {c.get('text', '')[:300]}" for c in (ui.get("console") or [])[:20])
    page_errors = "\n".join(f"- {e.get('message', '')[:300]} (line {e.get('line')})"
                            for e in (ui.get("page_errors") or [])[:10])
    return (
        "## Rendered page\n"
        f"blank: {ui.get('blank')}\n"
        f"blocked requests: {', '.join((ui.get('blocked_requests') or [])[:10]) or '(none)'}\n"
        f"uncaught page errors:\n<untrusted-page-errors>\n{fence(page_errors) or '(none)'}\n</untrusted-page-errors>\n"
        f"console:\n<untrusted-console>\n{fence(console) or '(none)'}\n</untrusted-console>\n"
        f"ARIA snapshot (truncated):\n<untrusted-aria>\n{fence((ui.get('aria_snapshot') or '(none)')[:4000])}\n"
        "</untrusted-aria>\n"
        f"visible text (truncated):\n<untrusted-page-text>\n{fence((ui.get('visible_text') or '(none)')[:2000])}\n"
        "</untrusted-page-text>"
    )


def render_user(episode: dict) -> str:
    errors = "\n".join(f"- {e.get('kind')}: {e.get('message')} (line {e.get('line')})"
                       for e in episode.get("errors") or [])
    return (prompts_dir() / "judge_user.md").read_text().format_map({
        "task": fence(episode["task"]),
        "language": episode.get("language") or "python",
        "code": fence(episode["code"][:20_000]),
        "status": episode["status"],
        "tests_passed": episode.get("tests_passed") or 0,
        "tests_total": episode.get("tests_total") or 0,
        "errors": fence(errors) or "(none)",
        "stdout": fence((episode.get("stdout") or "")[:2000]) or "(empty)",
        "stderr": fence((episode.get("stderr") or "")[:2000]) or "(empty)",
        "ui": _ui_section(episode.get("ui")),
    })


def messages_for(episode: dict) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "text", "text": render_user(episode)}]
    screenshot = episode.get("screenshot_path")
    if screenshot and Path(screenshot).is_file():
        encoded = base64.b64encode(Path(screenshot).read_bytes()).decode()
        content.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}})
    return [{"role": "system", "content": (prompts_dir() / "judge_system.md").read_text()},
            {"role": "user", "content": content}]


# -- parsing -----------------------------------------------------------------------------------------------
def _json_object(text: str) -> dict:
    """The first JSON object in the answer (models wrap it in prose or fences)."""
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError(f"no JSON object in the answer: {text[:200]!r}")


def parse_answer(text: str, stats: CallStats, answer: type[BaseModel] = None) -> BaseModel:  # type: ignore[assignment]
    """The answer as `answer` (default Verdict), validated; a ValueError says what was wrong."""
    answer = answer or Verdict
    try:
        data = _json_object(text or "")
    except ValueError:
        stats.parse_failures += 1
        raise
    try:
        return answer.model_validate({**data, "rationale": str(data.get("rationale") or "")})
    except ValidationError as exc:
        if any(e["type"] in ("less_than_equal", "greater_than_equal") for e in exc.errors()):
            stats.out_of_range += 1
        else:
            stats.parse_failures += 1
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None


# -- calling -----------------------------------------------------------------------------------------------
def _response_format(kind: str, answer: type[BaseModel]) -> dict[str, Any] | None:
    if kind == "json_schema":
        schema = answer.model_json_schema()
        return {"type": "json_schema", "json_schema": {"name": answer.__name__.lower(), "schema": schema,
                                                        "strict": False}}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def _one_answer(client: Any, endpoint: Endpoint, messages: list[dict], temperature: float,
                      deadline: float, stats: CallStats, answer: type[BaseModel]) -> BaseModel:
    """One validated answer, retrying what is worth retrying before `deadline` (monotonic seconds)."""
    import openai

    key = (endpoint.base_url, endpoint.model)
    conversation = list(messages)
    last_problem = "no attempt was made"
    for attempt in range(MAX_ATTEMPTS):
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            break
        stats.attempts += 1
        stats.retries += attempt > 0
        kind = FORMATS[_refused_formats.get(key, 0)]
        stats.response_format = kind
        request: dict[str, Any] = {"model": endpoint.model, "messages": conversation, "temperature": temperature}
        if (response_format := _response_format(kind, answer)) is not None:
            request["response_format"] = response_format
        pause = min(MAX_BACKOFF_S, 0.25 * 2 ** attempt)
        try:
            response = await asyncio.wait_for(client.chat.completions.create(**request, timeout=remaining), remaining)
        except (asyncio.TimeoutError, openai.APITimeoutError):
            last_problem = f"no answer within {remaining:.0f} s"
            stats.errors.append("timeout")
            break  # the deadline is spent
        except openai.APIStatusError as exc:
            status = exc.status_code
            stats.errors.append(f"HTTP {status}")
            if status in (400, 422) and kind != "text":
                _refused_formats[key] = FORMATS.index(kind) + 1  # try a weaker format, and remember it
                last_problem = f"the endpoint refused response_format={kind} (HTTP {status})"
                continue
            if status == 429 or status >= 500:
                pause = min(_retry_after(exc) or pause, MAX_BACKOFF_S)
                last_problem = f"HTTP {status} from the endpoint"
                await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                continue
            raise JudgeUnavailable(f"judge endpoint failed: HTTP {status}: {exc.message}") from None
        except openai.APIConnectionError as exc:
            stats.errors.append("connection")
            last_problem = f"could not reach {endpoint.base_url} ({exc.__cause__ or exc})"
            await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            continue
        except (openai.OpenAIError, ValueError, TypeError, KeyError) as exc:  # a body the SDK could not read
            stats.errors.append(exc.__class__.__name__)
            last_problem = f"unreadable answer ({exc.__class__.__name__}: {str(exc)[:200]})"
            continue
        usage = getattr(response, "usage", None)
        stats.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
        stats.completion_tokens += getattr(usage, "completion_tokens", 0) or 0
        choices = getattr(response, "choices", None) or []
        text = (choices[0].message.content if choices and choices[0].message else None) or ""
        if not choices:
            stats.parse_failures += 1
            last_problem = "the answer has no choices"
            continue
        try:
            return parse_answer(text, stats, answer)
        except ValueError as exc:
            last_problem = f"invalid verdict ({exc})"
            conversation = [*messages, {"role": "assistant", "content": text[:4000]},
                            {"role": "user", "content": f"That answer is not a valid verdict: {exc}. Answer again "
                                                        "with only the JSON object, every score between 0 and 10."}]
    raise JudgeUnavailable(f"judge endpoint failed: {last_problem} (after {stats.attempts} attempt(s), "
                           f"deadline {deadline_s():.0f} s)")


async def _ask_all(endpoint: Endpoint, conversations: list[list[dict]], temperature: float, deadline: float,
                   stats: CallStats, answer: type[BaseModel]) -> list[BaseModel]:
    import openai

    client = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0)
    try:
        return list(await asyncio.gather(*(_one_answer(client, endpoint, messages, temperature, deadline, stats, answer)
                                           for messages in conversations)))
    finally:
        await client.close()


@dataclass
class Answers:
    answers: list[BaseModel]
    endpoint: Endpoint
    stats: CallStats
    latency_ms: int


def ask(conversations: list[list[dict]], answer: type[BaseModel], *, model: str | None = None,
        base_url: str | None = None, temperature: float = 0.0) -> Answers:
    """One validated `answer` per conversation, all concurrently, inside one deadline."""
    endpoint = resolve(model, base_url)
    stats = CallStats()
    started = time.monotonic()
    try:
        answers = asyncio.run(_ask_all(endpoint, conversations, temperature, started + deadline_s(), stats, answer))
    except JudgeUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the endpoint did, the caller gets a clear reason
        raise JudgeUnavailable(f"judge endpoint failed: {exc.__class__.__name__}: {str(exc)[:300]}") from None
    return Answers(answers, endpoint, stats, int((time.monotonic() - started) * 1000))


def judge(episode: dict, model: str | None = None, samples: int = 1, base_url: str | None = None) -> LLMVerdict:
    """n verdicts (n = samples; temperature > 0 when n > 1), combined by their median, with the spread."""
    temperature = 0.0 if samples == 1 else SAMPLE_TEMPERATURE
    asked = ask([messages_for(episode)] * samples, Verdict, model=model, base_url=base_url, temperature=temperature)
    verdicts: list[Verdict] = asked.answers  # type: ignore[assignment]
    names = ("functionality", "quality", "prompt_match")
    values = {name: [getattr(v, name) for v in verdicts] for name in names}
    scores = Scores(**{name: round(statistics.median(values[name]), 2) for name in names})
    middle = min(verdicts, key=lambda v: sum(abs(getattr(v, n) - getattr(scores, n)) for n in names))
    return LLMVerdict(
        scores=scores, rationale=middle.rationale, model=asked.endpoint.model,
        samples=[{name: getattr(v, name) for name in names} for v in verdicts],
        spread={name: round(max(values[name]) - min(values[name]), 2) for name in names},
        stats=asked.stats, latency_ms=asked.latency_ms,
        settings={"temperature": temperature, "samples": samples, "response_format": asked.stats.response_format,
                  "base_url": asked.endpoint.base_url},
    )
