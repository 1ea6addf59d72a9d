"""``hmvnet weights``: where the weights are looked for, which folder is used, and whether every file listed in
``segmentation/config.json`` and ``survival/config.json`` matches its sha256.

Works the same from a source checkout, an editable install or a wheel (whose package folder holds no weights: give
``--weights``, set ``HMVNET_WEIGHTS`` or run from a folder holding ``weights/``).
"""

from __future__ import annotations

import json
from pathlib import Path

from hmvnet.data.weights import has_weights, resolve_weights_dir, search_locations, sha256_file
from hmvnet.errors import WeightsError

PARTS = ("segmentation", "survival")


def verify_folder(folder: Path) -> list[tuple[str, str]]:
    """``(relative file, "ok" | problem)`` for every file listed in the parts' ``config.json`` ``weights``; a
    folder without ``survival/`` (segmentation-only weights) is not a problem."""
    rows: list[tuple[str, str]] = []
    for part in PARTS:
        config_path = folder / part / "config.json"
        if not config_path.is_file():
            if part == "segmentation":  # survival weights are optional (segmentation-only profiles)
                rows.append((f"{part}/config.json", "missing"))
            continue
        try:
            listed = json.loads(config_path.read_text()).get("weights", {})
        except json.JSONDecodeError as exc:
            rows.append((f"{part}/config.json", f"not valid JSON ({exc})"))
            continue
        if not listed:
            rows.append((f"{part}/config.json", "lists no weight files"))
        for name, digest in sorted(listed.items()):
            path = folder / part / name
            if not path.is_file():
                status = "missing"
            else:
                actual = sha256_file(path)
                status = "ok" if actual == digest else f"sha256 {actual[:12]}... != expected {digest[:12]}..."
            rows.append((f"{part}/{name}", status))
    return rows


def cli_main(argv: list[str]) -> int:
    from hmvnet.app.parsers import weights_parser

    args = weights_parser().parse_args(argv)
    folder = resolve_weights_dir(args.weights)
    if args.path or not args.verify:
        print("searched, in order:")
        for where, location in search_locations(args.weights):
            print(f"  {where:<22} {location}  [{'weights' if has_weights(location) else 'none'}]")
        print(f"in use: {folder}")
    if not has_weights(folder):
        raise WeightsError(f"no weights in {folder} (no segmentation/config.json)")
    if args.verify:
        rows = verify_folder(folder)
        for name, status in rows:
            print(f"  {status:<8} {name}" if status == "ok" else f"  FAILED   {name}: {status}")
        bad = [r for r in rows if r[1] != "ok"]
        print(f"{len(rows) - len(bad)} of {len(rows)} files verified in {folder}")
        return 1 if bad else 0
    return 0
