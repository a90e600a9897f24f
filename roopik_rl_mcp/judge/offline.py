"""The offline judge: a deterministic rubric per kind of code, chosen by the episode's language.

No model and no network: the same episode always gets the same scores, so rewards are reproducible and
the loop works on a machine with nothing configured. Python episodes use `python_rubric`, UI episodes
(tsx/jsx/ts/js/html) `ui_rubric`; each module's docstring is its rubric.
"""

from __future__ import annotations

from roopik_rl_mcp.judge import python_rubric, ui_rubric
from roopik_rl_mcp.languages import UI_LANGUAGES
from roopik_rl_mcp.schemas import Scores


def judge(episode: dict) -> tuple[Scores, str]:
    rubric = ui_rubric if (episode.get("language") or "python") in UI_LANGUAGES else python_rubric
    return rubric.judge(episode)
