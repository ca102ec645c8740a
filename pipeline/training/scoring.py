"""Encoding a split with a trained method and scoring it with `pipeline.metrics`.

Used by the training loop (validation metric for model selection) and by the `evaluate` stage
(test metrics and top-10 rankings). Embedding methods hand `(image_emb, text_emb)` to the metrics
(cosine); methods that override `similarity` hand a callable that scores blocks of pairs.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.contract.method import RetrievalMethod
from pipeline.metrics import evaluate_similarity, metric_options, top_retrievals
from pipeline.training.data import RetrievalData, SplitItems
from pipeline.training.partial_scores import PartialScores, ProgressLines, items_digest


def autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when `amp`, otherwise a no-op context."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _concat(parts: list[Any]) -> Any:
    """Concatenate per-batch representations along items (tensors, or tuples of tensors); tensors
    whose second dimension varies between batches (e.g. words) are zero-padded to the longest."""
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(_concat([p[i] for p in parts]) for i in range(len(first)))
    if first.dim() >= 2:
        width = max(p.shape[1] for p in parts)
        parts = [p if p.shape[1] == width else F.pad(p, (0, 0) * (p.dim() - 2) + (0, width - p.shape[1]))
                 for p in parts]
    return torch.cat(parts)


def _take(rep: Any, idx: torch.Tensor) -> Any:
    if isinstance(rep, tuple):
        return tuple(_take(r, idx) for r in rep)
    return rep.index_select(0, idx.to(rep.device))


@torch.no_grad()
def encode_split(method: RetrievalMethod, data: RetrievalData, items: SplitItems, *, batch_size: int,
                 device: torch.device, amp: bool = False, progress: bool = False) -> tuple[Any, Any]:
    """Representations of the split's images and of its captions, in `items` order."""
    method.eval()
    out = []
    for kind, ids, batch_of, encode in (("images", items.image_rows, data.image_batch, method.encode_images),
                                        ("captions", items.captions, data.text_batch, method.encode_texts)):
        parts = []
        for start in tqdm(range(0, len(ids), batch_size), desc=f"encoding {kind}", unit="batch",
                          disable=not progress, leave=False):
            with autocast(device, amp):
                rep = encode(batch_of(ids[start:start + batch_size]).to(device))
            parts.append(tuple(r.float() for r in rep) if isinstance(rep, tuple) else rep.float())
        out.append(_concat(parts))
    return out[0], out[1]


@torch.no_grad()
def classify_split(method: RetrievalMethod, data: RetrievalData, items: SplitItems, *, batch_size: int,
                   device: torch.device, amp: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """Label probabilities of the split's images and captions, or None when the method has no classifier."""
    method.eval()
    out = []
    for ids, batch_of, classify in ((items.image_rows, data.image_batch, method.classify_images),
                                    (items.captions, data.text_batch, method.classify_texts)):
        parts = []
        for start in range(0, len(ids), batch_size):
            with autocast(device, amp):
                probs = classify(batch_of(ids[start:start + batch_size]).to(device))
            if probs is None:
                return None
            parts.append(probs.float().cpu())
        out.append(torch.cat(parts).numpy())
    return out[0], out[1]


# Pairwise scores of a split up to this many (image, text) pairs are computed once into a matrix
# (1 GiB of float32); larger splits are scored block by block whenever a metric asks.
DENSE_PAIRS = 1 << 28
DENSE_IMAGE_CHUNK = 64


def score_source(method: RetrievalMethod, image_rep: Any, text_rep: Any, n_images: int, n_texts: int,
                 dense_pairs: int = DENSE_PAIRS, *, progress: bool = False, partial: PartialScores | None = None):
    """What `evaluate_similarity` / `top_retrievals` accept: embeddings; for a pairwise method (its own
    `similarity`, e.g. SCAN's cross attention) the score matrix when it fits in `dense_pairs` (the
    metrics read it in both directions and the rankings again, so computing it once is 4x less
    cross attention), else a block callable.

    The matrix is computed `DENSE_IMAGE_CHUNK` image rows at a time, with a bar (`progress`) or a line a
    minute, each with the time left; `partial` keeps finished blocks on disk so that a killed run resumes."""
    if type(method).similarity is RetrievalMethod.similarity:
        return image_rep, text_rep

    @torch.no_grad()
    def block(image_rows: torch.Tensor, text_rows: torch.Tensor) -> torch.Tensor:
        return method.similarity(_take(image_rep, image_rows), _take(text_rep, text_rows)).float()

    if n_images * n_texts > dense_pairs:
        return block
    texts = torch.arange(n_texts)
    starts = range(0, n_images, DENSE_IMAGE_CHUNK)
    lines = None if progress else ProgressLines("scoring image-caption pairs", len(starts))
    rows, computed = [], 0
    for done, start in enumerate(tqdm(starts, desc="scoring pairs", unit="block", disable=not progress), 1):
        stop = min(start + DENSE_IMAGE_CHUNK, n_images)
        part = partial.load(start, (stop - start, n_texts)) if partial is not None else None
        if part is None:
            part = block(torch.arange(start, stop), texts).cpu()
            computed += 1
            if partial is not None:
                partial.save(start, part)
        rows.append(part)
        if lines is not None:
            lines.update(done, computed)
    return torch.cat(rows)


@dataclass
class SplitScores:
    items: SplitItems
    source: Any            # input for evaluate_similarity / top_retrievals
    caption_image: np.ndarray  # local image index of each caption
    text_keys: list | None     # token ids per caption when identical texts are collapsed


def score_split(method: RetrievalMethod, data: RetrievalData, split: str, *, metrics_params: dict, dataset: str,
                batch_size: int, device: torch.device, amp: bool = False, progress: bool = False,
                max_images: int = 0, partial_key: tuple[Path, dict] | None = None) -> SplitScores:
    """Encode and score `split`. `partial_key` `(folder, key)`: keep the finished blocks of a pairwise
    method's score matrix in `folder` (`pipeline.training.partial_scores`); the caller discards it once
    its outputs are written."""
    items = data.split_items(split, max_images)
    if len(items.image_rows) == 0 or len(items.captions) == 0:
        raise ValueError(f"split '{split}' of {data.names['table']} has {len(items.image_rows)} images and "
                         f"{len(items.captions)} captions; both must be non-empty to score it")
    image_rep, text_rep = encode_split(method, data, items, batch_size=batch_size, device=device, amp=amp,
                                       progress=progress)
    dedup = metric_options(metrics_params, dataset)["dedup_texts"]
    keys = [data.text.ids[c] for c in items.captions] if dedup else None
    caption_image = np.searchsorted(items.image_rows, data.caption_rows[items.captions])
    partial = None
    if partial_key is not None:
        folder, key = partial_key
        partial = PartialScores(folder, {**key, "items": items_digest(items.image_rows, items.captions),
                                         "threads": torch.get_num_threads(), "device": str(device)})
    source = score_source(method, image_rep, text_rep, len(items.image_rows), len(items.captions),
                          progress=progress, partial=partial)
    return SplitScores(items, source, caption_image, keys)


def split_metrics(scores: SplitScores, data: RetrievalData, *, metrics_params: dict, dataset: str,
                  protocol: Any = None, device: torch.device | None = None, progress: bool = False,
                  probabilities: tuple[np.ndarray, np.ndarray] | None = None, per_query: dict | None = None) -> dict:
    """`evaluate_similarity` on a scored split; `protocol` overrides the dataset's configured one;
    `probabilities` (images, captions) add the classifier's Micro-F1 per modality; `per_query` (a dict)
    receives the per-query values."""
    options = metric_options(metrics_params, dataset)
    options.pop("dedup_texts")
    if protocol is not None:
        options["protocol"] = protocol
    labels = data.labels[scores.items.image_rows] if data.info.num_labels else None
    if probabilities is not None and labels is not None:
        options.update(image_logits=probabilities[0], text_logits=probabilities[1], from_logits=False)
    return evaluate_similarity(scores.source, image_labels=labels, caption_image=scores.caption_image,
                               text_keys=scores.text_keys, n_images=len(scores.items.image_rows),
                               n_texts=len(scores.items.captions), device=device, progress=progress,
                               per_query=per_query, **options)


# Facts of an evaluation that are not measurements: gallery sizes (data) and cut-offs (params). A DVC
# metrics file leaves them out, so `dvc exp show` lists results only.
NOT_MEASURED = ("n_images", "n_texts", "ndcg_k", "map_k")


def metrics_file(result: dict) -> dict:
    """The measured values of an `evaluate_similarity` result, as the evaluate stage writes them.

    The protocol moves into the key names: the first protocol's plain keys get its prefix (`coco5k_ndcg_ave`),
    except for the default protocol "all", whose keys stay plain; `pipeline.metrics.protocol_view` reads both.
    """
    from pipeline.metrics.schema import PROTOCOLS

    protocol = result.get("protocol", "all")
    out = {}
    for key, value in result.items():
        prefix = next((p for p in PROTOCOLS if key.startswith(f"{p}_")), None)
        plain = key[len(prefix) + 1:] if prefix else key
        if key == "protocol" or plain in NOT_MEASURED:
            continue
        out[key if prefix or protocol == "all" else f"{protocol}_{key}"] = value
    return out


def split_rankings(scores: SplitScores, n: int = 10, device: torch.device | None = None) -> dict[str, np.ndarray]:
    """Top-n retrievals of the split (indices into its images / captions)."""
    return top_retrievals(scores.source, n, text_keys=scores.text_keys, n_images=len(scores.items.image_rows),
                          n_texts=len(scores.items.captions), device=device)


# `train.select_metric` value selecting the epoch of the lowest mean training loss (no validation metric).
TRAIN_LOSS = "train_loss"


def describe_selection(key: str, value: float) -> str:
    """How a log names a selection value: "training loss 0.4018" (the loss, not its negation) or
    "validation ndcg_ave 71.20"."""
    return f"training loss {-value:.4f}" if key == TRAIN_LOSS else f"validation {key} {value:.2f}"


def selection_key(select_metric: str, has_labels: bool, method_default: str | None = None) -> str:
    """The validation metric used for model selection: `select_metric`, or for "auto" the method's
    preference, else label-wise NDCG (rsum on a dataset without labels)."""
    if select_metric != "auto":
        return select_metric
    if method_default:
        return method_default
    return "ndcg_ave" if has_labels else "rsum"
