"""Which isolation level the sandbox gets, seen as a user sees it: a real interpreter in a subprocess.

A virtualenv reached through a symlink must keep bwrap; a machine without bubblewrap gets a weaker level
and says so, with the fix, in `doctor` and the demo's summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from roopik_rl_mcp.sandbox import isolation as iso
from roopik_rl_mcp.sandbox.python_runner import probe

LEVEL_OF = """
import json
from roopik_rl_mcp.sandbox import isolation, run_python
level = isolation.current()
result = run_python("def f():\\n    return 1\\n", "assert f() == 1", timeout_s=10)
print(json.dumps({"level": level.level, "notes": level.notes, "passed": result.passed,
                  "isolation": result.isolation, "executable": isolation.interpreter()}))
"""


def _bwrap_works_here() -> tuple[bool, str]:
    if not iso.available("bwrap"):
        return False, iso.unavailable_because("bwrap")
    ok, _, why = probe("bwrap")
    return ok, why


BWRAP, BWRAP_WHY = _bwrap_works_here()


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != iso.FORCE_ENV}
    return {**env, **extra}


def _level_through(python: str, env: dict[str, str]) -> dict:
    done = subprocess.run([python, "-c", LEVEL_OF], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not BWRAP, reason=f"needs the bwrap isolation level; this machine gives none: {BWRAP_WHY[:200]}")
@pytest.mark.parametrize("link", ["the venv itself", "a directory above it"])
def test_a_virtualenv_reached_through_a_symlink_keeps_bwrap(tmp_path, link):
    prefix = Path(sys.prefix)
    executable = Path(sys.executable)
    assert executable.is_relative_to(prefix), (executable, prefix)
    if link == "the venv itself":
        (tmp_path / "venv").symlink_to(prefix, target_is_directory=True)
        python = tmp_path / "venv" / executable.relative_to(prefix)
    else:
        (tmp_path / "up").symlink_to(prefix.parent, target_is_directory=True)
        python = tmp_path / "up" / prefix.name / executable.relative_to(prefix)
    assert python.exists() and str(Path(sys.prefix).resolve()) not in str(python)
    out = _level_through(str(python), _env())
    assert out["level"] == "bwrap", out
    assert out["notes"] == [] and out["passed"] and out["isolation"] == "bwrap", out
    assert not out["executable"].startswith(str(tmp_path)), out  # exec'd by a path that exists inside


def _path_without_bwrap(tmp_path: Path) -> str:
    """A PATH holding everything the server needs except bwrap: the fresh-machine case."""
    shadow = tmp_path / "bin"
    shadow.mkdir()
    for tool in ("unshare", "setpriv"):
        if found := subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip():
            (shadow / tool).symlink_to(found)
    return str(shadow)


def test_without_bubblewrap_doctor_warns_with_the_fix(tmp_path, home):
    done = subprocess.run([sys.executable, "-m", "roopik_rl_mcp", "doctor"], capture_output=True, text=True,
                          env=_env(PATH=_path_without_bwrap(tmp_path), ROOPIK_RL_HOME=str(home)), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    warning = "is weaker than bwrap: bwrap not installed (fix: apt-get install bubblewrap"
    line = next((line for line in done.stdout.splitlines() if "WARNING" in line), "")
    assert warning in line and "isolation bwrap" not in line, done.stdout
    assert "sandbox     isolation=bwrap" not in done.stdout
    # The same reason in the log (the server writes it at start-up too, from the same probe).
    assert "sandbox isolation bwrap unavailable: bwrap not installed (fix: apt-get install bubblewrap" in done.stderr


def test_the_demo_summary_names_the_level_and_warns_with_the_fix_below_bwrap(tmp_path):
    script = ("from roopik_rl_mcp.demo import isolation_summary\n"
              "from roopik_rl_mcp.sandbox import isolation_level\n"
              "print('\\n'.join(isolation_summary({isolation_level()})))\n")
    without = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                             env=_env(PATH=_path_without_bwrap(tmp_path)))
    assert without.returncode == 0, without.stderr
    first, warning = without.stdout.strip().splitlines()
    assert first.startswith("Sandbox isolation: ") and "bwrap" not in first.split("(")[0], without.stdout
    assert warning.startswith("WARNING: ") and "fix: apt-get install bubblewrap" in warning, without.stdout
    if BWRAP:
        full = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=_env())
        assert full.stdout.strip().splitlines() == [f"Sandbox isolation: bwrap ({iso.MEANING['bwrap']})"], full.stdout


def test_forcing_an_unknown_level_names_the_levels():
    done = subprocess.run([sys.executable, "-c", "from roopik_rl_mcp.sandbox import isolation_level; isolation_level()"],
                          env={**os.environ, iso.FORCE_ENV: "chroot"}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "expected one of bwrap, netns+uid, netns, uid, process" in done.stderr, done.stderr
