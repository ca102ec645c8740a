"""The qualitative page: top-5 captions for image queries, top-3 images for caption queries.

Reads a rankings file (`pipeline.metrics.rankings`) and the prepared table (file paths, captions,
labels). Images are embedded as small base64 JPEG thumbnails, so the page is one self-contained
file. An image missing from disk (features and text can exist without the images: a teammate who
pulled only the features) leaves its thumbnail out with a note; the rest of the page stays. Marks: ★ = the ground-truth pair, ✓ = shares at least one label with the query (the
label-wise notion of a correct result, papers/000 Figure 3), ✗ = neither.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from pipeline.data.labels import multi_hot
from pipeline.data.table import label_names
from pipeline.project_paths import project_path
from pipeline.reporting.collect import ReportInputError

TOP_CAPTIONS, TOP_IMAGES = 5, 3


def thumbnail(path: Path, size: int) -> str | None:
    """A `data:` URI of a JPEG thumbnail of the image at `path` (longest side `size`); None when the file
    is absent."""
    path = project_path(path)
    if not path.is_file():
        return None
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def pick_queries(n_items: int, n: int) -> np.ndarray:
    """`n` queries spread evenly over the test items (deterministic)."""
    return np.unique(np.linspace(0, n_items - 1, num=min(n, n_items)).round().astype(int)) if n_items else np.zeros(0, int)


def render_page(rankings: dict[str, np.ndarray], table: pa.Table, title: str, root: Path,
                n_queries: int = 6, thumb_px: int = 128, missing: list[str] | None = None) -> str:
    """The HTML of one dataset x method page; the paths of images not found on disk are appended to
    `missing` (their thumbnails are left out, with a note on the page)."""
    missing = [] if missing is None else missing
    absent: list[str] = []
    image_rows, caption_rows = rankings["image_rows"], rankings["caption_rows"]
    caption_index, i2t_top, t2i_top = rankings["caption_index"], rankings["i2t_top"], rankings["t2i_top"]
    n_table = table.num_rows
    for key, rows in (("image_rows", image_rows), ("caption_rows", caption_rows)):
        if len(rows) and (rows.min() < 0 or rows.max() >= n_table):
            raise ReportInputError(f"rankings for {title}: {key} point outside the prepared table ({n_table} rows)")
    paths = table.column("file_path").to_pylist()
    captions = table.column("captions").to_pylist()
    names = label_names(table)
    labels = multi_hot(table, len(names)).astype(bool)
    cache: dict[int, str] = {}

    def image_html(row: int, mark: str = "") -> str:
        if row not in cache:
            cache[row] = thumbnail(root / paths[row], thumb_px)
            if cache[row] is None:
                absent.append(paths[row])
        picture = (f'<img src="{cache[row]}" alt="table row {row}">' if cache[row] is not None else
                   f'<div class="absent">image not on disk: {html.escape(paths[row])}</div>')
        return (f'<figure>{picture}<figcaption>{mark} row {row}<br>'
                f'{html.escape(label_text(row))}</figcaption></figure>')

    def label_text(row: int) -> str:
        return ", ".join(names[i] for i in np.flatnonzero(labels[row])) or "(no label)"

    def caption_text(t: int) -> str:
        row, index = int(caption_rows[t]), int(caption_index[t])
        if index >= len(captions[row]):
            raise ReportInputError(f"rankings for {title}: caption {index} of table row {row} does not exist")
        return captions[row][index]

    def mark(query_row: int, result_row: int, truth: bool) -> str:
        if truth:
            return "★"
        return "✓" if (labels[query_row] & labels[result_row]).any() else "✗"

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em}figure{display:inline-block;margin:4px;"
             "vertical-align:top;font-size:12px;max-width:" + str(thumb_px + 20) + "px}"
             "li{margin:2px 0}.query{border-top:1px solid #ccc;padding:8px 0}.absent{width:" + str(thumb_px) + "px;"
             "border:1px dashed #999;color:#666;padding:4px;word-break:break-all}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<p>★ ground-truth pair, ✓ shares a label with the query, ✗ neither.</p>",
             f"<h2>Image queries: top {TOP_CAPTIONS} captions</h2>"]
    for q in pick_queries(len(image_rows), n_queries):
        row = int(image_rows[q])
        items = []
        for t in i2t_top[q][:TOP_CAPTIONS]:
            result_row = int(caption_rows[t])
            items.append(f"<li>{mark(row, result_row, result_row == row)} {html.escape(caption_text(int(t)))} "
                         f"<small>({html.escape(label_text(result_row))})</small></li>")
        parts.append(f"<div class='query'>{image_html(row)}<ol>{''.join(items)}</ol></div>")
    parts.append(f"<h2>Caption queries: top {TOP_IMAGES} images</h2>")
    for q in pick_queries(len(caption_rows), n_queries):
        row = int(caption_rows[q])
        figures = "".join(image_html(int(image_rows[i]), mark(row, int(image_rows[i]), int(image_rows[i]) == row))
                          for i in t2i_top[q][:TOP_IMAGES])
        parts.append(f"<div class='query'><p><b>{html.escape(caption_text(int(q)))}</b> "
                     f"<small>({html.escape(label_text(row))})</small></p>{figures}</div>")
    if absent:
        parts.insert(4, f"<p class='note'>{len(absent)} image(s) not found on disk, their thumbnails left out "
                        f"(e.g. {html.escape(absent[0])}); the rankings and every metric are unaffected.</p>")
        missing.extend(absent)
    parts.append("</body></html>")
    return "\n".join(parts)
