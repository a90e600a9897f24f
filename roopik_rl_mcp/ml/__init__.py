"""Model loading for job processes: hub ids, model folders, GGUF files, PEFT adapters, the tiny model.

Trainers (`trainers/*.py`) and the evaluation runner import this package; the MCP server never does, so
torch and transformers stay out of the server process (each module imports them inside its functions).
The server checks references with the dependency-free `roopik_rl_mcp.model_refs` instead.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    """Where long steps (a tiny-model build, a GGUF conversion) say what they are doing: a job's progress file."""

    def message(self, text: str) -> None: ...
