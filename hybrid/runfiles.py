"""The files of a run directory and the JSON-lines records in them.

One place for the names that training writes and metrics, reports and experiments read:

    RUN_DIR/config.json, log.txt, stats.jsonl, metrics.jsonl, bench.jsonl, samples/, checkpoints/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG = "config.json"  # the resolved training configuration
LOG = "log.txt"  # what the console showed
STATS = "stats.jsonl"  # one record per tick: losses, D logits, img/s
METRICS = "metrics.jsonl"  # one record per metric per training-time evaluation
BENCH = "bench.jsonl"  # one record per `hybrid bench` setting
SAMPLES = "samples"  # PNG grids from fixed seeds, one per snapshot
CHECKPOINTS = "checkpoints"  # checkpoint-<kimg:06d>.pt


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file; [] when absent; lines cut short by a kill are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
