"""HTTP "invoke" service: the models are loaded once, then every ``POST /invoke`` processes the case currently
in the input folder (grand-challenge's newer container mode, label ``org.grand-challenge.api-method=invoke``).

    hmvnet serve [--port 4743] [--host 127.0.0.1] [--input /input] [--output /output]

Endpoints (every body is JSON, never a traceback or an HTML page, errors included):

- ``GET /health``: 200 ``{"status": "ok"}`` once the models are loaded, 503 ``{"status": "loading"}`` before.
- ``POST /invoke``: processes ``--input`` into ``--output`` with the outputs profile of ``$HMVNET_OUTPUTS``;
  201 with the pipeline's result (output paths, timings in s, risk: higher = earlier relapse whatever the
  profile, rfs_value: what rfs.json got, t_stage/n_stage for hecktor2026), 422 for an unusable case
  (:class:`~hmvnet.errors.InputError`), 503 while loading or shutting down, 500 for anything else.

Closed by default: it binds 127.0.0.1 unless ``--host`` says otherwise (the container's entrypoint passes
``--host 0.0.0.0``, as the platform needs); when ``$HMVNET_SERVE_TOKEN`` is set, ``/invoke`` requires
``Authorization: Bearer <token>`` (401 otherwise). A ``Content-Length`` that is not a non-negative integer is a 400,
a body above 1 MiB a 413; every connection has a socket timeout (:data:`SOCKET_TIMEOUT_S`) and at most
:data:`MAX_CONNECTIONS` are served at once (503 beyond). SIGTERM during an invoke answers that client 503 before
the server exits.

The server is stdlib ``http.server`` (no extra dependency, nothing listens but this port), hardened as above
rather than replaced by FastAPI + uvicorn: the service has two endpoints and no payload. Requests are accepted on
threads so ``/health`` answers while a case runs, but cases run one at a time under a lock: the input and output
folders are shared and one case already uses the whole GPU.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from hmvnet.data.writers import json_ready
from hmvnet.errors import HMVNetError, InputError

log = logging.getLogger("hmvnet.app.serve")

DEFAULT_PORT = 4743
DEFAULT_HOST = "127.0.0.1"
ENV_TOKEN = "HMVNET_SERVE_TOKEN"
MAX_BODY_BYTES = 1 << 20  # /invoke takes no payload; a larger body is refused rather than read
SOCKET_TIMEOUT_S = 30.0
"""A client that sends nothing for this long (headers or a promised body) is disconnected."""
MAX_CONNECTIONS = 16
"""Connections served at once; more get an immediate 503 JSON and are closed."""
SHUTDOWN_GRACE_S = 10.0
"""On SIGTERM, how long the server waits for interrupted invokes to send their 503 before exiting."""


class CaseProcessor(Protocol):
    """What the service needs from :class:`hmvnet.app.pipeline.Pipeline`."""

    def process_case(self, input_dir: Path, output_dir: Path, outputs: str = "both") -> dict[str, Any]: ...


class InvokeService:
    """The state behind the endpoints: the pipeline (``None`` until loaded), the folders and the case lock.

    Args:
        input_dir: case folder in the grand-challenge layout, read afresh at every invocation.
        output_dir: where the outputs of each invocation are written.
        outputs: outputs profile passed to ``process_case`` (see :mod:`hmvnet.app.profiles`).
        pipeline: an already loaded pipeline (tests inject a fake one); else call :meth:`set_pipeline` later.
    """

    def __init__(
        self,
        input_dir: Path,
        output_dir: Path,
        outputs: str = "both",
        pipeline: CaseProcessor | None = None,
        token: str | None = None,
    ):
        self.input_dir = Path(input_dir)
        self.output_dir = Path(output_dir)
        self.outputs = outputs
        self.token = token or None
        """When set, ``/invoke`` requires ``Authorization: Bearer <token>``."""
        self._pipeline = pipeline
        self._case_lock = threading.Lock()
        self.cases_done = 0
        self.stopping = threading.Event()
        """Set on SIGTERM: running and new invokes answer 503."""
        self.invokes_active = 0
        self._active_lock = threading.Lock()

    def authorised(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value grants ``/invoke`` (always, without a token)."""
        if self.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    @property
    def ready(self) -> bool:
        return self._pipeline is not None

    def set_pipeline(self, pipeline: CaseProcessor) -> None:
        self._pipeline = pipeline

    def health(self) -> tuple[int, dict[str, Any]]:
        if self.ready:
            return HTTPStatus.OK, {"status": "ok"}
        return HTTPStatus.SERVICE_UNAVAILABLE, {"status": "loading"}

    def invoke(self) -> tuple[int, dict[str, Any]]:
        """Process the case in ``input_dir``; returns (HTTP status, JSON body)."""
        pipeline = self._pipeline
        if pipeline is None:
            return HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": "models are still loading; retry after GET /health is 200"
            }
        with self._active_lock:
            self.invokes_active += 1
        try:
            return self._invoke_locked(pipeline)
        finally:
            with self._active_lock:
                self.invokes_active -= 1

    def _invoke_locked(self, pipeline: CaseProcessor) -> tuple[int, dict[str, Any]]:
        stopping = {
            "error": "the server is shutting down (SIGTERM); the case was not finished",
            "type": "Shutdown",
        }
        with self._case_lock:
            if self.stopping.is_set():
                return HTTPStatus.SERVICE_UNAVAILABLE, stopping
            start = time.perf_counter()
            box: dict[str, Any] = {}
            done = threading.Event()

            def work() -> None:
                try:
                    box["result"] = pipeline.process_case(self.input_dir, self.output_dir, self.outputs)
                except Exception as exc:  # re-raised below, on the request's thread
                    box["error"] = exc
                finally:
                    done.set()

            threading.Thread(target=work, name="hmvnet-invoke", daemon=True).start()
            while not done.wait(0.1):
                if self.stopping.is_set():
                    log.warning("invoke interrupted by shutdown after %.1f s", time.perf_counter() - start)
                    return HTTPStatus.SERVICE_UNAVAILABLE, stopping
            try:
                if "error" in box:
                    raise box["error"]
                result = box["result"]
            except InputError as exc:
                log.error("invoke: unusable case in %s: %s", self.input_dir, exc)
                return HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc), "type": type(exc).__name__}
            except HMVNetError as exc:
                log.error("invoke failed: %s", exc)
                return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc), "type": type(exc).__name__}
            except (
                Exception
            ) as exc:  # any failure must become an error JSON; the traceback goes to the log only
                log.exception("invoke failed on %s", self.input_dir)
                return HTTPStatus.INTERNAL_SERVER_ERROR, {
                    "error": f"internal error while processing {self.input_dir}: {exc}",
                    "type": type(exc).__name__,
                }
            self.cases_done += 1
            body = json_ready(dict(result))
            body.setdefault("invoke_s", time.perf_counter() - start)
            return HTTPStatus.CREATED, body


class InvokeServer(ThreadingHTTPServer):
    """A threading HTTP server bound at construction (``port=0`` picks a free port: see ``server_address``),
    serving at most :data:`MAX_CONNECTIONS` connections at once."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], service: InvokeService, max_connections: int = MAX_CONNECTIONS
    ):
        self.service = service
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _refuse_busy(sock: socket.socket) -> None:
    body = json.dumps({"error": f"more than {MAX_CONNECTIONS} connections at once; retry later"}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.settimeout(1.0)
        sock.sendall(head.encode() + body)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    server: InvokeServer
    protocol_version = "HTTP/1.1"
    server_version = "hmvnet-serve"
    timeout = SOCKET_TIMEOUT_S  # socketserver sets it on the connection: no read can block forever

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line such as TLS bytes, unsupported method, headers too long) as
        JSON instead of its HTML page."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsable request line: answer with headers all the same
            self.request_version = "HTTP/1.1"
        try:
            reason = message or HTTPStatus(code).phrase
        except ValueError:
            reason = message or "error"
        self._send(code, {"error": reason[:300], "status": code})

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, socket.timeout):  # noqa: UP041  # socket.timeout is TimeoutError on 3.10+
            self.close_connection = True
            log.info("%s: connection timed out after %.0f s", self.address_string(), SOCKET_TIMEOUT_S)

    def _body_length(self) -> int | None:
        """The validated Content-Length (0 when absent), or ``None`` after answering 400/413."""
        raw = self.headers.get("Content-Length")
        values = self.headers.get_all("Content-Length") or []
        if raw is None:
            return 0
        text = raw.strip()
        if len(set(v.strip() for v in values)) > 1 or not text.isdigit() or not text.isascii():
            self.close_connection = True
            self._send(
                HTTPStatus.BAD_REQUEST, {"error": f"invalid Content-Length {raw!r}: expected an integer >= 0"}
            )
            return None
        length = int(text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body of {length} bytes; /invoke takes none"}
            )
            return None
        return length

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def do_GET(self) -> None:
        if self._path() == "/health":
            self._send(*self.server.service.health())
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        length = self._body_length()
        if length is None:
            return
        if length:  # the case comes from the input folder; drain the body (under the socket timeout)
            if len(self.rfile.read(length)) < length:
                self.close_connection = True
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"body shorter than Content-Length {length}"})
                return
        if self._path() != "/invoke":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {self.path}"})
        elif not self.server.service.authorised(self.headers.get("Authorization")):
            self._send(
                HTTPStatus.UNAUTHORIZED,
                {"error": f"/invoke requires Authorization: Bearer <token> (${ENV_TOKEN} is set)"},
                {"WWW-Authenticate": "Bearer"},
            )
        else:
            self._send(*self.server.service.invoke())

    def _not_allowed(self) -> None:
        self.close_connection = True
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"error": f"method {self.command} not allowed: GET /health, POST /invoke"},
            {"Allow": "GET, POST"},
        )

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _not_allowed

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def run(server: InvokeServer, loader: Callable[[], CaseProcessor], stop: threading.Event) -> None:
    """Serve on a background thread, load the pipeline (``/health`` is 503 meanwhile), then serve until ``stop``.

    A loader that raises shuts the server down and re-raises: a container without usable models must fail.
    """
    thread = threading.Thread(target=server.serve_forever, name="hmvnet-serve", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    log.info("listening on %s:%s; loading models", host, port)
    try:
        start = time.perf_counter()
        server.service.set_pipeline(loader())
        log.info("models loaded in %.1f s; ready (GET /health, POST /invoke)", time.perf_counter() - start)
        stop.wait()
        server.service.stopping.set()
        deadline = time.perf_counter() + SHUTDOWN_GRACE_S
        while server.service.invokes_active and time.perf_counter() < deadline:
            time.sleep(0.05)  # interrupted invokes send their 503 first
        time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        log.info("server stopped after %d case(s)", server.service.cases_done)


def cli_main(argv: list[str]) -> int:
    from hmvnet.app.parsers import default_outputs, serve_parser
    from hmvnet.app.profiles import PROFILES

    args = serve_parser().parse_args(argv)
    args.outputs = args.outputs or default_outputs()

    def load() -> CaseProcessor:
        from hmvnet.app.pipeline import Pipeline

        survival = PROFILES[args.outputs].needs_survival
        return Pipeline.load(args.weights, args.device, survival, folds=args.folds, tta=args.tta)

    token = os.environ.get(ENV_TOKEN, "").strip() or None
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "listening on %s without a token: set $%s to require one on /invoke", args.host, ENV_TOKEN
        )
    service = InvokeService(args.input, args.output, args.outputs, token=token)
    try:
        server = InvokeServer((args.host, args.port), service)
    except OSError as exc:
        raise InputError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    run(server, load, stop)
    return 0


if __name__ == "__main__":
    import sys

    from hmvnet.app.cli import run_cli

    os.environ.setdefault("MPLCONFIGDIR", "/tmp/hmvnet-matplotlib")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_cli(cli_main, sys.argv[1:]))
