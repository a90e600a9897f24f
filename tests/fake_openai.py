"""A real HTTP server on 127.0.0.1 that speaks enough of the OpenAI chat API to stand in for a model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Raw:
    """A scripted HTTP answer instead of a normal completion: any status, headers and body, optionally slow."""

    status: int = 200
    body: bytes | str | dict = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    trickle_s: float = 0.0  # pause before each byte of the body


class FakeOpenAI:
    """`reply(request_json) -> str | Raw` decides the answer; every request is kept for asserts."""

    def __init__(self, reply: Callable[[dict], str | Raw]) -> None:
        self.reply = reply
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.requests.append(body)
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                message = outer.reply(body)
                if isinstance(message, Raw):
                    self._raw(message)
                    return
                payload = json.dumps({
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": message}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _raw(self, raw: Raw) -> None:
                time.sleep(raw.delay_s)
                body = raw.body if isinstance(raw.body, bytes) else (
                    raw.body.encode() if isinstance(raw.body, str) else json.dumps(raw.body).encode())
                self.send_response(raw.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for name, value in raw.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    if not raw.trickle_s:
                        self.wfile.write(body)
                        return
                    for byte in body:
                        time.sleep(raw.trickle_s)
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
