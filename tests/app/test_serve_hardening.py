"""The invoke service under abuse: closed by default, bearer token, Content-Length validation, socket timeouts,
the connection cap, JSON for every error, 503 on SIGTERM during an invoke. Raw sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from hmvnet.app import serve
from hmvnet.app.serve import InvokeServer, InvokeService, run
from tests.app.test_serve import TIMEOUT_S, FakePipeline, serving
from tests.helpers import REPO


def raw(url: str, data: bytes, timeout: float = TIMEOUT_S) -> tuple[int, dict, bytes]:
    """Send ``data`` as is; (status, JSON body, raw header block)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = b""
        while b"\r\n\r\n" not in chunks:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks += chunk
        head, _, body = chunks.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(body) < length:
            body += sock.recv(65536)
    return int(head.split(b" ")[1]), json.loads(body), head


@pytest.fixture
def service(tmp_path):
    (tmp_path / "input").mkdir()
    return InvokeService(tmp_path / "input", tmp_path / "output", "survival", pipeline=FakePipeline())


def test_closed_by_default_and_the_container_opens_it_explicitly():
    assert serve.DEFAULT_HOST == "127.0.0.1"
    assert '"--host", "0.0.0.0"' in (REPO / "Dockerfile").read_text()


def test_bearer_token_is_required_on_invoke_only(tmp_path):
    (tmp_path / "input").mkdir()
    service = InvokeService(tmp_path / "input", tmp_path / "o", pipeline=FakePipeline(), token="s3cret")
    with serving(service) as url:
        assert raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
        status, body, head = raw(url, b"POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert status == 401 and "Bearer" in body["error"] and b"WWW-Authenticate: Bearer" in head
        wrong = b"POST /invoke HTTP/1.1\r\nAuthorization: Bearer nope\r\nContent-Length: 0\r\n\r\n"
        assert raw(url, wrong)[0] == 401
        right = b"POST /invoke HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: 0\r\n\r\n"
        assert raw(url, right)[0] == 201


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1e3", b"0x10", b"\xd9\xa3"])
def test_invalid_content_length_is_400_json(service, value):
    with serving(service) as url:
        status, body, _ = raw(url, b"POST /invoke HTTP/1.1\r\nContent-Length: " + value + b"\r\n\r\n")
        assert status == 400 and "Content-Length" in body["error"]
        assert service.cases_done == 0


def test_body_above_the_limit_is_413_unread(service):
    with serving(service) as url:
        status, body, _ = raw(url, b"POST /invoke HTTP/1.1\r\nContent-Length: 314572800\r\n\r\n")
        assert status == 413 and "takes none" in body["error"]


def test_a_promised_body_that_never_comes_times_out(service, monkeypatch):
    monkeypatch.setattr(serve._Handler, "timeout", 0.5)
    with serving(service) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as sock:
            sock.sendall(b"POST /invoke HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
            start = time.monotonic()
            leftover = sock.recv(65536)  # the server closes the connection after its timeout
            assert time.monotonic() - start < 5
        assert b"201" not in leftover and service.cases_done == 0
        assert raw(url, b"GET /health HTTP/1.1\r\n\r\n")[0] == 200


def test_connections_beyond_the_cap_get_503_json(service, monkeypatch):
    monkeypatch.setattr(serve._Handler, "timeout", 3.0)
    server = InvokeServer(("127.0.0.1", 0), service, max_connections=2)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    idle = [socket.create_connection(("127.0.0.1", server.server_address[1])) for _ in range(2)]
    try:
        time.sleep(0.2)
        status, body, _ = raw(url, b"GET /health HTTP/1.1\r\n\r\n")
        assert status == 503 and "connections at once" in body["error"]
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"PUT /invoke HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"DELETE / HTTP/1.1\r\n\r\n", 405),
        (b"BREW /pot HTTP/1.1\r\n\r\n", 501),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    ],
)
def test_every_error_is_json(service, request_bytes, status):
    with serving(service) as url:
        got, body, head = raw(url, request_bytes)
        assert got == status and "error" in body
        assert b"Content-Type: application/json" in head


def test_sigterm_during_invoke_answers_503_before_exit(tmp_path):
    (tmp_path / "input").mkdir()
    slow = FakePipeline(delay_s=30.0)
    server = InvokeServer(("127.0.0.1", 0), InvokeService(tmp_path / "input", tmp_path / "o"))
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(server, lambda: slow, stop), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    deadline = time.monotonic() + TIMEOUT_S
    while raw(url, b"GET /health HTTP/1.1\r\n\r\n")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    answer: list = []
    client = threading.Thread(
        target=lambda: answer.append(raw(url, b"POST /invoke HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))
    )
    client.start()
    time.sleep(0.5)
    stop.set()  # what the SIGTERM handler does
    client.join(TIMEOUT_S)
    thread.join(TIMEOUT_S)
    assert not thread.is_alive()
    assert answer and answer[0][0] == 503 and "shutting down" in answer[0][1]["error"]
