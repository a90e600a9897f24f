"""Hostile programs against the sandbox: each asserts containment and the verdict, then that it still works.

The threat model (docs/THREAT_MODEL.md) lists the attack classes; every class has a test here. A verdict
of `passed` for any of these programs would be a reward the code faked.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from roopik_rl_mcp.sandbox import BatchJob, Limits, isolation_level, run_batch, run_python
from roopik_rl_mcp.sandbox import isolation as iso
from tests.conftest import call, needs_level

ADD = "def add(a, b):\n    return a + b\n"
PASSING = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
FAILING = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 5\n"
LEVEL = isolation_level()
STRONG = LEVEL in ("bwrap", "netns+uid", "netns")
ROOT = os.geteuid() == 0


def still_serving() -> None:
    """After every attack: an ordinary correct program still passes and a wrong one still fails."""
    good, bad = run_batch([BatchJob(ADD, PASSING, "add", 5), BatchJob(ADD, FAILING, "add", 5)])
    assert good.passed and good.status == "passed", good
    assert bad.status == "failed" and not bad.passed, bad


def never_passed(result, *statuses: str) -> None:
    assert not result.passed, result
    assert result.status != "passed", result
    if statuses:
        assert result.status in statuses, result


def sandbox_uid_processes() -> set[int]:
    """Processes running as the sandbox's uid (65534 when the server is root) or the server's own
    sandboxed children: whatever a test leaves behind shows up here."""
    uid = 65534 if ROOT else os.getuid()
    me = os.getpid()
    out = set()
    for proc in psutil.process_iter(["uids", "pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue  # dead (bwrap's exited init waits for the machine's init to reap it)
            if proc.info["uids"] and proc.info["uids"].real == uid and proc.pid != me:
                out.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


# -- containment: files ------------------------------------------------------------------------------


def test_cannot_read_the_servers_home_data_dir_or_secrets(tmp_path, monkeypatch):
    home = tmp_path / "data"
    home.mkdir()
    secret = home / "secret.txt"
    secret.write_text("top-secret-token-4242")
    secret.chmod(0o600)
    monkeypatch.setenv("ROOPIK_RL_HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-leak-me")
    code = f"""
import json, os
found = {{}}
for path in [{str(secret)!r}, "/root/.bashrc", "/etc/shadow", "/proc/1/environ", "/proc/self/environ",
             {str(Path(__file__).resolve())!r}]:
    try:
        with open(path, errors="replace") as handle:
            found[path] = "READ " + handle.read(200)
    except OSError as exc:
        found[path] = type(exc).__name__
try:
    found["/root listing"] = sorted(os.listdir("/root"))
except OSError as exc:
    found["/root listing"] = type(exc).__name__
found["env"] = sorted(os.environ)
print(json.dumps(found))
"""
    result = run_python(code, "assert True", timeout_s=5)
    assert result.status == "passed", result
    found = json.loads(result.stdout)
    assert not found[str(secret)].startswith("READ")
    assert "OPENAI_API_KEY" not in found["env"] and "ROOPIK_RL_HOME" not in found["env"]
    assert "sk-never-leak-me" not in result.stdout and "top-secret-token-4242" not in result.stdout
    if LEVEL != "process":
        assert not found["/etc/shadow"].startswith("READ")
        assert not found["/root/.bashrc"].startswith("READ")
        assert ".bashrc" not in found["/root listing"] and ".gitconfig" not in found["/root listing"]
    assert not found["/proc/1/environ"].startswith("READ") or LEVEL in ("uid", "process")
    if LEVEL == "bwrap":
        assert not found[str(Path(__file__).resolve())].startswith("READ")  # the repository is not mounted
    still_serving()


@needs_level("bwrap", "netns+uid", "netns", "uid", why="at process the code runs as the server's user and writes "
             "wherever it may: as root, into /usr")
def test_cannot_write_outside_the_work_dir(tmp_path):
    target = tmp_path / "planted.txt"
    tmp_path.chmod(0o777)  # even a world-writable host directory stays out of reach
    code = f"""
import os
results = {{}}
for path in [{str(target)!r}, "/usr/planted.txt", "/etc/planted", "/planted", os.path.expanduser("~/planted")]:
    try:
        with open(path, "w") as handle:
            handle.write("x")
        results[path] = "wrote"
    except OSError as exc:
        results[path] = type(exc).__name__
with open("local.txt", "w") as handle:  # the work dir itself is writable
    handle.write("ok")
with open("/tmp/scratch.txt", "w") as handle:  # and so is the private /tmp
    handle.write("ok")
print(results)
"""
    result = run_python(code, "assert open('local.txt').read() == 'ok'", timeout_s=5)
    assert result.passed, result
    assert not target.exists()
    for path in ("/usr/planted.txt", "/etc/planted", "/planted"):
        assert not os.path.exists(path)
    assert "'/usr/planted.txt': 'wrote'" not in result.stdout
    still_serving()


def test_state_does_not_leak_between_tests_of_a_batch():
    """One worker: every test runs in the same slot, one after another, and each finds nothing of the last."""
    writer = ("import builtins, math, os\nopen('/tmp/leak', 'w').write('1')\nopen('leak', 'w').write('1')\n"
              "math.pi = 3\nbuiltins.LEAK = 1\nGLOBAL_LEAK = 1\n"
              "try:\n    open('/dev/shm/leak', 'w').write('1')\nexcept OSError:\n    pass\n"
              "wrote = os.path.exists('/tmp/leak') and os.path.exists('leak')\n")
    reader = ("import math, os\nimport builtins\n"
              "clean = not os.path.exists('/tmp/leak') and not os.path.exists('leak') and math.pi > 3.14 "
              "and not hasattr(builtins, 'LEAK') and 'GLOBAL_LEAK' not in globals() "
              "and not os.path.exists('/dev/shm/leak')\n")
    results = run_batch([BatchJob(writer, "assert wrote", None, 5), BatchJob(reader, "assert clean", None, 5)] * 3,
                        workers=1)
    assert [r.passed for r in results] == [True] * 6, results


def _fork_server_and_slots() -> tuple[list[psutil.Process], list[psutil.Process]]:
    """This test process's sandboxes, seen from outside: the fork servers, and their worker slots."""
    ours = [p for p in _live_children(psutil.Process(), recursive=True) if p.info["cmdline"][1:4] == ["-I", "-S", "-X"]]
    pids = {p.pid for p in ours}
    servers = [p for p in ours if p.ppid() not in pids]
    return servers, [child for server in servers for child in _live_children(server)]


def _mount_points(process: psutil.Process) -> collections.Counter:
    """A worker slot's mount table: how many mounts sit on each mount point."""
    try:
        lines = Path(f"/proc/{process.pid}/mountinfo").read_text().splitlines()
    except PermissionError:
        pytest.skip("cannot read another user's mount table here (not root)")
    return collections.Counter(line.split()[4] for line in lines)


@pytest.mark.skipif(not iso.current().pertest_namespaces, reason=f"no worker slots at {LEVEL} on this machine")
def test_a_worker_slot_keeps_its_tests_directories_mounted_and_leaves_no_mounts_behind():
    assert run_python("x = 1", "assert x == 1").passed  # the warm sandbox is up, its slots idle
    servers, slots = _fork_server_and_slots()
    assert slots
    before = {slot.pid: _mount_points(slot) for slot in slots}
    # Over what the fork server sees (the host's mounts too, below bwrap): one mount more on each, the slot's own
    # private /tmp, scratch dirs, devpts instance and empty /proc (bwrap's root has no /var/tmp to cover).
    server = _mount_points(servers[0])
    units = ["/tmp", "/proc", "/dev/pts", "/dev/shm"] + ([] if LEVEL == "bwrap" else ["/var/tmp"])
    assert all(table[unit] == server[unit] + 1 for table in before.values() for unit in units), (server, before)
    hostile = ("import os, pty\nopen('/tmp/x', 'w').write('x' * 1000)\nos.makedirs('/tmp/a/b/c')\n"
               "open('/dev/shm/x', 'w').write('x')\nmaster, follower = pty.openpty()\n")
    quiet = "x = sum(range(10))\n"
    results = run_batch([BatchJob(hostile, "assert True", None, 5), BatchJob(quiet, "assert x == 45", None, 5)] * 20)
    assert all(r.passed for r in results), results
    assert {slot.pid: _mount_points(slot) for slot in slots} == before
    still_serving()


CHANGES = {  # one way each to change what a test of the same slot could see next
    "chmod /tmp": "os.chmod('/tmp', 0o700)",
    "xattr /tmp": "os.setxattr('/tmp', 'user.leak', b'1')",
    "xattr work dir": "os.setxattr('.', 'user.leak', b'1')",
    "fifo in /dev/shm": "os.mkfifo('/dev/shm/leak')",
    "chmod /dev/shm": "os.chmod('/dev/shm', 0o700)",
    "chmod ptmx": "os.chmod('/dev/pts/ptmx', 0)",
    "deep tree in /tmp": "os.makedirs('/tmp/' + '/'.join(['d'] * 300))",
    "chmod work dir": "os.chmod('.', 0o777)",
    "replace work dir": "here = os.getcwd(); os.chdir('/'); os.rmdir(here); os.symlink('/', here)",
    "move work dir": "os.rename(os.getcwd(), '/tmp/moved')",
    "file in work dir": "open('left-behind', 'w').close()",
}
CHANGER = """
import os
{action}
print("changed")
"""
LOOKER = """
import os, stat
work = os.getcwd()
seen = {
    "work dir": (stat.S_ISDIR(os.lstat(work).st_mode), oct(os.lstat(work).st_mode & 0o7777), os.listdir(".")),
    "/tmp": (oct(os.stat("/tmp").st_mode & 0o7777), sorted(os.listdir("/tmp"))),
    "/dev/shm": (oct(os.stat("/dev/shm").st_mode & 0o7777), os.listdir("/dev/shm")),
    "ptmx": oct(os.stat("/dev/pts/ptmx").st_mode & 0o7777),
    "xattrs": os.listxattr("/tmp") + os.listxattr("."),
}
master, follower = os.openpty()
print(seen)
"""


@pytest.mark.skipif(not iso.current().pertest_namespaces, reason=f"no worker slots at {LEVEL} on this machine")
def test_each_change_a_test_makes_to_its_directories_is_undone_before_the_next_test_in_its_slot():
    """One worker: the tests share a slot, one after another. Whatever a test did to /tmp, its work dir,
    /dev/shm or /dev/pts (one kind of change per test, so that no change is undone only because another was
    seen), the next test finds them as the first test found them."""
    jobs = [BatchJob(LOOKER, "assert True", None, 5)]
    for action in CHANGES.values():
        jobs += [BatchJob(CHANGER.format(action=action), "assert True", None, 5),
                 BatchJob(LOOKER, "assert True", None, 5)]
    results = run_batch(jobs, workers=1)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    first = results[0].stdout
    assert "'work dir': (True, '0o700', [])" in first and "'/dev/shm': ('0o1777', [])" in first, first
    assert "'ptmx': '0o666'" in first and "'xattrs': []" in first, first
    for number, change in enumerate(CHANGES):
        changer, looker = results[1 + 2 * number], results[2 + 2 * number]
        assert changer.stdout.strip() == "changed", (change, changer)  # the change was made: something to find
        assert looker.stdout == first, (change, looker.stdout, first)


@pytest.mark.skipif(not iso.current().pertest_namespaces, reason=f"no worker slots at {LEVEL} on this machine")
def test_a_worker_slot_that_dies_fails_its_test_and_is_replaced():
    assert run_python("x = 1", "assert x == 1").passed
    _, slots_before = _fork_server_and_slots()
    outcome = {}
    sleeper = threading.Thread(target=lambda: outcome.update(
        result=run_python("import time\ntime.sleep(3)\n", "assert True", timeout_s=10)))
    sleeper.start()
    victims, deadline = [], time.monotonic() + 5
    while not victims and time.monotonic() < deadline:
        time.sleep(0.05)
        victims = [slot for slot in slots_before if _live_children(slot)]
    assert victims
    victims[0].kill()
    sleeper.join()
    never_passed(outcome["result"], "error")
    assert outcome["result"].errors[0].kind == "SandboxError"
    assert all(run_python("x = 1", "assert x == 1").passed for _ in range(2 * len(slots_before)))
    _, slots_after = _fork_server_and_slots()
    assert len(slots_after) == len(slots_before) and victims[0].pid not in {s.pid for s in slots_after}


LISTEN_ABSTRACT = """
import socket
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("\\0roopik-covert-{tag}")
server.listen(1)
server.settimeout(3)
try:
    peer, _ = server.accept()
    heard = peer.recv(100).decode()
except socket.timeout:
    heard = "nothing"
print("heard:", heard)
"""
CONNECT_ABSTRACT = """
import socket, time
outcome, deadline = "never tried", time.monotonic() + 2.5
while time.monotonic() < deadline:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect("\\0roopik-covert-{tag}")
        client.sendall(b"a message from another test")
        outcome = "connected"
        break
    except OSError as exc:
        outcome = type(exc).__name__
        time.sleep(0.05)
print("connect:", outcome)
"""


@pytest.mark.skipif(not iso.current().pertest_namespaces, reason=f"tests of a batch run one at a time at {LEVEL} on this machine (no worker slots)")
def test_concurrent_tests_cannot_talk_over_abstract_sockets_or_terminals():
    if not iso.current().hello.get("landlock"):
        pytest.skip("no Landlock scoping on this kernel (6.12+): abstract Unix sockets are a documented residual risk")
    # Two tests of one batch run at the same time in one network namespace: a listener and a client.
    listener, client = run_batch([BatchJob(LISTEN_ABSTRACT.format(tag="batch"), "assert True", None, 8),
                                  BatchJob(CONNECT_ABSTRACT.format(tag="batch"), "assert True", None, 8)], workers=2)
    assert listener.passed and client.passed, (listener, client)
    assert "heard: nothing" in listener.stdout, listener
    assert "connect: PermissionError" in client.stdout, client
    # A pseudo-terminal that one test writes to is not there for the other to open and read.
    writer = ("import os, time\nmaster, slave = os.openpty()\nos.write(master, b'pty-secret\\n')\n"
              "print('own pty:', os.ttyname(slave))\ntime.sleep(1.5)\n")
    reader = ("import os, time\ntime.sleep(0.4)\nseen = []\nfor name in os.listdir('/dev/pts'):\n"
              "    if name.isdigit():\n        fd = os.open('/dev/pts/' + name, os.O_RDONLY | os.O_NONBLOCK)\n"
              "        try:\n            seen.append(os.read(fd, 100))\n        except OSError:\n            pass\n"
              "print('read from ptys:', seen)\n")
    wrote, read = run_batch([BatchJob(writer, "assert True", None, 8), BatchJob(reader, "assert True", None, 8)],
                            workers=2)
    assert wrote.passed and "own pty: /dev/pts/" in wrote.stdout, wrote  # ptys still work inside a test
    assert read.passed and "read from ptys: []" in read.stdout, read
    assert "pty-secret" not in read.stdout
    still_serving()


def _live_children(process: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
    """Children that are alive, with their command lines read (zombies and processes gone are left out)."""
    alive = []
    for child in process.children(recursive=recursive):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                child.info = {"cmdline": child.cmdline()}
                alive.append(child)
        except psutil.Error:
            pass
    return alive


def _seccomp_status(pid: int) -> tuple[str, int]:
    fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    return fields["Seccomp"].strip(), int(fields.get("Seccomp_filters", "0"))


@pytest.mark.skipif(not iso.current().hello.get("seccomp"), reason=f"no seccomp filter at {LEVEL} on this machine")
def test_the_fork_server_runs_under_the_base_filter_and_tests_add_their_own():
    """Seen from outside, in /proc: the fork server is filtered (mode 2, one filter); each worker slot stacks
    its part on top (two filters), which its tests inherit; without slots a test process installs it."""
    sleeper = threading.Thread(target=run_python, args=("import time\ntime.sleep(2)\n", "assert True"),
                               kwargs={"timeout_s": 5})
    sleeper.start()
    servers: list[psutil.Process] = []
    slots: list[psutil.Process] = []
    tests: list[psutil.Process] = []
    deadline = time.monotonic() + 10
    while not tests and time.monotonic() < deadline:
        time.sleep(0.05)
        servers, children = _fork_server_and_slots()
        if iso.current().pertest_namespaces:
            slots = children
            tests = [child for slot in slots for child in _live_children(slot)]
        else:
            tests = children
    assert servers and tests, (servers, tests)
    assert _seccomp_status(servers[0].pid) == ("2", 1)
    for slot in slots:
        assert _seccomp_status(slot.pid) == ("2", 2)
    assert _seccomp_status(tests[0].pid) == ("2", 2)
    sleeper.join()
    still_serving()


@pytest.mark.skipif(not iso.current().pertest_namespaces, reason=f"no worker slots at {LEVEL} on this machine")
def test_a_test_can_neither_mount_nor_make_a_user_namespace():
    """A test shares its worker slot's mount namespace, one test at a time: it must not be able to change
    it (no capabilities), nor get capabilities back in a user namespace of its own (seccomp)."""
    code = ("import os, subprocess\n"
            "mount = subprocess.run(['mount', '-t', 'tmpfs', 'none', '/tmp'], capture_output=True)\n"
            "userns = subprocess.run(['unshare', '--user', 'true'], capture_output=True)\n"
            "lazy = subprocess.run(['umount', '-l', '/proc'], capture_output=True)\n"
            "print(mount.returncode, userns.returncode, lazy.returncode, os.listdir('/proc'))\n")
    result = run_python(code, "assert True", timeout_s=10)
    assert result.passed, result
    mount_rc, userns_rc, umount_rc, proc = result.stdout.split(" ", 3)
    assert mount_rc != "0" and userns_rc != "0" and umount_rc != "0" and proc.strip() == "[]", result.stdout
    still_serving()


# -- containment: network ----------------------------------------------------------------------------


def _listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


def _was_reached(listener: socket.socket) -> bool:
    """A completed connection waits in the backlog even if nobody called accept()."""
    listener.setblocking(False)
    try:
        connection, _ = listener.accept()
    except BlockingIOError:
        return False
    finally:
        listener.close()
    connection.close()
    return True


def test_no_network_not_even_loopback():
    listener = _listener()
    port = listener.getsockname()[1]
    code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "s.sendall(b'exfiltrated')\n")
    result = run_python(code, "assert True", timeout_s=5)
    assert not _was_reached(listener)
    never_passed(result, "error")
    assert result.errors[0].kind in ("OSError", "ConnectionRefusedError", "PermissionError")
    still_serving()


# -- containment: processes --------------------------------------------------------------------------


def test_fork_bomb_is_contained():
    still_serving()  # the warm sandbox is up (an earlier test may have replaced it): its processes are not leftovers
    before = sandbox_uid_processes()
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    started = time.monotonic()
    result = run_python(code, "assert True", timeout_s=1)
    assert time.monotonic() - started < 20
    never_passed(result, "timeout", "error")
    # Killed processes leave the table once the kernel has torn them down (a mount namespace's teardown
    # waits for an RCU grace period): wait for that, boundedly; anything that survives stays in the set.
    deadline = time.monotonic() + 5
    while sandbox_uid_processes() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_uid_processes() - before == set()
    still_serving()


def test_memory_bomb_in_many_processes_is_contained():
    code = ("import os\nfor _ in range(4):\n    if os.fork() == 0:\n        break\n"
            "chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))\n")
    result = run_python(code, "assert True", timeout_s=5, limits=Limits(memory_bytes=256 << 20))
    never_passed(result, "error", "timeout")
    still_serving()


def test_infinite_loop_that_swallows_every_exception_times_out():
    code = "def add(a, b):\n    while True:\n        try:\n            while True:\n                pass\n        except BaseException:\n            pass\n"
    result = run_python(code, PASSING, "add", timeout_s=1)
    never_passed(result, "timeout")
    still_serving()


def test_output_flood_is_capped_while_reading_and_killed():
    code = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n    sys.stderr.write('y' * 65536)\n"
    started = time.monotonic()
    result = run_python(code, "assert True", timeout_s=10)
    assert time.monotonic() - started < 8  # killed for its output long before the timeout
    never_passed(result, "error")
    assert result.errors[0].kind == "OutputLimitExceeded"
    assert "[truncated" in result.stdout and len(result.stdout) < 100_000 and len(result.stderr) < 100_000
    still_serving()


def test_escaping_processes_do_not_survive_the_test():
    marker = "31.41592"
    code = f"""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{marker}"])
    os._exit(0)
time.sleep(0.3)
"""
    result = run_python(code, "assert True", timeout_s=5)
    assert result.passed, result
    time.sleep(0.2)
    survivors = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]
    assert survivors == []
    still_serving()


def test_signalling_the_parent_or_everyone_is_never_a_pass():
    attacks = [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
        "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
        "import os, signal\nos.kill(1, signal.SIGKILL)\n",
    ]
    for attack in attacks:
        result = run_python(attack + ADD, FAILING, "add", timeout_s=3)
        never_passed(result)
    server_alive = psutil.Process(os.getpid()).is_running()
    assert server_alive
    still_serving()


# -- verdicts the code cannot fake -------------------------------------------------------------------


@pytest.mark.parametrize("exit_call", [
    "sys.exit(0)", "os._exit(0)", "raise SystemExit(0)", "os.kill(os.getpid(), signal.SIGKILL)",
    "os.kill(os.getpid(), signal.SIGTERM)", "signal.raise_signal(signal.SIGKILL)", "os.abort()",
])
def test_exiting_or_killing_itself_inside_the_tests_is_never_a_pass(exit_call):
    code = f"import os, sys, signal\ndef add(a, b):\n    if (a, b) == (2, 2):\n        {exit_call}\n    return a + b\n"
    result = run_python(code, FAILING, "add", timeout_s=3)
    never_passed(result)


def test_patching_builtins_is_never_a_pass():
    tests = "def check(candidate):\n    assert abs(candidate(1, 2)) == 99\n    assert len([candidate(1, 1)]) == 5\n"
    for patch in ("import builtins\nbuiltins.abs = lambda x: 99\nbuiltins.len = lambda x: 5\n",
                  "import builtins\nbuiltins.AssertionError = Exception\n",
                  "globals()['__builtins__'] = {'abs': lambda x: 99, 'len': lambda x: 5}\n",
                  "import builtins\ndef add(a, b):\n    builtins.abs = lambda x: 99\n    builtins.len = lambda x: 5\n    return a + b\n"):
        result = run_python(patch + (ADD if "def add" not in patch else ""), tests, "add", timeout_s=3)
        never_passed(result)


def test_replacing_any_builtin_is_caught_even_one_the_tests_never_name():
    # The end-of-run check compares every builtin with the pristine one (skipped only when the builtins
    # dict provably never changed): a replaced builtin the tests do not use still ends as Tampered.
    for patch in ("import builtins\nbuiltins.sorted = lambda *a, **k: []\n",
                  "import builtins\ndel builtins.zip\n",
                  "import builtins\ndef add(a, b):\n    builtins.print = len\n    return a + b\n"):
        result = run_python(patch + (ADD if "def add" not in patch else ""), PASSING, "add", timeout_s=3)
        never_passed(result, "error")
        assert any(e.kind == "Tampered" for e in result.errors), result
    # Honest code that adds a name to builtins, or replaces one and puts it back, is not tampering.
    for honest in ("import builtins\nbuiltins.MY_CONSTANT = 1\n",
                   "import builtins\noriginal = builtins.sorted\nbuiltins.sorted = None\nbuiltins.sorted = original\n"):
        assert run_python(honest + ADD, PASSING, "add", timeout_s=3).passed


def test_patching_modules_the_tests_use_is_never_a_pass():
    tests = "import math\ndef check(candidate):\n    assert math.isclose(candidate(1, 2), 99)\n"
    code = "import math\nmath.isclose = lambda *a, **k: True\n" + ADD
    never_passed(run_python(code, tests, "add", timeout_s=3))
    tests = "def check(candidate):\n    import math\n    assert math.fabs(candidate(1, 2)) == 99\n"
    code = "import sys, types\nfake = types.ModuleType('math')\nfake.fabs = lambda x: 99\nsys.modules['math'] = fake\n" + ADD
    never_passed(run_python(code, tests, "add", timeout_s=3))


def test_patching_the_test_functions_is_never_a_pass():
    # check() is replaced while it runs; test_* functions and a test helper are swapped for no-ops.
    code = "def add(a, b):\n    g = globals()\n    g['check'] = lambda c: None\n    g['test_b'] = lambda: None\n    g['close'] = lambda x, y: True\n    return a + b + 1\n"
    tests = ("def close(x, y):\n    return x == y\n"
             "def check(candidate):\n    assert close(candidate(1, 2), 3)\n    assert close(candidate(2, 2), 4)\n")
    never_passed(run_python(code, tests, "add", timeout_s=3))
    tests = "def test_a():\n    assert add(1, 2) == 3\ndef test_b():\n    assert add(2, 2) == 4\n"
    result = run_python(code, tests, timeout_s=3)
    never_passed(result)
    assert result.tests_passed == 0
    # A test class's failing method swapped for a passing one (or a no-op) while the tests run.
    swap = ("import sys\ndef add(a, b):\n    cls = sys.modules['solution'].__dict__.get('TestAdd')\n"
            "    if cls is not None:\n        cls.test_wrong = cls.test_sum\n        cls.test_other = lambda self: None\n"
            "    return a + b\n")
    tests = ("class TestAdd:\n    def test_sum(self):\n        assert add(1, 2) == 3\n"
             "    def test_wrong(self):\n        assert add(1, 2) == 4\n    def test_other(self):\n        assert False\n")
    result = run_python(swap, tests, timeout_s=3)
    never_passed(result)
    assert {t.id: t.status for t in result.tests}["TestAdd.test_wrong"] != "passed"


def test_reaching_the_harness_through_introspection_fails():
    probes = [
        "sys._getframe(1).f_locals",
        "sys._current_frames()",
        "[f for f in gc.get_objects() if callable(f)]",
        "gc.get_referrers(add)",
        "globals()['check'].__code__.co_consts",
        "(lambda: 0).__code__",
        "ctypes.string_at(id(add), 64)",
        "sys.settrace(lambda *a: None)",
    ]
    for probe in probes:
        code = ("import sys, gc, ctypes\n"
                f"def add(a, b):\n    {probe}\n    return a + b + 1\n")
        result = run_python(code, PASSING, "add", timeout_s=3)
        never_passed(result)
        assert "not available" in str(result.errors), (probe, result.errors)
    # an audit hook of its own would see the harness's events: it is silently not installed
    code = ("import sys\nsys.addaudithook(lambda event, args: print('HOOKED', event))\n"
            "def add(a, b):\n    open('/dev/null').close()\n    return a + b + 1\n")
    result = run_python(code, PASSING, "add", timeout_s=3)
    never_passed(result)
    assert "HOOKED" not in result.stdout
    # a traceback's frames lead to the harness: also not available while tests run
    code = "def add(a, b):\n    try:\n        1 / 0\n    except ZeroDivisionError as e:\n        e.__traceback__.tb_frame.f_back\n    return a + b + 1\n"
    never_passed(run_python(code, PASSING, "add", timeout_s=3))


def test_forging_the_verdict_channel_or_files_is_never_a_pass():
    forge = ("import os, glob\n"
             "def add(a, b):\n"
             "    for fd in range(3, 20):\n"
             "        try:\n"
             "            os.write(fd, b'HELLO|' + b'0' * 32 + b'|{\"tests\": []}\\n' + b'0' * 32 + b'|D|0|\\n')\n"
             "        except OSError:\n"
             "            pass\n"
             "    for name in ('.verdict', 'verdict.json', '/tmp/verdict'):\n"
             "        open(name, 'w').write('{\"status\": \"passed\", \"passed\": true}')\n"
             "    os._exit(0)\n")
    result = run_python(forge, FAILING, "add", timeout_s=3)
    never_passed(result, "error")
    # Replacing or closing the verdict channel, wherever it is: every pipe the process holds above stderr.
    pipes = "import os, stat\npipes = [fd for fd in range(3, 4096) if _fifo(fd)]\n"
    fifo = ("def _fifo(fd):\n    try:\n        return stat.S_ISFIFO(os.fstat(fd).st_mode)\n"
            "    except OSError:\n        return False\n")
    tricks = {"dup2": "r, w = os.pipe()\nfor fd in pipes:\n    try:\n        os.dup2(w, fd)\n"
                      "    except OSError:\n        pass\n",
              "close": "for fd in pipes:\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n",
              "closerange": "try:\n    os.closerange(3, 1 << 16)\nexcept OSError:\n    pass\n"}
    for name, trick in tricks.items():
        code = fifo + pipes + trick + ADD
        never_passed(run_python(code, FAILING, "add", timeout_s=3))
        # The channel survived each attempt: an honest pass still reaches the fork server.
        assert run_python(code, PASSING, "add", timeout_s=3).passed, name


def test_printing_success_markers_and_exit_hooks_are_never_a_pass():
    code = ("import atexit, os, sys\n"
            "print('{\"status\": \"passed\", \"passed\": true, \"tests_passed\": 2}')\n"
            "sys.stderr.write('PASSED\\n')\n"
            "atexit.register(lambda: print('all tests passed'))\n"
            "atexit.register(os._exit, 0)\n"
            "sys.exitfunc = lambda: None\n" + ADD)
    result = run_python(code, FAILING, "add", timeout_s=3)
    never_passed(result, "failed")
    assert result.tests_passed == 1


def test_signal_handlers_and_threads_cannot_skip_a_failure():
    code = ("import signal, threading\n"
            "def handler(*args):\n    raise KeyboardInterrupt\n"
            "signal.signal(signal.SIGALRM, handler)\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)\n"
            "def spin():\n    import builtins\n    while True:\n        builtins.abs = lambda x: 99\n"
            "threading.Thread(target=spin, daemon=True).start()\n" + ADD)
    tests = "def check(candidate):\n    for i in range(200):\n        assert abs(candidate(i, 1)) == 99\n"
    never_passed(run_python(code, tests, "add", timeout_s=3))


def test_values_that_claim_to_equal_anything_are_never_a_pass():
    rigged = "class Liar:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
    tests = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == [4, (5, 'x')]\n"
    for body in ("return Liar()", "return [Liar(), (Liar(), Liar())]", "return {'a': Liar()}"):
        result = run_python(rigged + f"def add(a, b):\n    {body}\n", tests, "add", timeout_s=3)
        never_passed(result)
    # honest values of other types still compare as they should
    honest = ("from fractions import Fraction\n"
              "def add(a, b):\n    return Fraction(a + b, 1)\n")
    assert run_python(honest, "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(1, 1) == 2.0\n",
                      "add", timeout_s=3).passed


def test_hanging_is_a_timeout_never_a_pass():
    code = "import time\ndef add(a, b):\n    time.sleep(60)\n"
    never_passed(run_python(code, PASSING, "add", timeout_s=1), "timeout")


# -- fallback levels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [lvl for lvl in iso.LEVELS if lvl != LEVEL and iso.available(lvl)])
def test_fallback_levels_still_cut_the_network_and_reap_escapees(level, monkeypatch):
    monkeypatch.setenv(iso.FORCE_ENV, level)
    iso.reset()
    try:
        assert isolation_level() == level
        listener = _listener()
        port = listener.getsockname()[1]
        result = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
                            "assert True", timeout_s=5)
        assert not _was_reached(listener)
        never_passed(result, "error")
        assert result.isolation == level
        # An abstract Unix socket of the server's (no network namespace at `uid` and `process`): Landlock's
        # scope keeps the code from connecting to it, where the kernel has it.
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tag = f"host-{os.getpid()}-{level}"
        host.bind(f"\0roopik-covert-{tag}")
        host.listen(1)
        outcome = run_python(CONNECT_ABSTRACT.format(tag=tag), "assert True", timeout_s=8)
        reached = _was_reached(host)
        if iso.current().hello.get("landlock") or level not in ("uid", "process"):
            assert not reached and "connect: connected" not in outcome.stdout, outcome
        marker = "27.1828"
        escape = (f"import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                  f"        os.execv('/bin/sleep', ['sleep', '{marker}'])\n    os._exit(0)\ntime.sleep(0.3)\n")
        assert run_python(escape, "assert True", timeout_s=5).passed
        time.sleep(0.2)
        assert [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]] == []
        still_serving()
    finally:
        monkeypatch.delenv(iso.FORCE_ENV)
        iso.reset()


# -- the server keeps serving --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_hostile_capture_feedback_calls_then_a_normal_one(client):
    hostile = [
        ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", "assert True", None),
        ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + ADD, FAILING, "add"),
        ("import sys\ndef add(a, b):\n    sys.exit(0)\n", FAILING, "add"),
        ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", "assert True", None),
    ]
    for code, tests, entry in hostile:
        out = await call(client, "capture_feedback", task="hostile", code=code, tests=tests, entry_point=entry,
                         timeout_s=2)
        assert out["passed"] is False and out["status"] != "passed"
        assert out["isolation"] == LEVEL
    out = await call(client, "capture_feedback", task="add", code=ADD, tests=PASSING, entry_point="add")
    assert out["passed"] is True and out["tests_passed"] == 2 and out["isolation"] == LEVEL


def test_a_killed_sandbox_fails_its_batch_without_hurting_the_server(monkeypatch):
    # Simulate the sandbox dying mid-batch: every unfinished job is an error, none is a pass.
    from roopik_rl_mcp.sandbox import wire

    real_popen = wire.subprocess.Popen

    def popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        threading.Timer(0.5, lambda: os.killpg(proc.pid, signal.SIGKILL)).start()
        return proc

    monkeypatch.setattr(wire.subprocess, "Popen", popen)
    results = run_batch([BatchJob("import time\ntime.sleep(3)\n", "assert True", None, 5)] * 2, workers=2)
    assert all(not r.passed and r.status == "error" for r in results)
    monkeypatch.undo()
    still_serving()


# unittest: its assert methods are library code the solution runs before the tests and could patch. Each attack
# here tries to turn TestAdd.test_wrong (add(2, 2) == 5: false for an honest add) into a pass.
UNITTEST_TESTS = """
import unittest

class TestAdd(unittest.TestCase):
    def test_right(self):
        self.assertEqual(add(1, 2), 3)

    def test_wrong(self):
        with self.subTest(case="two and two"):
            self.assertEqual(add(2, 2), 5)
"""
UNITTEST_PATCHES = {
    "assert method replaced": "import unittest\nunittest.TestCase.assertEqual = lambda *args, **kwargs: None\n",
    "helper function of the module replaced": (
        "import unittest.case\nunittest.case.TestCase._baseAssertEqual = lambda *args, **kwargs: None\n"
        "unittest.case.TestCase._getAssertEqualityFunc = lambda *args: (lambda *a, **k: None)\n"),
    "builtin shadowed in unittest's module": "import unittest.case\nunittest.case.isinstance = lambda *args: True\n",
    "hook added to TestCase": (
        "import unittest\n"
        "def quiet(cls, **kwargs):\n"
        "    cls.test_wrong = lambda self: None\n"
        "unittest.TestCase.__init_subclass__ = classmethod(quiet)\n"),
    "fake unittest module": (
        "import sys, types\nfake = types.ModuleType('unittest')\n"
        "class TestCase:\n"
        "    def __init__(self, name='runTest'):\n        pass\n"
        "    def __getattr__(self, name):\n        return lambda *args, **kwargs: None\n"
        "fake.TestCase = TestCase\nsys.modules['unittest'] = fake\n"),
    "context manager that swallows failures": (
        "import contextlib\ncontextlib._GeneratorContextManager.__exit__ = lambda self, *exc: True\n"),
    "test method replaced while a test runs": (
        "_done = []\n"
        "def add(a, b):\n"
        "    if not _done:\n"
        "        _done.append(1)\n"
        "        globals()['TestAdd'].test_wrong = lambda self: None\n"
        "    return a + b\n"),
    "defaults of an assert method changed": (
        "import unittest\nunittest.TestCase.assertAlmostEqual.__defaults__ = (None, None, 10.0)\n"),
}


@pytest.mark.parametrize("patch", UNITTEST_PATCHES.values(), ids=list(UNITTEST_PATCHES))
def test_patching_unittest_never_turns_a_failing_test_into_a_pass(patch):
    code = ("def add(a, b):\n    return a + b\n" if "def add" not in patch else "") + patch
    result = run_python(code, UNITTEST_TESTS)
    never_passed(result, "error", "failed")
    statuses = {t.id: t.status for t in result.tests}
    assert statuses.get("TestAdd.test_wrong") != "passed", result
    still_serving()


def test_a_solution_raising_skiptest_does_not_skip_its_way_to_a_pass():
    code = "import unittest\ndef add(a, b):\n    if (a, b) == (2, 2):\n        raise unittest.SkipTest('hard')\n    return a + b\n"
    result = run_python(code, UNITTEST_TESTS)
    never_passed(result, "failed")
    assert {t.id: t.status for t in result.tests} == {"TestAdd.test_right": "passed", "TestAdd.test_wrong": "error"}


def test_patching_unittest_mock_never_fakes_a_call_the_tests_expect():
    tests = ("import unittest\nfrom unittest import mock\n\nclass TestNotify(unittest.TestCase):\n"
             "    def test_notifies(self):\n        hook = mock.Mock()\n        notify(hook)\n"
             "        hook.assert_called_once_with('done')\n")
    lazy = "def notify(hook):\n    pass\n"
    honest = run_python(lazy, tests)
    assert honest.status == "failed" and honest.tests[0].status == "failed", honest
    patch = ("import unittest.mock\n"
             "unittest.mock.NonCallableMock.assert_called_once_with = lambda *args, **kwargs: None\n")
    never_passed(run_python(patch + lazy, tests), "error")
