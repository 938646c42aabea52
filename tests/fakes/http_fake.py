"""The HTTP half every fake platform API shares.

A `ThreadingHTTPServer` on 127.0.0.1, port 0, in a daemon thread. Each request is logged
(`requests`), then scripted faults are applied (`script`): an HTTP error with a body and
headers (429 with Retry-After, 5xx ...), a slow answer, or a dropped connection (the
socket closed with no answer). Subclasses implement `handle()`.

The clock (for pauses and rate windows) is injected so a test can share one fake clock
between the fake API and the code under test; slow answers sleep for real.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

Clock = Callable[[], float]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Fault:
    """What to do instead of answering: `reply` (an error), `delay` seconds, or `drop`."""

    reply: Reply | None = None
    delay: float = 0.0
    drop: bool = False
    path: str = ""  # only requests whose path starts with this


class FakeHttpApi:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or time.monotonic
        self.requests: list[Request] = []
        self.lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def script(self, *faults: Fault) -> None:
        with self.lock:
            self._faults.extend(faults)

    def handle(self, request: Request) -> Reply:
        raise LookupError(request.path)  # subclasses answer

    def scripted(self, request: Request, reply: Reply) -> None:
        """Called when a scripted reply answers `request` (e.g. to start a pause)."""

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if path.startswith(fault.path):
                    self._faults.remove(fault)
                    return fault
        return None


def _handler_for(api: FakeHttpApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on keep-alive
        wbufsize = 64 * 1024  # headers and body leave in one write

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            request = Request(
                self.command, parts.path, parse_qs(parts.query),
                {k.lower(): v for k, v in self.headers.items()}, body, api.clock(),
            )
            with api.lock:
                api.requests.append(request)
            fault = api.take_fault(parts.path)
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.drop:
                self.close_connection = True
                return
            if fault is not None and fault.reply is not None:
                reply = fault.reply
                api.scripted(request, reply)
            else:
                reply = api.handle(request)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            data = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    return Handler


def header(request: Request, name: str) -> str:
    return request.headers.get(name.lower(), "")


def first(query: Mapping[str, list[str]], name: str, default: str = "") -> str:
    values = query.get(name)
    return values[0] if values else default
