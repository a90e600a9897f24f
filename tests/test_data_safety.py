"""A hostile client cannot destroy stored data, write outside where exports belong, or poison the numbers.

Every refusal is checked from both sides: the error names the field and the problem, and the database is
still whole afterwards (integrity, counts, episodes readable through the resource).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import call, call_error
from fake_openai import FakeOpenAI
from roopik_rl_mcp.jobs import JobManager
from roopik_rl_mcp.store import Store

pytestmark = pytest.mark.anyio

CODE = "def inc(x):\n    return x + 1\n"
TESTS = "def check(candidate):\n    assert candidate(1) == 2\n"


async def seed(client) -> str:
    """One episode and one pair, so there is something to lose."""
    episode = await call(client, "capture_feedback", task="increment x", code=CODE, tests=TESTS)
    await call(client, "log_preference", prompt="p", chosen="good", rejected="bad", chosen_reward=0.9,
               rejected_reward=0.1)
    return episode["episode_id"]


async def assert_intact(client, store: Store, episode_id: str) -> None:
    assert store.integrity_check() == ["ok"]
    assert store.count("episodes") == 1 and store.count("preferences") == 1
    resource = await client.read_resource(f"episodes://{episode_id}")
    assert json.loads(resource.contents[0].text)["id"] == episode_id


async def test_export_never_touches_the_database_or_its_sidecars(client, store, home):
    episode_id = await seed(client)
    for name in ("episodes.db", "episodes.db-wal", "episodes.db-shm", "episodes.db-journal"):
        for path in (str(home / name), f"../{name}"):
            message = await call_error(client, "export_preferences", path=path, overwrite=True)
            assert "path" in message and ("allowed places" in message or "data directory" in message), message
    db_in_exports = home / "exports" / "copy.jsonl"
    db_in_exports.parent.mkdir(exist_ok=True)
    db_in_exports.write_bytes((home / "episodes.db").read_bytes()[:4096])
    message = await call_error(client, "export_preferences", path="copy.jsonl", overwrite=True)
    assert "SQLite database" in message
    await assert_intact(client, store, episode_id)


async def test_export_paths_are_confined(client, store, home, tmp_path):
    episode_id = await seed(client)
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "exports").mkdir(exist_ok=True)
    (home / "exports" / "out").symlink_to(outside)  # a folder link leading out
    (home / "exports" / "link.jsonl").symlink_to(outside / "target.jsonl")  # a file link leading out
    for path in ("/etc/roopik.jsonl", "../../x.jsonl", "~/x.jsonl", str(outside / "a.jsonl"), "out/a.jsonl"):
        message = await call_error(client, "export_preferences", path=path)
        assert "outside the allowed places" in message and "ROOPIK_RL_EXPORT_DIRS" in message, message
    message = await call_error(client, "export_preferences", path="link.jsonl", overwrite=True)
    assert "symbolic link" in message
    for path in ("/dev/stdout", "/proc/self/fd/1"):
        assert "path" in await call_error(client, "export_preferences", path=path)
    assert "must end in .jsonl" in await call_error(client, "export_preferences", path="pairs.txt")
    assert not list(outside.iterdir()) and not Path("/etc/roopik.jsonl").exists()
    await assert_intact(client, store, episode_id)


async def test_an_existing_export_is_kept_unless_overwrite(client, store, home):
    episode_id = await seed(client)
    first = await call(client, "export_preferences", path="pairs.jsonl")
    assert first["path"] == str(home / "exports" / "pairs.jsonl") and first["n_pairs"] == 1
    message = await call_error(client, "export_preferences", path="pairs.jsonl")
    assert "exists" in message and "overwrite" in message
    Path(first["path"]).write_text("kept\n")
    assert Path(first["path"]).read_text() == "kept\n"
    again = await call(client, "export_preferences", path="pairs.jsonl", overwrite=True)
    [row] = [json.loads(line) for line in Path(again["path"]).read_text().splitlines()]
    assert row["chosen"] == "good" and row["rejected"] == "bad"
    assert not [p for p in (home / "exports").iterdir() if p.name.startswith(".")], "no temp file left behind"
    await assert_intact(client, store, episode_id)


async def test_directories_the_user_allowed_take_exports(client, store, tmp_path, monkeypatch):
    allowed = tmp_path / "datasets"
    allowed.mkdir()
    monkeypatch.setenv("ROOPIK_RL_EXPORT_DIRS", str(allowed))
    await seed(client)
    done = await call(client, "export_preferences", path=str(allowed / "nested.jsonl"))
    assert Path(done["path"]).read_text().count("\n") == 1 and Path(done["manifest_path"]).is_file()
    assert "outside the allowed places" in await call_error(client, "export_preferences",
                                                            path=str(tmp_path / "elsewhere.jsonl"))


async def test_oversized_strings_and_mappings_are_refused_and_store_nothing(client, store):
    episode_id = await seed(client)
    huge = "x" * 100_001
    cases = [
        ("capture_feedback", dict(task=huge, code=CODE), "task"),
        ("capture_feedback", dict(task="t", code=CODE, session_id="s" * 201), "session_id"),
        ("capture_feedback", dict(task="t", code=CODE, model="m" * 201), "model"),
        ("capture_feedback", dict(task="t", code=CODE, metadata={"blob": "b" * 70_000}), "metadata"),
        ("capture_feedback", dict(task="t", code="x = 1\n" * 200_000), "code"),
        ("capture_feedback", dict(task="t", code=CODE, tests="assert True\n" * 100_000), "tests"),
        ("judge_output", dict(episode_id="e" * 101), "episode_id"),
        ("start_dpo", dict(name="n" * 201), "name"),
    ]
    for tool, arguments, field in cases:
        message = await call_error(client, tool, **arguments)
        assert field in message, (field, message[:300])
    await assert_intact(client, store, episode_id)
    assert store.count("jobs") == 0


async def test_out_of_range_numbers_are_refused(client, store):
    episode_id = await seed(client)
    cases = [
        ("judge_output", dict(episode_id=episode_id, weights={"compiled": 1e300}), "compiled"),
        ("judge_output", dict(episode_id=episode_id, weights={"quality": -1}), "quality"),
        ("log_preference", dict(prompt="p", chosen="a", rejected="b", chosen_reward=1e300, rejected_reward=0), "chosen_reward"),
        ("log_preference", dict(prompt="p", chosen="a", rejected="b", chosen_reward=1, rejected_reward=-1e300), "rejected_reward"),
        ("capture_feedback", dict(task="t", code=CODE, timeout_s=1e300), "timeout_s"),
        ("start_dpo", dict(learning_rate=1e300), "learning_rate"),
    ]
    for tool, arguments, field in cases:
        message = await call_error(client, tool, **arguments)
        assert field in message, (field, message[:300])
    await assert_intact(client, store, episode_id)
    assert store.count("judgments") == 0 and store.count("jobs") == 0
    judged = await call(client, "judge_output", episode_id=episode_id, weights={"compiled": 1000, "quality": 0})
    assert 0.0 <= judged["reward"] <= 1.0 and all(v == v for v in judged["reward_breakdown"].values())


def test_infinity_and_nan_on_the_wire_are_refused(home):
    """Python's json (and many clients) write the non-standard literals Infinity and NaN; the server refuses them."""
    calls = [
        ("judge_output", '{"episode_id": "ep_x", "weights": {"compiled": Infinity}}', "compiled"),
        ("log_preference", '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_reward": NaN, '
                           '"rejected_reward": 0}', "chosen_reward"),
        ("capture_feedback", '{"task": "t", "code": "x = 1", "metadata": {"score": -Infinity}}', "metadata"),
    ]
    lines = ['{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", '
             '"capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}',
             '{"jsonrpc": "2.0", "method": "notifications/initialized"}']
    lines += [f'{{"jsonrpc": "2.0", "id": {i}, "method": "tools/call", "params": {{"name": "{tool}", '
              f'"arguments": {arguments}}}}}' for i, (tool, arguments, _) in enumerate(calls, start=1)]
    env = {**os.environ, "ROOPIK_RL_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "roopik_rl_mcp", "serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    answers: dict[int, dict] = {}
    try:
        server.stdin.write("\n".join(lines) + "\n")
        server.stdin.flush()
        while len(answers) < len(lines) - 1:  # every request but the notification gets one answer
            line = server.stdout.readline()
            assert line, f"the server stopped before answering; got {sorted(answers)}"
            message = json.loads(line)
            answers[message["id"]] = message
    finally:
        server.stdin.close()
        server.wait(30)
    for i, (tool, _, field) in enumerate(calls, start=1):
        result = answers[i].get("result") or {}
        text = json.dumps(answers[i])
        assert result.get("isError") or "error" in answers[i], (tool, text[:400])
        assert field in text, (tool, text[:400])
    store = Store(home / "episodes.db")
    assert store.count("episodes") == 0 and store.count("preferences") == 0


async def test_a_huge_llm_rationale_is_trimmed_with_a_marker(client, store, monkeypatch):
    rationale = "r" * 20_000_000

    def verdict(_: dict) -> str:
        return json.dumps({"functionality": 7, "quality": 7, "prompt_match": 7, "rationale": rationale})

    episode = await call(client, "capture_feedback", task="increment x", code=CODE, tests=TESTS)
    with FakeOpenAI(verdict) as fake:
        monkeypatch.setenv("ROOPIK_JUDGE_BASE_URL", fake.url)
        judged = await call(client, "judge_output", episode_id=episode["episode_id"], judge="llm")
    assert len(judged["rationale"]) < 8_200 and "[... trimmed: 19,992,000 more characters]" in judged["rationale"]
    assert store.get("judgments", judged["judgment_id"])["rationale"] == judged["rationale"]


async def test_model_references_are_checked_before_a_job_starts(client, store, tmp_path):
    await seed(client)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone")}))
    for value, expected in (("/etc", "not a model"), ("../../", "not a model"),
                            (str(tmp_path / "missing"), "does not exist"), (str(gguf), "GGUF"),
                            (str(adapter), "gone")):
        for tool, field in (("start_dpo", "base_model"), ("evaluate_checkpoint", "model")):
            started = time.monotonic()
            message = await call_error(client, tool, **{field: value})
            assert field in message and expected in message, (tool, value, message)
            assert time.monotonic() - started < 5, "refused at once, not by a failing job"
    assert store.count("jobs") == 0


def staged_job_script(tmp_path: Path, *, summary: bool) -> Path:
    """A stand-in trainer: saves an adapter into its staging dir, then waits for a go file."""
    script = tmp_path / "trainer.py"
    script.write_text(
        "import json, os, sys, time\n"
        "config = json.load(open(sys.argv[1]))\n"
        "out = config['output_dir']\n"
        "open(os.path.join(out, 'adapter_config.json'), 'w').write(json.dumps({'base_model_name_or_path': 'x'}))\n"
        "open(os.path.join(out, 'adapter_model.safetensors'), 'wb').write(b'weights')\n"
        "progress = config['progress_path']\n"
        "open(progress, 'a').write(json.dumps({'event': 'end', 'status': 'succeeded', 'time': time.time()}) + '\\n')\n"
        "go = os.path.join(os.path.dirname(progress), 'go')\n"
        "while not os.path.exists(go):\n"
        "    time.sleep(0.05)\n"
        f"if {summary}:\n"
        "    open(os.path.join(out, 'training_summary.json'), 'w').write(json.dumps({'metrics': {'loss': 0.5}}))\n"
        "    os.remove(progress)\n"
    )
    return script


def wait_for(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


async def finished(client, job_id: str, timeout_s: float = 30) -> dict:
    """The job's state once its process has ended (whichever job manager started it: ours or the server's)."""
    import anyio

    deadline = time.monotonic() + timeout_s
    while (state := await call(client, "job_status", job_id=job_id))["status"] == "running":
        assert time.monotonic() < deadline, f"job {job_id} still running after {timeout_s} s"
        await anyio.sleep(0.1)
    return state


async def test_a_cancelled_job_leaves_no_usable_adapter(client, store, tmp_path):
    script = staged_job_script(tmp_path, summary=True)
    manager = JobManager(store)
    job = manager.submit("dpo", None, {}, argv=lambda config: [sys.executable, str(script), str(config)])
    staging = Path(job["config"]["output_dir"])
    wait_for(staging / "adapter_model.safetensors")
    assert (await call(client, "job_status", job_id=job["id"]))["status"] == "running", "a fake end line is not an end"
    message = await call_error(client, "evaluate_checkpoint", model=str(staging))
    assert "which is running" in message and "model" in message
    cancelled = await call(client, "cancel_job", job_id=job["id"])
    assert cancelled["status"] == "cancelled"
    assert not staging.exists() and not Path(job["output_dir"]).exists()
    message = await call_error(client, "evaluate_checkpoint", model=str(Path(job["job_dir"]) / "output"))
    assert "cancelled" in message
    assert store.count("jobs", "kind = 'evaluation'") == 0


async def test_a_finished_job_is_judged_by_its_summary_not_its_progress_file(client, store, tmp_path):
    script = staged_job_script(tmp_path, summary=True)
    manager = JobManager(store)
    job = manager.submit("dpo", None, {}, argv=lambda config: [sys.executable, str(script), str(config)])
    wait_for(Path(job["config"]["output_dir"]) / "adapter_model.safetensors")
    (Path(job["job_dir"]) / "go").touch()  # it writes its summary, deletes progress.jsonl and exits
    done = await finished(client, job["id"])
    assert done["status"] == "succeeded" and done["metrics"]["loss"] == 0.5
    published = Path(done["output_dir"])
    assert (published / "adapter_model.safetensors").is_file()
    assert not Path(job["config"]["output_dir"]).exists()


async def test_a_job_that_exits_without_its_summary_failed(client, store, tmp_path):
    script = staged_job_script(tmp_path, summary=False)
    manager = JobManager(store)
    job = manager.submit("dpo", None, {}, argv=lambda config: [sys.executable, str(script), str(config)])
    wait_for(Path(job["config"]["output_dir"]) / "adapter_model.safetensors")
    (Path(job["job_dir"]) / "go").touch()
    done = await finished(client, job["id"])
    assert done["status"] == "failed" and "without writing its final summary" in done["error"]
    assert not Path(job["output_dir"]).exists() and not Path(job["config"]["output_dir"]).exists()


async def test_missing_resources_say_what_is_missing(client):
    from mcp.shared.exceptions import MCPError

    for uri, expected in (("episodes://nope", "no episode with id 'nope'"), ("jobs://nope", "no job with id 'nope'")):
        with pytest.raises(MCPError) as raised:
            await client.read_resource(uri)
        assert expected in str(raised.value)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROOPIK_RL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "roopik_rl_mcp", *args], env=env, capture_output=True,
                          text=True, timeout=120)


async def test_backup_and_restore_from_the_command_line(client, store, home, tmp_path):
    episode_id = await seed(client)
    copy = tmp_path / "backup.db"
    made = cli(home, "backup", str(copy))
    assert made.returncode == 0 and copy.is_file(), made.stderr
    refused = cli(home, "backup", str(copy))
    assert refused.returncode != 0 and "--force" in refused.stderr
    await call(client, "capture_feedback", task="another", code=CODE, tests=TESTS)
    assert store.count("episodes") == 2

    not_a_db = tmp_path / "junk.db"
    not_a_db.write_text("not sqlite")
    bad = cli(home, "restore", str(not_a_db))
    assert bad.returncode != 0 and "not a" in bad.stderr.lower()
    assert store.count("episodes") == 2, "a refused restore changes nothing"

    restored = cli(home, "restore", str(copy))
    assert restored.returncode == 0, restored.stderr
    fresh = Store(home / "episodes.db")
    assert fresh.count("episodes") == 1 and fresh.get("episodes", episode_id) is not None
    assert list((home / "backups").glob("before-restore-*.db")), "the replaced database is kept"
    doctor = cli(home, "doctor")
    assert "integrity" in doctor.stdout and "ok" in doctor.stdout.split("integrity", 1)[1].splitlines()[0]
