"""The cohort's QC contact sheet ``qc.html``: one sortable table row per case (thumbnail linking to the full
picture, status, volumes, node count, risk with its percentile in the batch, T/N stage when the results carry
``t_stage``/``n_stage``), and the failed cases with their reasons. Plain HTML and a few lines of JavaScript, no
network access needed to open it."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from hmvnet.data.writers import write_text

RISK_MEANING = (
    "risk: the model's relapse-risk score, higher = earlier relapse expected; a relative score (its scale is "
    "the model's, not a probability); the percentile ranks it among this batch's cases with a risk"
)

SORT_SCRIPT = """
document.querySelectorAll('th[data-col]').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], col = +th.dataset.col;
    var asc = th.dataset.dir !== 'asc';
    table.querySelectorAll('th').forEach(function (h) { h.dataset.dir = ''; });
    th.dataset.dir = asc ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td.l,th.l{text-align:left}"
    "th[data-col]{cursor:pointer;background:#eee}th[data-dir=asc]::after{content:' \\25B2'}"
    "th[data-dir=desc]::after{content:' \\25BC'}tr.failed{background:#fde8e8}"
)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def risk_percentiles(rows: list[dict]) -> dict[str, float]:
    """Case id -> percentile (0..100) of its risk among the rows with a finite risk (ties share the mean rank)."""
    risks = {str(r["case_id"]): v for r in rows if (v := _number(r.get("risk"))) is not None}
    values = sorted(risks.values())
    if len(values) < 2:
        return {case: 50.0 for case in risks}
    out = {}
    for case, value in risks.items():
        below = sum(v < value for v in values)
        equal = sum(v == value for v in values)
        out[case] = 100.0 * (below + (equal - 1) / 2) / (len(values) - 1)
    return out


def _cell(value: Any, digits: int | None = None, left: bool = False) -> str:
    number = _number(value) if digits is not None else None
    text = (
        "" if value is None or value == "" else (f"{number:.{digits}f}" if number is not None else str(value))
    )
    sort_key = number if number is not None else text
    return f'<td{" class=l" if left else ""} data-v="{html.escape(str(sort_key))}">{html.escape(text)}</td>'


def _thumbnail(row: dict, out_dir: Path) -> str:
    picture = row.get("qc_png")
    if not picture or not Path(picture).is_file():
        return '<td class=l data-v="">no picture</td>'
    href = html.escape(Path(picture).relative_to(out_dir).as_posix())
    return f'<td class=l data-v=""><a href="{href}"><img src="{href}" width="260" loading="lazy"></a></td>'


def write_contact_sheet(rows: list[dict], out_dir: Path) -> Path:
    """Write ``out_dir/qc.html`` for ``rows`` (result.json contents; ``qc_png`` an absolute or out_dir-based
    path); returns its path."""
    out_dir = Path(out_dir)
    staged = any(r.get("t_stage") not in (None, "") or r.get("n_stage") not in (None, "") for r in rows)
    percentiles = risk_percentiles([r for r in rows if r.get("status") == "ok"])
    columns = ["picture", "case", "status", "GTVp ml", "GTVn ml", "nodes", "risk", "risk percentile"]
    columns += ["T stage", "N stage"] if staged else []
    head = "".join(
        f"<th class=l>{c}</th>" if c == "picture" else f'<th data-col="{i}" title="click to sort">{c}</th>'
        for i, c in enumerate(columns)
    )
    body = []
    for row in rows:
        case = str(row.get("case_id", ""))
        cells = [
            _thumbnail(row, out_dir), _cell(case, left=True), _cell(row.get("status"), left=True),
            _cell(row.get("gtvp_ml"), 2), _cell(row.get("gtvn_ml"), 2), _cell(row.get("n_gtvn"), 0),
            _cell(row.get("risk"), 3), _cell(percentiles.get(case), 0),
        ]  # fmt: skip
        if staged:
            cells += [_cell(row.get("t_stage"), left=True), _cell(row.get("n_stage"), left=True)]
        css = ' class="failed"' if row.get("status") != "ok" else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    failures = [
        f"<li><b>{html.escape(str(r.get('case_id')))}</b>: {html.escape(str(r.get('error') or 'no reason recorded'))}</li>"
        for r in rows
        if r.get("status") != "ok"
    ]
    n_ok = sum(r.get("status") == "ok" for r in rows)
    page = (
        f"<!doctype html><meta charset='utf-8'><title>HM-VNet QC</title><style>{STYLE}</style>"
        f"<h1>HM-VNet predictions: {n_ok} ok, {len(rows) - n_ok} failed</h1>"
        "<p>Outlines: GTVp cyan, GTVn magenta. Volumes in ml on the CT grid; nodes = GTVn connected components. "
        f"{html.escape(RISK_MEANING)}. Click a column header to sort; click a picture to open it.</p>"
        + (f"<h2>Failed cases</h2><ul>{''.join(failures)}</ul>" if failures else "")
        + f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + f"<script>{SORT_SCRIPT}</script>"
    )
    return write_text(page, out_dir / "qc.html")
