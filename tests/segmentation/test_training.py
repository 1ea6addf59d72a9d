"""Training: folds, one fold end to end on a tiny cohort, exact resume, DDP on CPU with gloo."""

from __future__ import annotations

import dataclasses
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from hmvnet.config import SegmentationConfig, load_config
from hmvnet.errors import InputError
from hmvnet.segmentation.training import train_fold
from tests.helpers import TINY, TRAIN, write_tiny_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    write_tiny_cohort(root, n_cases=6)
    return root


def test_train_fold_writes_weights_config_and_log(cohort, tmp_path):
    best = train_fold(
        cohort, tmp_path / "run", TINY, TRAIN, fold=0, cache_dir=tmp_path / "cache", max_epochs=2
    )
    config = load_config(SegmentationConfig, tmp_path / "run")
    assert list(config.weights) == ["fold0.safetensors"]
    assert config.model == TINY.model
    log = (tmp_path / "run" / "fold0" / "log.csv").read_text().splitlines()
    assert len(log) == 3 and "val_gtvp_dsc" in log[0]
    assert all(len(line.split(",")) == len(log[0].split(",")) for line in log)
    assert (tmp_path / "run" / "fold0" / "progress.png").read_bytes()[:4] == b"\x89PNG"
    assert 0.0 <= best["score"] <= 1.0
    cached = sorted((tmp_path / "cache").glob("*/*/label.npy"))
    assert len(cached) == 6
    for path in cached:  # the crop holds both lesions of every case
        assert set(np.unique(np.load(path)).tolist()) == {0, 1, 2}
    split = json.loads((tmp_path / "run" / "fold0" / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"])


def test_fixed_validation_cases(cohort, tmp_path):
    ids = sorted(d.name for d in (cohort / "Task 1").iterdir() if d.is_dir())
    train_fold(cohort, tmp_path / "run", TINY, TRAIN, 0, tmp_path / "cache", max_epochs=1, val_ids=ids[-2:])
    split = json.loads((tmp_path / "run" / "fold0" / "split.json").read_text())
    assert split == {"train": ids[:-2], "val": ids[-2:]}
    with pytest.raises(InputError, match="NOPE-001"):
        train_fold(
            cohort, tmp_path / "r2", TINY, TRAIN, 0, tmp_path / "cache", max_epochs=1, val_ids=["NOPE-001"]
        )


def test_resume_is_exact(cohort, tmp_path):
    straight = train_fold(cohort, tmp_path / "a", TINY, TRAIN, 0, tmp_path / "cache", max_epochs=2)
    train_fold(cohort, tmp_path / "b", TINY, TRAIN, 0, tmp_path / "cache", max_epochs=1)
    resumed = train_fold(
        cohort, tmp_path / "b", TINY, TRAIN, 0, tmp_path / "cache", resume=True, max_epochs=2
    )
    assert resumed["final_sha256"] == straight["final_sha256"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cohort, out, cache, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    best = train_fold(cohort, out, TINY, TRAIN, 0, cache, max_epochs=1)
    (results / f"rank{rank}.txt").write_text(best["final_sha256"])
    torch.distributed.destroy_process_group()


def test_ddp_two_ranks_on_cpu_end_with_identical_weights(cohort, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(
        _ddp_worker, args=(2, _free_port(), cohort, tmp_path / "run", tmp_path / "cache", results), nprocs=2
    )
    digests = {p.read_text() for p in results.iterdir()}
    assert len(list(results.iterdir())) == 2 and len(digests) == 1


def test_csv_log_gains_columns_without_misaligning(tmp_path):
    import csv

    from hmvnet.segmentation.training import _append_csv

    path = tmp_path / "log.csv"
    _append_csv(path, {"epoch": 1, "train_loss": 0.5})
    _append_csv(path, {"epoch": 2, "train_loss": 0.4, "val_score": 0.7})
    _append_csv(path, {"epoch": 3, "train_loss": 0.3})
    rows = list(csv.DictReader(path.open()))
    assert [r["val_score"] for r in rows] == ["", "0.7", ""]
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


def test_init_weights_start_a_new_run_from_shipped_weights(cohort, tiny_weights, tmp_path):
    from safetensors.torch import load_file

    from hmvnet.config import ModelConfig
    from hmvnet.errors import WeightsError

    source = tiny_weights / "segmentation" / "fold0.safetensors"
    train_fold(
        cohort, tmp_path / "run", TINY, TRAIN, 0, tmp_path / "cache", max_epochs=0, init_weights=source
    )
    started = load_file(str(tmp_path / "run" / "fold0.safetensors"))
    shipped = load_file(str(source))
    assert started.keys() == shipped.keys()
    assert all(torch.equal(started[k], shipped[k]) for k in shipped)

    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "fold0.safetensors").write_bytes(source.read_bytes()[:-8] + b"corrupt!")
    (copy / "config.json").write_text((tiny_weights / "segmentation" / "config.json").read_text())
    with pytest.raises(WeightsError, match="checksum mismatch"):
        train_fold(cohort, tmp_path / "r2", TINY, TRAIN, 0, tmp_path / "cache", max_epochs=0,
                   init_weights=copy / "fold0.safetensors")  # fmt: skip
    wider = dataclasses.replace(
        TINY, model=ModelConfig(stem_channels=4, feature_size=12, window_size=(4, 4, 4))
    )
    with pytest.raises(WeightsError, match="does not fit the configured model"):
        train_fold(
            cohort, tmp_path / "r3", wider, TRAIN, 0, tmp_path / "cache", max_epochs=0, init_weights=source
        )
    with pytest.raises(WeightsError, match="file not found"):
        train_fold(cohort, tmp_path / "r4", TINY, TRAIN, 0, tmp_path / "cache", max_epochs=0,
                   init_weights=tmp_path / "nope.safetensors")  # fmt: skip


def test_train_seg_refuses_an_existing_run_unless_resume_or_overwrite(tmp_path):
    from hmvnet.segmentation.training import prepare_run_dirs

    fold_dir = tmp_path / "fold0"
    fold_dir.mkdir()
    (fold_dir / "log.csv").write_text("epoch,train_loss\n1,0.5\n")
    (fold_dir / "split.json").write_text("{}")
    prepare_run_dirs(tmp_path, [1], resume=False, overwrite=False)  # another fold: nothing to refuse
    with pytest.raises(InputError, match=r"already holds a run .*fold0: log.csv.*--resume.*--overwrite"):
        prepare_run_dirs(tmp_path, [0], resume=False, overwrite=False)
    prepare_run_dirs(tmp_path, [0], resume=True, overwrite=False)
    assert (fold_dir / "log.csv").is_file()
    prepare_run_dirs(tmp_path, [0], resume=False, overwrite=True)
    assert not (fold_dir / "log.csv").exists() and (fold_dir / "split.json").is_file()


def test_train_seg_cli_refusal_is_exit_2(tmp_path):
    from hmvnet.app.cli import main

    (tmp_path / "out" / "fold0").mkdir(parents=True)
    (tmp_path / "out" / "fold0" / "checkpoint_last.pt").write_bytes(b"x")
    assert main(["train-seg", "--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
