"""The training log of a fold (``log.csv``, one row per epoch) and its curve (as nnU-Net's ``progress.png``): training loss and, where validated, the
validation scores per epoch, redrawn from ``log.csv`` after every epoch."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd

from hmvnet.data.writers import write_with

VALIDATION_COLUMNS = {
    "val_task1_score": "Task-1 proxy",
    "val_gtvp_dsc": "GTVp Dice",
    "val_gtvn_agg_dsc": "GTVn aggregated Dice",
}


def write_training_curve(log_csv: Path, png: Path, title: str = "") -> Path:
    """Plot ``log_csv`` (columns ``epoch``, ``train_loss``, optional ``val_*``) into ``png``: loss on the left
    axis, validation scores (0..1) on the right; returns ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pd.read_csv(log_csv)
    fig, loss_ax = plt.subplots(figsize=(7, 4), dpi=90)
    loss_ax.plot(table["epoch"], table["train_loss"], color="#1f77b4", marker=".", label="training loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (0.5 Dice + 0.5 CE)")
    score_ax = loss_ax.twinx()
    score_ax.set_ylabel("validation score")
    score_ax.set_ylim(0.0, 1.0)
    for column, name in VALIDATION_COLUMNS.items():
        if column in table and table[column].notna().any():
            rows = table[table[column].notna()]
            score_ax.plot(rows["epoch"], rows[column], marker="o", label=name)
    handles = loss_ax.get_legend_handles_labels()[0] + score_ax.get_legend_handles_labels()[0]
    loss_ax.legend(handles=handles, loc="upper right", fontsize=8)
    loss_ax.set_title(f"{title} training curve".strip(), fontsize=10)
    loss_ax.grid(alpha=0.3)
    fig.tight_layout()
    write_with(png, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return png


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to the CSV log; a row with new columns (validation epochs) rewrites the header."""
    rows: list[dict[str, Any]] = []
    fields = list(row)
    if path.is_file():
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
        fields = header + [k for k in row if k not in header]
        if fields == header:
            with open(path, "a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=fields).writerow(row)
            return

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows([*rows, row])

    write_with(path, write)
