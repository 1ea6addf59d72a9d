#!/usr/bin/env python
"""Red-team run: hostile and broken inputs against the image readers, ehr.json, ``process.py``, ``hmvnet predict``
and ``hmvnet serve``, each in a subprocess under an address-space limit (``resource.setrlimit(RLIMIT_AS)``) and a
wall-clock limit; prints a pass/fail table with each case's peak RSS (``os.wait4``) and time, and writes it to
``docs/redteam.md``.

    PYTHONPATH=. python tests/redteam.py [--out docs/redteam.md]

A case passes when the expected behaviour is met (valid outputs, or exit 2 with one line naming the file and the
problem, no traceback), within :data:`CASE_LIMIT_S`; the bombs must also stay below :data:`BOMB_RSS_LIMIT_MIB`.
Process-level cases use tiny segmentation weights trained at the start (about 30 s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import hostile  # noqa: E402

CASE_LIMIT_S = 60.0
READER_AS_BYTES = 2 << 30
"""Address-space limit of the reader-only cases (no torch): 2 GiB."""
PROCESS_AS_BYTES = 16 << 30
"""Address-space limit of process.py / serve runs: torch reserves several GiB of virtual memory at import."""
BOMB_RSS_LIMIT_MIB = 1024.0


@dataclass
class Outcome:
    name: str
    passed: bool
    detail: str
    seconds: float
    peak_mib: float


LAUNCHER = (
    "import os, resource, sys\n"
    "limit, report, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]\n"
    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(cmd[0], cmd)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "open(report, 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)\n"
)
"""A small launcher between this process and the case: a child's ru_maxrss starts at its parent's RSS at fork,
so forking the case from this (large) process would overstate its peak."""


def run_limited(
    cmd: list[str], as_bytes: int, timeout: float = CASE_LIMIT_S, env: dict | None = None
) -> tuple[int, str, float, float]:
    """(exit code, stderr + stdout, seconds, peak RSS MiB) of ``cmd`` under RLIMIT_AS and a timeout (-9 if hit)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log, tempfile.NamedTemporaryFile(suffix=".rss") as report:
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, str(as_bytes), report.name, *cmd],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})  # fmt: skip
        try:
            rc = proc.wait(timeout)
            rc = rc - 256 if rc > 128 else rc
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = -9
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
        raw = Path(report.name).read_text().strip()
    peak = int(raw) / 1024 if raw else float("nan")
    return rc, text, time.perf_counter() - start, peak


def one_line_error(rc: int, text: str, needle: str) -> tuple[bool, str]:
    errors = [line for line in text.splitlines() if "ERROR" in line or line.startswith("error:")]
    ok = rc == 2 and "Traceback" not in text and any(needle in line for line in errors)
    return ok, (
        errors[-1][-160:] if errors else text.strip().splitlines()[-1][-160:] if text.strip() else f"rc={rc}"
    )


READ_SNIPPET = (
    "import sys, logging; logging.basicConfig(level=logging.WARNING);"
    "from hmvnet.app.cli import run_cli; from hmvnet.data.cases import read_gc_case;"
    "sys.exit(run_cli(lambda a: print(read_gc_case(a[0]).warnings) or 0, sys.argv[1:]))"
)


def gc_layout(
    root: Path, ct_writer: Callable[[Path], Path] | None = None, source: Path | None = None
) -> Path:
    """A grand-challenge input folder: CT from ``ct_writer(folder)`` or copied from ``source`` (a tiny cohort)."""
    (root / "images" / "ct").mkdir(parents=True)
    (root / "images" / "pet").mkdir(parents=True)
    assert source is not None
    case = next((source / "Task 1").iterdir())
    for sub, suffix in (("ct", "__CT"), ("pet", "__PT")):
        image = sitk.ReadImage(str(case / f"{case.name}{suffix}.nii.gz"))
        sitk.WriteImage(image, str(root / "images" / sub / f"{sub}.mha"), useCompression=True)
    if ct_writer is not None:
        (root / "images" / "ct" / "ct.mha").unlink()
        ct_writer(root / "images" / "ct")
    (root / "ehr.json").write_text(json.dumps({"Age": 60}))
    return root


def reader_case(name: str, folder: Path, needle: str, expect_ok: bool = False, bomb: bool = False) -> Outcome:
    rc, text, seconds, peak = run_limited([sys.executable, "-c", READ_SNIPPET, str(folder)], READER_AS_BYTES)
    if expect_ok:
        passed, detail = (
            rc == 0 and needle in text,
            text.strip().splitlines()[-1][-160:] if text.strip() else "",
        )
    else:
        passed, detail = one_line_error(rc, text, needle)
    if bomb and peak >= BOMB_RSS_LIMIT_MIB:
        passed, detail = False, f"peak {peak:.0f} MiB >= {BOMB_RSS_LIMIT_MIB:.0f}; {detail}"
    return Outcome(name, passed and seconds < CASE_LIMIT_S, detail, seconds, peak)


def reader_cases(tmp: Path, cohort: Path) -> list[Outcome]:
    out = []
    bombs = [
        ("compressed .mha claiming 800x800x600 (4 KB stream)", lambda d: hostile.compressed_bomb(d / "ct.mha"), "claims size"),
        ("306-byte .mha claiming 1000^3", lambda d: hostile.header_only_bomb(d / "ct.mha"), "claims size"),
        ("compressed .mha 400x400x300, 4 KB (ratio)", lambda d: hostile.compressed_bomb(d / "ct.mha", (400, 400, 300)), "truncated or forged"),
        ("uncompressed header 256^3, no data", lambda d: hostile.header_only_bomb(d / "ct.mha", (256, 256, 256)), "truncated"),
    ]  # fmt: skip
    for i, (name, writer, needle) in enumerate(bombs):
        out.append(reader_case(name, gc_layout(tmp / f"bomb{i}", writer, cohort), needle, bomb=True))
    out.append(
        reader_case(
            "ElementDataFile is a FIFO",
            gc_layout(tmp / "fifo", lambda d: hostile.fifo_data_file(d), cohort),
            "not a regular file",
        )
    )
    out.append(reader_case("ElementDataFile absolute path outside", gc_layout(tmp / "abs", lambda d: hostile.outside_data_file(d, tmp / "secret.raw"), cohort), "outside its folder"))  # fmt: skip

    def symlinked(folder: Path) -> Path:
        target = tmp / "outside.mha"
        sitk.WriteImage(sitk.ReadImage(str(next((tmp / "abs").rglob("pet.mha")))), str(target))
        (folder / "ct.mha").symlink_to(target)
        return folder / "ct.mha"

    out.append(reader_case("CT symlink leaving the input folder", gc_layout(tmp / "link", symlinked, cohort), "outside the input folder"))  # fmt: skip
    out.append(reader_case("singular direction matrix", gc_layout(tmp / "sing", lambda d: hostile.singular_direction(d / "ct.mha"), cohort), "Bad direction, determinant is 0"))  # fmt: skip
    u16 = gc_layout(tmp / "u16", None, cohort)
    hostile.recast_ct(u16 / "images" / "ct" / "ct.mha", sitk.sitkUInt16, 1024.0)
    out.append(
        reader_case("uint16 CT = HU + 1024 (corrected, warned)", u16, "shifted by -1024", expect_ok=True)
    )
    u8 = gc_layout(tmp / "u8", None, cohort)
    hostile.recast_ct(u8 / "images" / "ct" / "ct.mha", sitk.sitkUInt8, 0.0)
    out.append(reader_case("uint8 CT (refused)", u8, "8-bit values cannot be Hounsfield units"))
    return out


EHR_SNIPPET = (
    "import sys; from hmvnet.data.clinical_record import read_ehr; r = read_ehr(sys.argv[1]);"
    "print('age', r.age, 'gender', r.gender)"
)


def ehr_cases(tmp: Path) -> list[Outcome]:
    payload = json.dumps({"Age": 64, "Gender": 1})
    cases = [
        ("ehr.json with a UTF-8 BOM", payload.encode("utf-8-sig"), "age 64.0 gender 1"),
        ("ehr.json in UTF-16", payload.encode("utf-16"), "age 64.0 gender 1"),
        ("ehr.json nested 100 000 deep", b"[" * 100_000 + b"]" * 100_000, "age None gender None"),
        ("ehr.json Age with 5 001 digits", b'{"Age": ' + b"9" * 5001 + b"}", "age None gender None"),
    ]
    out = []
    for i, (name, data, needle) in enumerate(cases):
        path = tmp / f"ehr{i}.json"
        path.write_bytes(data)
        rc, text, seconds, peak = run_limited([sys.executable, "-c", EHR_SNIPPET, str(path)], READER_AS_BYTES)
        passed = rc == 0 and needle in text and "Traceback" not in text
        out.append(
            Outcome(
                name, passed and seconds < CASE_LIMIT_S, text.strip().splitlines()[-1][-160:], seconds, peak
            )
        )
    return out


def process(args: list[str], env: dict | None = None) -> tuple[int, str, float, float]:
    return run_limited([sys.executable, str(REPO / "process.py"), *args], PROCESS_AS_BYTES, env=env)


def process_cases(tmp: Path, cohort: Path, weights: Path) -> list[Outcome]:
    out = []
    good = gc_layout(tmp / "good", None, cohort)
    base = ["--weights", str(weights), "--device", "cpu"]

    bomb = gc_layout(tmp / "pbomb", lambda d: hostile.compressed_bomb(d / "ct.mha"), cohort)
    stale = tmp / "out_stale"
    for rel in ("images/tumor-lymph-node-segmentation/output.mha", "rfs.json"):
        (stale / rel).parent.mkdir(parents=True, exist_ok=True)
        (stale / rel).write_text("stale")
    rc, text, s, peak = process(
        ["--input", str(bomb), "--output", str(stale), "--outputs", "segmentation", *base]
    )
    passed, detail = one_line_error(rc, text, "claims size")
    left = sorted(str(p.relative_to(stale)) for p in stale.rglob("*") if p.is_file())
    passed = passed and not left and peak < BOMB_RSS_LIMIT_MIB
    out.append(
        Outcome("process.py: header bomb, stale outputs present", passed, f"left={left}; {detail}", s, peak)
    )

    fifo = gc_layout(tmp / "pfifo", lambda d: hostile.fifo_data_file(d), cohort)
    rc, text, s, peak = process(
        ["--input", str(fifo), "--output", str(tmp / "o_fifo"), "--outputs", "segmentation", *base]
    )
    out.append(
        Outcome("process.py: FIFO ElementDataFile", *one_line_error(rc, text, "not a regular file"), s, peak)
    )

    blocker = tmp / "not_a_folder"
    blocker.write_text("x")
    rc, text, s, peak = process(
        ["--input", str(good), "--output", str(blocker), "--outputs", "segmentation", *base]
    )
    out.append(Outcome("process.py: output is a file", *one_line_error(rc, text, "is not writable"), s, peak))

    rc, text, s, peak = process(
        ["--input", str(good), "--output", str(tmp / "o_env"), *base], {"HMVNET_OUTPUTS": "bogus"}
    )
    out.append(
        Outcome(
            "process.py: HMVNET_OUTPUTS=bogus", *one_line_error(rc, text, "HMVNET_OUTPUTS='bogus'"), s, peak
        )
    )

    seg_out = tmp / "o_seg"
    (seg_out).mkdir()
    (seg_out / "rfs.json").write_text("0.5")
    home = tmp / "home"
    home.mkdir()
    rc, text, s, peak = process(["--input", str(good), "--output", str(seg_out), "--outputs", "segmentation", *base],
                                {"HOME": str(home)})  # fmt: skip
    written = sorted(str(p.relative_to(seg_out)) for p in seg_out.rglob("*") if p.is_file())
    home_files = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    passed = rc == 0 and written == ["images/tumor-lymph-node-segmentation/output.mha"] and not home_files
    out.append(Outcome("process.py --outputs segmentation over a stale rfs.json; $HOME untouched", passed,
                       f"rc={rc} written={written} home={home_files}", s, peak))  # fmt: skip

    ro = _read_only_output_case(good, base)
    if ro is not None:
        out.append(ro)
    return out


def _read_only_output_case(good: Path, base: list[str]) -> Outcome | None:
    """Read-only /output through a private mount namespace (``unshare -rm``), where the machine allows it."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        return Outcome(
            "process.py: read-only output (mount namespace)",
            True,
            "skipped: unshare not permitted here",
            0.0,
            0.0,
        )
    ro_dir = good.parent / "ro_out"
    ro_dir.mkdir()
    script = (f"mount --bind {ro_dir} {ro_dir} && mount -o remount,bind,ro {ro_dir} && "
              f"exec {sys.executable} {REPO / 'process.py'} --input {good} --output {ro_dir} --outputs segmentation "
              + " ".join(base))  # fmt: skip
    rc, text, s, peak = run_limited(["unshare", "-rm", "sh", "-c", script], PROCESS_AS_BYTES)
    return Outcome(
        "process.py: read-only output (mount namespace)",
        *one_line_error(rc, text, "is not writable"),
        s,
        peak,
    )


def predict_cases(tmp: Path, weights: Path) -> list[Outcome]:
    from tests.helpers import write_tiny_cohort

    data = tmp / "pred_in"
    write_tiny_cohort(data, n_cases=1, seed=4)
    (data / "Task 1" / "X").mkdir()
    (data / "Task 1" / "X" / "X_CT.nii.gz").write_bytes(b"misnamed")
    out = tmp / "pred_out"
    cmd = [sys.executable, "-m", "hmvnet", "predict", "--input", str(data), "--output", str(out), "--weights",
           str(weights), "--outputs", "segmentation", "--device", "cpu"]  # fmt: skip
    rc1, text1, s1, peak1 = run_limited(cmd, PROCESS_AS_BYTES)
    summary = (out / "summary.csv").read_text() if (out / "summary.csv").is_file() else ""
    results = [Outcome("predict: misnamed case folder listed as skipped", rc1 == 0 and "X,skipped" in summary
                       and "skipped X" in text1, summary.splitlines()[-1][:160] if summary else f"rc={rc1}", s1, peak1)]  # fmt: skip
    case = next(p for p in out.iterdir() if p.is_dir() and p.name != "X")
    mask = case / f"{case.name}.nii.gz"
    orphan = case / f".{case.name}.nii.gz.abc.partial.nii.gz"
    orphan.write_bytes(b"killed")
    mask.write_bytes(mask.read_bytes()[:100])
    rc2, _, s2, peak2 = run_limited(cmd, PROCESS_AS_BYTES)
    redone = json.loads((case / "result.json").read_text())
    passed = rc2 == 0 and not orphan.exists() and redone.get("mask_bytes") == mask.stat().st_size > 100
    results.append(Outcome("predict: orphan .partial + truncated mask after ok", passed,
                           f"rc={rc2} orphan_left={orphan.exists()} mask_bytes={mask.stat().st_size}", s2, peak2))  # fmt: skip
    return results


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raw(port: int, data: bytes, timeout: float = 45.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
                if b"\r\n\r\n" in got and got.rstrip().endswith(b"}"):
                    break
        except TimeoutError:
            pass
    status = int(got.split(b" ")[1]) if got.startswith(b"HTTP/") else 0
    return status, got


def serve_cases(tmp: Path, cohort: Path, weights: Path) -> list[Outcome]:
    good = gc_layout(tmp / "serve_in", None, cohort)
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HMVNET_SERVE_TOKEN": "tok",
        "HMVNET_OUTPUTS": "segmentation",
    }
    proc = subprocess.Popen([sys.executable, "-m", "hmvnet.app.serve", "--port", str(port), "--input", str(good),
                             "--output", str(tmp / "serve_out"), "--weights", str(weights), "--device", "cpu"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (PROCESS_AS_BYTES,) * 2))  # fmt: skip
    out = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if _raw(port, b"GET /health HTTP/1.1\r\n\r\n", 2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        auth = b"Authorization: Bearer tok\r\n"
        abuse = [
            ("serve: no token on /invoke", b"POST /invoke HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 401),
            ("serve: Content-Length -1", b"POST /invoke HTTP/1.1\r\n" + auth + b"Content-Length: -1\r\n\r\n", 400),
            ("serve: Content-Length abc", b"POST /invoke HTTP/1.1\r\n" + auth + b"Content-Length: abc\r\n\r\n", 400),
            ("serve: Content-Length 300 MiB", b"POST /invoke HTTP/1.1\r\n" + auth + b"Content-Length: 314572800\r\n\r\n", 413),
            ("serve: PUT", b"PUT /invoke HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
            ("serve: TLS ClientHello bytes", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
            ("serve: promised body never sent (socket timeout)", b"POST /invoke HTTP/1.1\r\n" + auth + b"Content-Length: 10\r\n\r\n", 0),
            ("serve: invoke with token", b"POST /invoke HTTP/1.1\r\n" + auth + b"Content-Length: 0\r\n\r\n", 201),
        ]  # fmt: skip
        for name, data, expected in abuse:
            start = time.perf_counter()
            status, got = _raw(port, data)
            body = got.partition(b"\r\n\r\n")[2]
            json_ok = expected == 0 or body.strip().startswith(b"{")
            alive = _raw(port, b"GET /health HTTP/1.1\r\n\r\n", 5)[0] == 200
            seconds = time.perf_counter() - start
            passed = status == expected and json_ok and alive and seconds < CASE_LIMIT_S
            out.append(
                Outcome(
                    name,
                    passed,
                    f"status={status} json={json_ok} alive={alive} {body[:80]!r}",
                    seconds,
                    float("nan"),
                )
            )
        # 422 must not leave the previous outputs in place
        (good / "images" / "pet" / "pet.mha").unlink()
        status, got = _raw(port, b"POST /invoke HTTP/1.1\r\n" + auth + b"Content-Length: 0\r\n\r\n")
        left = [str(p.relative_to(tmp / "serve_out")) for p in (tmp / "serve_out").rglob("*") if p.is_file()]
        out.append(
            Outcome(
                "serve: 422 leaves no stale outputs",
                status == 422 and not left,
                f"status={status} left={left}",
                0.0,
                float("nan"),
            )
        )
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        out.append(
            Outcome(
                "serve: SIGTERM exits cleanly", rc == 0, f"rc={rc}", time.perf_counter() - start, float("nan")
            )
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


def train_tiny_weights(tmp: Path) -> Path:
    from hmvnet.segmentation.training import train_fold
    from tests.helpers import TINY, TRAIN, write_tiny_cohort

    write_tiny_cohort(tmp / "train", n_cases=4)
    train_fold(tmp / "train", tmp / "w" / "segmentation", TINY, TRAIN, 0, tmp / "cache", max_epochs=1)
    return tmp / "w"


def table(outcomes: list[Outcome]) -> str:
    lines = ["| case | result | peak RSS (MiB) | time (s) | detail |", "|---|---|---:|---:|---|"]
    for o in outcomes:
        peak = "" if o.peak_mib != o.peak_mib else f"{o.peak_mib:.0f}"
        detail = re.sub(r"/\S*hmvnet-redteam-\w+/", "…/", o.detail).replace("|", "/").replace("\n", " ")
        lines.append(f"| {o.name} | {'pass' if o.passed else 'FAIL'} | {peak} | {o.seconds:.1f} | {detail} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "redteam.md")
    parser.add_argument("--skip-process", action="store_true", help="reader and ehr cases only (no weights)")
    args = parser.parse_args()
    from tests.helpers import write_tiny_cohort

    with tempfile.TemporaryDirectory(prefix="hmvnet-redteam-") as name:
        tmp = Path(name)
        write_tiny_cohort(tmp / "cohort", n_cases=1, seed=5)
        outcomes = reader_cases(tmp / "r", tmp / "cohort") if (tmp / "r").mkdir() is None else []
        outcomes += ehr_cases(tmp)
        if not args.skip_process:
            weights = train_tiny_weights(tmp / "weights")
            (tmp / "p").mkdir()
            outcomes += process_cases(tmp / "p", tmp / "cohort", weights)
            outcomes += predict_cases(tmp, weights)
            outcomes += serve_cases(tmp, tmp / "cohort", weights)
    text = table(outcomes)
    n_pass = sum(o.passed for o in outcomes)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"# Red-team run ({stamp})\n\nMeasured by `PYTHONPATH=. python tests/redteam.py` on {platform.machine()} "
        f"Linux, Python {platform.python_version()}, a 2-core CPU shared with other jobs (times are inflated by the "
        f"load). Each case ran in a subprocess under RLIMIT_AS ({READER_AS_BYTES >> 30} GiB for reader cases, "
        f"{PROCESS_AS_BYTES >> 30} GiB for process/serve runs, which import torch) and a {CASE_LIMIT_S:.0f} s limit; "
        f"peak RSS is the child's ru_maxrss (serve cases share one server process: not measured per case).\n\n"
        f"**{n_pass} of {len(outcomes)} passed.**\n\n"
    )
    print(header + text)
    args.out.write_text(header + text + "\n")
    return 0 if n_pass == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
