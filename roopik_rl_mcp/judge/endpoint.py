"""Which OpenAI-compatible endpoint judges, and with which model and key.

Resolved per call, first match wins: the call's own `model`/`base_url`; ROOPIK_JUDGE_BASE_URL,
ROOPIK_JUDGE_MODEL, ROOPIK_JUDGE_API_KEY; the `[judge]` table of `<data dir>/config.toml` (base_url,
model, api_key_env: the *name* of the variable holding the key, so no key sits in a file); and the
standard OPENAI_BASE_URL / OPENAI_API_KEY, which alone are enough. The key lives only in this object:
it is never stored, logged or returned (`Endpoint.__repr__` hides it).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field

from roopik_rl_mcp.config import paths
from roopik_rl_mcp.errors import UserError

DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_BASE_URL = "https://api.openai.com/v1"


def _env(name: str) -> str | None:
    """An env value, ignoring unsubstituted `${env:...}` placeholders some MCP clients pass through."""
    value = os.environ.get(name)
    return None if not value or value.startswith("${") else value


def _config_file() -> dict:
    path = paths().home / "config.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text()).get("judge", {}) or {}
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise UserError("judge", f"{path} is not valid TOML ({exc})") from None


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Endpoint(base_url={self.base_url!r}, model={self.model!r}, api_key=<hidden>)"


def configured() -> bool:
    """Whether judge="auto" should use an LLM: some base URL or an OpenAI key is set."""
    return bool(_env("ROOPIK_JUDGE_BASE_URL") or _config_file().get("base_url") or _env("OPENAI_BASE_URL")
                or _env("OPENAI_API_KEY"))


def resolve(model: str | None = None, base_url: str | None = None) -> Endpoint:
    """The endpoint for one call. A `base_url` the call names gets the configured key only when it is the
    configured endpoint: a client must not be able to send the user's key to a server of its choosing."""
    config = _config_file()
    key_env = config.get("api_key_env")
    configured_url = (_env("ROOPIK_JUDGE_BASE_URL") or config.get("base_url") or _env("OPENAI_BASE_URL")
                      or OPENAI_BASE_URL).rstrip("/")
    chosen_url = (base_url or configured_url).rstrip("/")
    key = (_env("ROOPIK_JUDGE_API_KEY") or (_env(key_env) if key_env else None) or _env("OPENAI_API_KEY"))
    return Endpoint(
        base_url=chosen_url,
        model=model or _env("ROOPIK_JUDGE_MODEL") or config.get("model") or DEFAULT_MODEL,
        api_key=(key if key and chosen_url == configured_url else "not-needed"),
    )
