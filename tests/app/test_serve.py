"""The HTTP invoke service with a fake pipeline: health before/after loading, one case per POST, error bodies,
cases serialised by the lock. Servers bind 127.0.0.1 on an ephemeral port and are always shut down."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from hmvnet.app.serve import InvokeServer, InvokeService, run
from hmvnet.errors import InputError, WeightsError
from tests.helpers import REPO

TIMEOUT_S = 10.0


class FakePipeline:
    """Writes a marker file per case and returns paths and timings like ``Pipeline.process_case``."""

    def __init__(self, error: Exception | None = None, delay_s: float = 0.0):
        self.error = error
        self.delay_s = delay_s
        self.calls: list[tuple[Path, Path, str]] = []
        self.active = 0
        self.max_active = 0
        self._count_lock = threading.Lock()

    def process_case(self, input_dir: Path, output_dir: Path, outputs: str = "both") -> dict:
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay_s)
            self.calls.append((Path(input_dir), Path(output_dir), outputs))
            if self.error is not None:
                raise self.error
            out = Path(output_dir) / "rfs.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            n_inputs = len(list(Path(input_dir).iterdir()))
            out.write_text(json.dumps(0.25 * n_inputs))
            return {"rfs": out, "risk": 0.25 * n_inputs, "total_s": 0.5, "nan_metric": float("nan")}
        finally:
            with self._count_lock:
                self.active -= 1


def request(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, json.loads(body)


@contextmanager
def serving(service: InvokeService):
    """The server on a free local port in a thread; yields its base URL; always shut down."""
    server = InvokeServer(("127.0.0.1", 0), service)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)
        assert not thread.is_alive()


@pytest.fixture
def case_dirs(tmp_path):
    inp, out = tmp_path / "input", tmp_path / "output"
    (inp / "images").mkdir(parents=True)
    (inp / "ehr.json").write_text("{}")
    return inp, out


def test_health_503_until_loaded_then_invoke_writes_outputs(case_dirs):
    inp, out = case_dirs
    fake = FakePipeline()
    service = InvokeService(inp, out, outputs="survival")
    with serving(service) as url:
        assert request(f"{url}/health") == (503, {"status": "loading"})
        status, body = request(f"{url}/invoke", "POST")
        assert status == 503 and "loading" in body["error"]
        assert fake.calls == []

        service.set_pipeline(fake)
        assert request(f"{url}/health") == (200, {"status": "ok"})
        status, body = request(f"{url}/invoke", "POST", data=b"{}")
        assert status == 201
    assert fake.calls == [(inp, out, "survival")]
    assert body["rfs"] == str(out / "rfs.json")
    assert body["risk"] == 0.5  # two entries in the input folder
    assert body["nan_metric"] is None  # strict JSON: no NaN token
    assert body["total_s"] == 0.5 and body["invoke_s"] >= 0.0
    assert json.loads((out / "rfs.json").read_text()) == 0.5
    assert service.cases_done == 1


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InputError("no .mha in /input/images/pet (found: notes.txt)"), 422, "InputError"),
        (WeightsError("weight file fold0.safetensors is missing"), 500, "WeightsError"),
        (ZeroDivisionError("division by zero"), 500, "ZeroDivisionError"),
    ],
)
def test_invoke_errors_are_json_without_traceback(case_dirs, error, status, kind):
    inp, out = case_dirs
    service = InvokeService(inp, out, pipeline=FakePipeline(error=error))
    with serving(service) as url:
        got_status, body = request(f"{url}/invoke", "POST")
        assert request(f"{url}/health") == (200, {"status": "ok"})  # still serving after a failed case
    assert got_status == status
    assert body["type"] == kind
    assert str(error) in body["error"]
    assert "Traceback" not in json.dumps(body)
    assert service.cases_done == 0


def test_unknown_paths_are_404(case_dirs):
    service = InvokeService(*case_dirs, pipeline=FakePipeline())
    with serving(service) as url:
        assert request(f"{url}/nope")[0] == 404
        assert request(f"{url}/health", "POST")[0] == 404
        assert request(f"{url}/invoke")[0] == 404


def test_concurrent_invokes_run_one_at_a_time_while_health_answers(case_dirs):
    fake = FakePipeline(delay_s=0.3)
    service = InvokeService(*case_dirs, pipeline=fake)
    results: list[int] = []
    with serving(service) as url:
        workers = [
            threading.Thread(target=lambda: results.append(request(f"{url}/invoke", "POST")[0]))
            for _ in range(3)
        ]
        for w in workers:
            w.start()
        time.sleep(0.1)
        start = time.perf_counter()
        assert request(f"{url}/health")[0] == 200
        assert time.perf_counter() - start < 0.25  # not queued behind the running case
        for w in workers:
            w.join(TIMEOUT_S)
    assert results == [201, 201, 201]
    assert fake.max_active == 1
    assert len(fake.calls) == 3


def test_run_loads_once_then_serves_until_stopped(case_dirs):
    fake = FakePipeline()
    release, stop = threading.Event(), threading.Event()
    loads = []

    def loader():
        loads.append(1)
        assert release.wait(TIMEOUT_S)
        return fake

    server = InvokeServer(("127.0.0.1", 0), InvokeService(*case_dirs))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=run, args=(server, loader, stop), daemon=True)
    thread.start()
    try:
        assert request(f"{url}/health")[0] == 503
        release.set()
        deadline = time.monotonic() + TIMEOUT_S
        while request(f"{url}/health")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert request(f"{url}/invoke", "POST")[0] == 201
        assert request(f"{url}/invoke", "POST")[0] == 201
    finally:
        release.set()
        stop.set()
        thread.join(TIMEOUT_S)
    assert not thread.is_alive()
    assert loads == [1] and len(fake.calls) == 2
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/health", timeout=2)


def test_run_reraises_a_failed_load_and_closes_the_port(case_dirs):
    def loader():
        raise WeightsError("segmentation weights missing: expected weights/segmentation/config.json")

    server = InvokeServer(("127.0.0.1", 0), InvokeService(*case_dirs))
    port = server.server_address[1]
    with pytest.raises(WeightsError, match=r"config\.json"):
        run(server, loader, threading.Event())
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_cli_rejects_unknown_outputs_profile():
    from hmvnet.app.serve import cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(["--outputs", "everything", "--port", "0"])
    assert exc.value.code == 2


# --- scripts/compare_outputs.py (the container test's checker), on synthetic outputs with known answers ---


def _load_compare_outputs():
    import importlib.util

    path = REPO / "scripts" / "compare_outputs.py"
    spec = importlib.util.spec_from_file_location("compare_outputs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_case_outputs(root: Path, labels, risk, spacing=(0.98, 0.98, 3.0), origin=(-120.0, -90.5, 30.0)):
    import numpy as np
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(labels, dtype=np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    seg = root / "images" / "tumor-lymph-node-segmentation" / "output.mha"
    seg.parent.mkdir(parents=True)
    sitk.WriteImage(image, str(seg), True)
    if risk is not None:
        (root / "rfs.json").write_text(json.dumps(risk))


@pytest.fixture
def expected_outputs(tmp_path):
    import numpy as np

    labels = np.zeros((10, 20, 20), np.uint8)
    labels[2:8, 5:15, 5:15] = 1  # GTVp: 600 voxels
    labels[4:6, 16:19, 16:19] = 2  # GTVn: 18 voxels
    _write_case_outputs(tmp_path / "expected", labels, -0.396)
    return tmp_path, labels


def test_compare_outputs_accepts_a_match_and_reports_each_mismatch(expected_outputs, capsys):
    co = _load_compare_outputs()
    tmp, labels = expected_outputs
    _write_case_outputs(tmp / "same", labels, -0.396 + 5e-5)
    assert co.main([str(tmp / "same"), str(tmp / "expected")]) == 0

    moved = labels.copy()
    moved[2:8, 5:15, 5] = 0  # 60 of 600 GTVp voxels lost: Dice = 2*540/1140 = 0.947
    _write_case_outputs(tmp / "dice", moved, -0.396)
    problems = co.compare(tmp / "dice", tmp / "expected")
    assert len(problems) == 1 and "GTVp Dice 0.94737" in problems[0]

    _write_case_outputs(tmp / "grid", labels, -0.396, origin=(-120.0, -90.5, 33.0))
    problems = co.compare(tmp / "grid", tmp / "expected")
    assert len(problems) == 1 and "origin" in problems[0]

    _write_case_outputs(tmp / "risk", labels, -0.39)
    problems = co.compare(tmp / "risk", tmp / "expected")
    assert len(problems) == 1 and "rfs.json" in problems[0]

    _write_case_outputs(tmp / "norisk", labels, None)
    assert co.main([str(tmp / "norisk"), str(tmp / "expected")]) == 1
    assert "rfs.json: output missing" in capsys.readouterr().out


def test_compare_outputs_segmentation_only_requires_rfs_absent(expected_outputs):
    co = _load_compare_outputs()
    tmp, labels = expected_outputs
    seg = "images/tumor-lymph-node-segmentation/output.mha"
    _write_case_outputs(tmp / "seg", labels, None)
    assert co.main([str(tmp / "seg"), str(tmp / "expected"), "--files", seg, "--absent", "rfs.json"]) == 0
    _write_case_outputs(tmp / "both", labels, -0.396)
    assert co.main([str(tmp / "both"), str(tmp / "expected"), "--files", seg, "--absent", "rfs.json"]) == 1
