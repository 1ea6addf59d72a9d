"""HTTP "invoke" service: the models are loaded once, then every ``POST /invoke`` processes the case currently
in the input folder (grand-challenge's newer container mode, label ``org.grand-challenge.api-method=invoke``).

    hmvnet serve [--port 4743] [--host 0.0.0.0] [--input /input] [--output /output]

Endpoints (every body is JSON, never a traceback):

- ``GET /health``: 200 ``{"status": "ok"}`` once the models are loaded, 503 ``{"status": "loading"}`` before.
- ``POST /invoke``: processes ``--input`` into ``--output`` with the outputs profile of ``$HMVNET_OUTPUTS``;
  201 with the pipeline's result (output paths, timings in s, risk: higher = earlier relapse whatever the
  profile, rfs_value: what rfs.json got, t_stage/n_stage for hecktor2026), 422 for an
  unusable case (:class:`~hmvnet.errors.InputError`), 503 while loading, 500 for anything else.

The server is stdlib ``http.server`` (no extra dependency, nothing listens but this port). Requests are
accepted on threads so ``/health`` answers while a case runs, but cases run one at a time under a lock: the
input and output folders are shared and one case already uses the whole GPU.
"""

from __future__ import annotations

import json
import logging
import signal
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
MAX_BODY_BYTES = 1 << 20  # /invoke takes no payload; a larger body is refused rather than read


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
        self, input_dir: Path, output_dir: Path, outputs: str = "both", pipeline: CaseProcessor | None = None
    ):
        self.input_dir = Path(input_dir)
        self.output_dir = Path(output_dir)
        self.outputs = outputs
        self._pipeline = pipeline
        self._case_lock = threading.Lock()
        self.cases_done = 0

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
        with self._case_lock:
            start = time.perf_counter()
            try:
                result = pipeline.process_case(self.input_dir, self.output_dir, self.outputs)
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
    """A threading HTTP server bound at construction (``port=0`` picks a free port: see ``server_address``)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: InvokeService):
        self.service = service
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: InvokeServer
    protocol_version = "HTTP/1.1"
    server_version = "hmvnet-serve"

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def do_GET(self) -> None:
        if self._path() == "/health":
            self._send(*self.server.service.health())
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body of {length} bytes; /invoke takes none"}
            )
            return
        if length:
            self.rfile.read(
                length
            )  # the case comes from the input folder; drain the body to keep the connection sane
        if self._path() == "/invoke":
            self._send(*self.server.service.invoke())
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {self.path}"})

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

    service = InvokeService(args.input, args.output, args.outputs)
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

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_cli(cli_main, sys.argv[1:]))
