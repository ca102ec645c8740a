"""The prepared table: one row per image, the contract between `prepare` and every later stage.

Columns (row order is the canonical image order for features, text and splits):
  image_id   int64          id from the annotation file
  file_path  string         image path as reachable from the project root
  width      int32, height int32
  captions   list<string>   the image's captions (tag datasets: one string of tags)
  labels     list<int32>    sorted label ids into `label_names` (may be empty)
  boxes      list<list<float32>>  ground-truth boxes, x1 y1 x2 y2 in pixels (may be empty)
  box_labels list<int32>    label id of each ground-truth box
  split      string         train | val | test
The schema metadata holds `label_names` (JSON list) and `dataset` (name).
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import atomic_output

SPLITS = ("train", "val", "test")

SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("file_path", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("captions", pa.list_(pa.string())),
    ("labels", pa.list_(pa.int32())),
    ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
    ("box_labels", pa.list_(pa.int32())),
    ("split", pa.string()),
])


class TableError(ValueError):
    """The prepared table is missing or does not follow the schema."""


def table_path(data_dir: str | Path, dataset: str) -> Path:
    return Path(data_dir) / dataset / "table.parquet"


def write_table(rows: dict[str, list], label_names: list[str], dataset: str, path: str | Path) -> pa.Table:
    """Write column lists `rows` as the prepared table (atomically) and return it."""
    table = pa.table(rows, schema=SCHEMA)
    meta = {b"label_names": json.dumps(label_names).encode(), b"dataset": dataset.encode()}
    table = table.replace_schema_metadata(meta)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
    return table


def read_table(path: str | Path) -> pa.Table:
    """Read a prepared table, checking that it carries the expected columns."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: prepared table not found (run `xmr prepare` / `dvc repro` first)")
    table = pq.read_table(path)
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise TableError(f"{path}: column '{missing[0]}' missing (expected columns: {', '.join(SCHEMA.names)})")
    unknown = sorted(set(table.column("split").unique().to_pylist()) - set(SPLITS), key=str)
    if unknown:
        raise TableError(f"{path}: column 'split' holds the value {unknown[0]!r}; expected one of: {', '.join(SPLITS)} "
                         f"(rerun `xmr prepare`)")
    return table


def label_names(table: pa.Table) -> list[str]:
    """The label vocabulary stored in the table's metadata."""
    return json.loads((table.schema.metadata or {}).get(b"label_names", b"[]"))


def table_fingerprint(table: pa.Table) -> str:
    """Identity of a prepared table's content (columns and metadata, not how the file was written): the
    feature and text stores record it, and training and evaluation refuse a store made from another table."""
    import hashlib

    h = hashlib.sha256()
    combined = table.combine_chunks()
    for key, value in sorted((combined.schema.metadata or {}).items()):
        h.update(len(key).to_bytes(8, "little") + key + len(value).to_bytes(8, "little") + value)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, combined.schema.remove_metadata()) as writer:
        writer.write_table(combined)
    h.update(sink.getvalue())
    return h.hexdigest()[:16]
