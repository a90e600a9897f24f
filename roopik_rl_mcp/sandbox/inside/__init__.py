"""What runs *inside* the sandbox: the fork server, its worker slots, and each test process's harness.

Stdlib only. The server never imports these modules to run code: `bundle.py` compiles them, once per
server process, into one marshalled payload, and the sandbox's `-I -S` interpreter reads it from stdin and
installs the modules (in the order `bundle.MODULES` gives) before the fork server starts and long before any
untrusted code exists. The fork server is single-threaded, so forking from it is safe. Protocol on its
standard streams (after the payload):

  stdin   one line of JSON config; then one JSON job per line; EOF means "no more jobs".
  stdout  first line: {"hello": {...}} (what this sandbox can do); then one JSON result per job, in any order.

The modules, each with one job (docs/THREAT_MODEL.md says which defence lives where):

  snapshots       preloaded stdlib modules and the pristine copies of them and of builtins (tamper checks)
  kernel          libc, the system-call constants, clone(2) into namespaces, the verdict descriptor's number
  seccomp         the seccomp filter (classic BPF) and its installation
  testdirs        a worker slot's namespaces and the per-test directories it checks and mounts afresh
  confinement     what a test process does to itself before its code runs: capabilities, Landlock, rlimits
  placeholders    the constants that stand for the harness's helpers in compiled tests, and their substitution
  rewrite_source  the source-level rewrite of `assert` statements (most tests: HumanEval's check functions)
  rewrite_ast     the AST rewrite for what that one cannot take (test functions and classes, unittest)
  tests_compiler  compiling a job's tests once per distinct source, and what they depend on
  harness         the helpers the rewritten tests call and the audit hook, run in the test process
  verdict         the fork server's reading of a test's records and output into a verdict
  slots           dispatch through worker slots (a user and mount namespace each, a pid namespace per test)
  flat            dispatch where the kernel allows no worker slots: one test at a time, forked from here
  dispatch        the fork server: jobs in, tests out to a dispatcher, verdicts back; `main`

Per job, the fork server (trusted: it never runs, nor even parses, the code under test) rewrites the tests so
each `assert` is its own test (once per distinct tests source) and hands the job to an idle worker slot (see
slots.py). The slot clones the test process into a fresh pid namespace, where it is pid 1; the test process
drops every capability, applies the rlimits, a Landlock scope and a seccomp filter, compiles the solution and
runs it. When it ends, or is killed, the kernel kills everything else in its pid namespace.

Verdicts: the test process reports over a private pipe (kernel.RECORD_FD, 1023) in records that start with a
per-test key it created before any untrusted code ran. The rewritten tests call helpers that are embedded as
*constants* of the test code objects, not names in any namespace, and the helpers hold the key. An audit hook
installed right before the code runs refuses everything that could reach those constants (frames, code
objects, gc traversal, ctypes, tracing), /proc is empty, and the seccomp filter forbids replacing RECORD_FD. A
test is passed only when its own `passed` record arrived, no failure did, the harness's final record arrived,
and the process exited 0. Everything else is failed, error or timeout.
"""
