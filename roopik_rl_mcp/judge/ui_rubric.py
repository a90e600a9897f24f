"""The offline rubric for UI code: scores from what the browser saw, plus simple static signals.

Rubric (each 0-10):
- functionality: build error -> 0; timeout -> 1; a blank page -> 1; uncaught page errors -> at most 3
  (3 x the share of checks passed); otherwise, with `ui_checks`, 10 x the share of checks passed, and
  without checks 8 for a page that rendered something (nothing was verified beyond that). Each console
  error takes 1 off (at most 3).
- quality: 0 when it did not build; else 10, minus 1 per build warning (at most 3), minus 1.5 when form
  fields outnumber their labels (`<label>`, `aria-label`, `aria-labelledby`), minus 1 when an `<img>` has
  no `alt`, minus 1 for console warnings, minus 1 for code over 400 lines, minus 0.5 for lines over 160
  characters.
- prompt_match: 0 for a blank or unbuilt page; else 3 + 7 x the share of the task's terms found on the
  page (visible text and ARIA snapshot count fully, the code alone half).
overall is the mean of the three.
"""

from __future__ import annotations

import re

from roopik_rl_mcp.judge.python_rubric import IDENTIFIER, STOPWORDS
from roopik_rl_mcp.schemas import Scores

UI_STOPWORDS = STOPWORDS | {"create", "component", "react", "page", "displays", "display", "shows", "show",
                            "make", "build", "using", "use", "tailwind", "html", "ui", "simple", "nice"}
FIELD = re.compile(r"<(input|select|textarea)\b(?![^>]*type=[\"'](hidden|submit|button)[\"'])", re.I)
LABEL = re.compile(r"<label\b|aria-label(ledby)?=", re.I)
IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt=)[^>]*>", re.I)


def _functionality(episode: dict, ui: dict) -> tuple[float, str]:
    status, total, passed = episode["status"], episode.get("tests_total") or 0, episode.get("tests_passed") or 0
    share = passed / total if total else 0.0
    console_errors = sum(1 for c in ui.get("console") or [] if c.get("level") == "error")
    if status == "build_error":
        return 0.0, "it does not build"
    if status == "timeout":
        return 1.0, "the page never settled (timeout)"
    if ui.get("blank"):
        return 1.0, "the page rendered blank"
    if ui.get("page_errors"):
        score, note = 3.0 * share if total else 1.0, f"{len(ui['page_errors'])} uncaught page error(s)"
    elif total:
        score, note = 10.0 * share, f"{passed}/{total} UI checks passed"
    else:
        score, note = 8.0, "rendered without errors; no UI checks given"
    if console_errors:
        score -= min(3, console_errors)
        note += f", {console_errors} console error(s)"
    return round(max(0.0, score), 2), note


def _quality(episode: dict, ui: dict) -> tuple[float, list[str]]:
    if episode["status"] == "build_error":
        return 0.0, ["does not build"]
    code, score, notes = episode["code"], 10.0, []
    warnings = len(ui.get("build_warnings") or [])
    if warnings:
        score -= min(3, warnings)
        notes.append(f"{warnings} build warning(s)")
    fields, labels = len(FIELD.findall(code)), len(LABEL.findall(code))
    if fields > labels:
        score -= 1.5
        notes.append(f"{fields - labels} form field(s) without a label")
    if IMG_WITHOUT_ALT.search(code):
        score -= 1
        notes.append("images without alt text")
    if any(c.get("level") in ("warning", "warn") for c in ui.get("console") or []):
        score -= 1
        notes.append("console warnings")
    lines = code.splitlines()
    if len(lines) > 400:
        score -= 1
        notes.append(f"{len(lines)} lines")
    if any(len(line) > 160 for line in lines):
        score -= 0.5
        notes.append("lines over 160 chars")
    return max(0.0, round(score, 2)), notes


def _words(text: str) -> set[str]:
    return {w.lower() for w in IDENTIFIER.findall(text or "")}


def _prompt_match(episode: dict, ui: dict) -> tuple[float, str]:
    if episode["status"] == "build_error" or ui.get("blank"):
        return 0.0, "nothing rendered to compare with the task"
    task_terms = _words(episode["task"]) - UI_STOPWORDS
    if not task_terms:
        return 10.0, "the task names no terms to look for"
    on_page = _words(ui.get("visible_text") or "") | _words(ui.get("aria_snapshot") or "")
    in_code = _words(episode["code"])
    found = sum(1.0 if term in on_page else 0.5 if term in in_code else 0.0 for term in task_terms)
    share = found / len(task_terms)
    return round(3.0 + 7.0 * share, 2), f"{share:.0%} of the task's terms are on the page ({', '.join(sorted(task_terms))})"


def judge(episode: dict) -> tuple[Scores, str]:
    ui = episode.get("ui") or {}
    functionality, f_note = _functionality(episode, ui)
    quality, q_notes = _quality(episode, ui)
    match, m_note = _prompt_match(episode, ui)
    scores = Scores(functionality=functionality, quality=quality, prompt_match=match)
    rationale = (f"Functionality {functionality}/10: {f_note}. Quality {quality}/10: {', '.join(q_notes) or 'clean'}. "
                 f"Prompt match {match}/10: {m_note}.")
    return scores, rationale
