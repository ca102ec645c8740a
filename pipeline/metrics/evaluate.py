"""`evaluate_similarity`: every retrieval metric of the project in one chunked pass per direction.

Queries are processed in chunks against the full gallery, so memory stays at about
`chunk x gallery` scores (a NUS-WIDE-sized 190k x 190k matrix never exists). Per chunk: the score
block, one ranking (top-k, or a full stable sort when mAP over the whole ranking is asked for), the
shared-label counts of the ranked items (packed label bits) and the rank of the best true item; IDCG
is computed once per distinct query label set. Everything runs on `device` (the GPU when present).
Ties follow `pipeline.metrics.ranking`: equal scores rank by gallery index, lowest first.

Output keys (one flat, JSON-ready dict; metrics are percentages except F1):
  ndcg_i2t ndcg_t2i ndcg_ave        NDCG@ndcg_k x 100 (needs labels)
  map_i2t map_t2i map_ave           mAP over the whole ranking x 100 (needs labels; map_full)
  mapk_i2t mapk_t2i mapk_ave        mAP@map_k x 100 (needs labels; map_k > 0)
  r<K>_i2t r<K>_t2i, medr_*, meanr_*, rsum   instance-level (needs caption_image)
  f1_image f1_text                  classification Micro-F1 in [0, 1] (needs logits)
  n_images n_texts protocol ndcg_k map_k
With several protocols the first gives the plain keys and each further one adds `<protocol>_<key>`.

`per_query` (a dict to fill) also returns the per-query values behind these means, for the bootstrap
intervals of `pipeline.metrics.bootstrap` (layout in `pipeline.metrics.per_query`).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from pipeline.metrics.average_precision import ap_from_hits
from pipeline.metrics.classification import f1_counts, f1_from_counts
from pipeline.metrics.errors import MetricInputError
from pipeline.metrics.label_bits import pack_labels, shared_counts
from pipeline.metrics.ndcg import (ideal_dcg, ndcg_values, official_coco_t2i_discount, relevance_histogram,
                                   shared_label_counts, standard_discount)
from pipeline.metrics.per_query import merge_folds
from pipeline.metrics.protocols import Subset, caption_positions, grouped, protocol_subsets, unique_texts
from pipeline.metrics.ranking import best_true_rank, ordered_topk, stable_order
from pipeline.metrics.recall import DEFAULT_KS, recall_summary, rsum
from pipeline.metrics.schema import T2I_DISCOUNTS
from pipeline.metrics.scoring import PairScores, ScoreSource, make_source, resolve_device


def _labels(x, n: int, what: str, device) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise MetricInputError(f"{what}: expected a 2-D multi-hot [items, labels] array, got shape {tuple(t.shape)}")
    if t.shape[0] != n:
        raise MetricInputError(f"{what} has {t.shape[0]} rows but there are {n} items to score")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise MetricInputError(f"{what} contain NaN or inf")
    if bool(((t != 0) & (t != 1)).any()):
        raise MetricInputError(f"{what} must be multi-hot (only 0 and 1)")
    return t.to(device=device, dtype=torch.float32)


def auto_chunk(n_gallery: int, memory_mb: float, full_sort: bool) -> int:
    """Queries per chunk so that the chunk's working tensors stay near `memory_mb` (a full sort also
    holds sort indices, relevance in rank order and cumulative sums for every gallery item)."""
    bytes_per_score = 64 if full_sort else 24
    return max(1, int(memory_mb * 2**20 // (bytes_per_score * max(n_gallery, 1))))


def score_direction(pairs: PairScores, direction: str, *, query_labels: torch.Tensor | None,
                    gallery_labels: torch.Tensor | None, truth: torch.Tensor | None, ndcg_k: int,
                    map_k: int, map_full: bool, discount_rows: torch.Tensor | None = None,
                    chunk_size: int | None = None, memory_mb: float = 512, progress: bool = False,
                    device=None) -> dict[str, np.ndarray]:
    """Per-query values for one direction: `ndcg`, `ap`, `apk` (fractions) and `rank` (0-based).

    `truth` is `[queries, m]` gallery indices padded with -1; `discount_rows` (t2i official COCO
    variant only) gives each query's caption position for the discount.

    NDCG and mAP@k need the relevance of the top-k items only (popcounts of packed label bits,
    `label_bits`) and IDCG, which depends only on the query's labels: it is computed once per
    *distinct* query label row against the distinct gallery label rows with their counts
    (`ideal_dcg`), so the gallery is never sorted by relevance. Whole-ranking mAP looks relevance up
    in a `[chunk, distinct gallery label rows]` block.
    """
    device = resolve_device(device)
    n_q = pairs.n_images if direction == "i2t" else pairs.n_texts
    n_g = pairs.n_texts if direction == "i2t" else pairs.n_images
    use_labels = query_labels is not None
    k_ndcg, k_map = min(ndcg_k, n_g), min(map_k, n_g)
    full_sort = use_labels and map_full
    out: dict[str, list] = {"ndcg": [], "ap": [], "apk": [], "rank": []}
    discount = standard_discount(k_ndcg, device)
    if use_labels:
        distinct, distinct_row, weight = torch.unique(gallery_labels, dim=0, return_inverse=True,
                                                      return_counts=True)
        query_bits, gallery_bits = pack_labels(query_labels), pack_labels(gallery_labels)
        if discount_rows is None:
            idcg = _ideal_dcg_by_label_row(query_labels, distinct, weight, discount, memory_mb)
    chunk = chunk_size or auto_chunk(n_g, memory_mb, full_sort)
    for start in tqdm(range(0, n_q, chunk), desc=f"{direction} queries", unit="chunk", disable=not progress,
                      leave=False):
        stop = min(start + chunk, n_q)
        scores = pairs.block(direction, start, stop)
        if use_labels:
            k_top = max(k_ndcg, k_map)
            if full_sort:
                ranked = stable_order(scores)
                relevant = shared_label_counts(query_labels[start:stop], distinct) > 0  # [chunk, distinct]
                hits = relevant.gather(1, distinct_row[ranked])  # relevance in rank order, whole gallery
                top = ranked[:, :k_top]
            else:
                top = ordered_topk(scores, k_top)
            top_relevance = shared_counts(query_bits[start:stop], gallery_bits[top])
            if discount_rows is None:
                disc, chunk_idcg = discount, idcg[start:stop]
            else:
                disc = official_coco_t2i_discount(k_ndcg, discount_rows[start:stop])
                relevance = shared_label_counts(query_labels[start:stop], distinct)
                chunk_idcg = ideal_dcg(relevance_histogram(relevance, weight), disc)
            out["ndcg"].append(ndcg_values(top_relevance[:, :k_ndcg], disc, chunk_idcg).cpu())
            if full_sort:
                out["ap"].append(ap_from_hits(hits).cpu())
            if k_map > 0:
                out["apk"].append(ap_from_hits(top_relevance[:, :k_map] > 0).cpu())
        if truth is not None:
            out["rank"].append(best_true_rank(scores, truth[start:stop]).cpu())
    return {key: torch.cat(parts).numpy() for key, parts in out.items() if parts}


def _ideal_dcg_by_label_row(query_labels: torch.Tensor, distinct_gallery: torch.Tensor, weight: torch.Tensor,
                            discount: torch.Tensor, memory_mb: float) -> torch.Tensor:
    """IDCG of every query, computed once per distinct query label row (in chunks)."""
    distinct, row = torch.unique(query_labels, dim=0, return_inverse=True)
    chunk = auto_chunk(len(distinct_gallery), memory_mb, False)
    parts = [ideal_dcg(relevance_histogram(shared_label_counts(distinct[a:a + chunk], distinct_gallery), weight),
                       discount) for a in range(0, len(distinct), chunk)]
    return torch.cat(parts)[row]


def _check_options(ndcg_k: int, map_k: int, recall_ks: Sequence[int], t2i_discount: str) -> None:
    if int(ndcg_k) < 1:
        raise MetricInputError(f"ndcg_k must be at least 1, got {ndcg_k}")
    if int(map_k) < 0:
        raise MetricInputError(f"map_k must be 0 (off) or positive, got {map_k}")
    if any(int(k) < 1 for k in recall_ks):
        raise MetricInputError(f"recall_ks must all be at least 1, got {list(recall_ks)}")
    if t2i_discount not in T2I_DISCOUNTS:
        raise MetricInputError(f"t2i_discount must be one of {T2I_DISCOUNTS}, got {t2i_discount!r}")


def _evaluate_subset(source, subset: Subset, *, image_labels, text_labels, caption_image, text_keys,
                     image_logits, text_logits, from_logits, f1_threshold, ndcg_k, map_k, map_full,
                     recall_ks, t2i_discount, device, chunk_size, memory_mb, progress,
                     per_query: dict | None = None) -> dict[str, float]:
    img_rows, txt_rows = subset.image_rows, subset.text_rows
    owner = None
    if caption_image is not None:
        owner = np.searchsorted(img_rows, caption_image[txt_rows])  # local image index of each text
    if text_keys is not None:
        first, inverse = unique_texts([text_keys[i] for i in txt_rows] if not isinstance(text_keys, np.ndarray)
                                      else text_keys[txt_rows])
        txt_rows = txt_rows[first]
    else:
        first = inverse = np.arange(len(txt_rows))
    n_img, n_txt = len(img_rows), len(txt_rows)
    pairs = source.pairs(img_rows, txt_rows, device)
    result: dict[str, float] = {"n_images": float(n_img), "n_texts": float(n_txt)}

    img_lab = txt_lab = None
    if image_labels is not None:
        img_lab = image_labels[torch.as_tensor(img_rows, device=image_labels.device)]
        txt_lab = text_labels[torch.as_tensor(txt_rows, device=text_labels.device)]
    truth_i2t = truth_t2i = None
    if owner is not None:
        truth_i2t = torch.as_tensor(grouped(owner, inverse, n_img), device=device)
        truth_t2i = torch.as_tensor(grouped(inverse, owner, n_txt), device=device)
        without = (truth_i2t[:, 0] < 0).nonzero()
        if len(without):
            raise MetricInputError(f"image row {int(img_rows[int(without[0])])} has no caption in the evaluated "
                                   f"texts, so its instance-level rank is undefined ({len(without)} such images)")
    discount_rows = None
    if t2i_discount == "official_coco":
        if caption_image is None:
            raise MetricInputError("t2i_discount 'official_coco' needs caption_image (caption positions)")
        discount_rows = torch.as_tensor(caption_positions(caption_image)[txt_rows], device=device)

    common = dict(ndcg_k=ndcg_k, map_k=map_k, map_full=map_full, chunk_size=chunk_size,
                  memory_mb=memory_mb, progress=progress, device=device)
    per = {"i2t": score_direction(pairs, "i2t", query_labels=img_lab, gallery_labels=txt_lab, truth=truth_i2t,
                                  **common),
           "t2i": score_direction(pairs, "t2i", query_labels=txt_lab, gallery_labels=img_lab, truth=truth_t2i,
                                  discount_rows=discount_rows, **common)}
    for name, key in (("ndcg", "ndcg"), ("map", "ap"), ("mapk", "apk")):
        if key in per["i2t"]:
            for d in ("i2t", "t2i"):
                result[f"{name}_{d}"] = float(per[d][key].mean() * 100.0)
            result[f"{name}_ave"] = (result[f"{name}_i2t"] + result[f"{name}_t2i"]) / 2.0
    if truth_i2t is not None:
        for d in ("i2t", "t2i"):
            result.update(recall_summary(per[d]["rank"], recall_ks, d))
        if all(k in recall_ks for k in (1, 5, 10)):
            result["rsum"] = rsum(result)
    counts = {}
    for key, logits, labels, rows in (("f1_image", image_logits, image_labels, img_rows),
                                      ("f1_text", text_logits, text_labels, txt_rows)):
        if logits is not None:
            counts[key] = f1_counts(logits[rows], _rows_np(labels, rows), f1_threshold, from_logits, key[3:] + "_logits")
            result[key] = f1_from_counts(*(int(v) for v in counts[key].sum(0)))
    if per_query is not None:
        per_query.update({f"{key}_{d}": values for d in ("i2t", "t2i") for key, values in per[d].items()}, **counts)
        # the test image each query belongs to (its bootstrap unit); texts without one are their own unit
        per_query["unit_i2t"] = np.arange(n_img)
        per_query["unit_t2i"] = owner[first] if owner is not None else n_img + np.arange(n_txt)
        per_query["n_units"] = n_img + (n_txt if owner is None else 0)
    return result


def _rows_np(labels: torch.Tensor, rows: np.ndarray) -> np.ndarray:
    """The given rows of a label tensor as a numpy array."""
    return labels[torch.as_tensor(rows, device=labels.device)].cpu().numpy()


def evaluate_similarity(scores: ScoreSource, image_labels=None, text_labels=None, caption_image=None, *,
                        protocol: str | Iterable[str] = "all", text_keys=None, image_logits=None,
                        text_logits=None, from_logits: bool = True, f1_threshold: float = 0.5,
                        ndcg_k: int = 500, map_k: int = 500, map_full: bool = True,
                        recall_ks: Sequence[int] = DEFAULT_KS, t2i_discount: str = "standard",
                        measure: str = "cosine", n_images: int | None = None, n_texts: int | None = None,
                        device=None, chunk_size: int | None = None, memory_mb: float = 512,
                        progress: bool = False, per_query: dict | None = None) -> dict:
    """Every retrieval (and optionally classification) metric for one test set.

    scores        `[n_images, n_texts]` similarity matrix (numpy or torch), or `(image_emb, text_emb)`
                  (compared by `measure`: cosine or dot), or a callable
                  `fn(image_rows, text_rows) -> [len(image_rows), len(text_rows)]` (then give
                  `n_images` and `n_texts`); rows are int64 tensors of indices into each side.
    image_labels  `[n_images, C]` multi-hot; enables NDCG and mAP.
    text_labels   `[n_texts, C]` multi-hot; default `image_labels[caption_image]`.
    caption_image `[n_texts]` index of the image each text belongs to; enables R@K, ranks, rsum.
    protocol      'all', 'coco5k', 'coco1k' or a list of them (see `pipeline.metrics.protocols`).
    text_keys     per-text identity (strings or token ids): identical texts are collapsed first.
    image_logits, text_logits  `[n, C]` classifier outputs for Micro-F1 (`from_logits`, `f1_threshold`).
    ndcg_k, map_k NDCG@k and mAP@k cut-offs (clamped to the gallery size); `map_k=0` turns mAP@k off,
                  `map_full=False` turns whole-ranking mAP (which needs a full sort) off.
    t2i_discount  'standard' or 'official_coco' (the official code's t2i COCO discount, see ndcg.py).
    chunk_size    queries per chunk (default: from `memory_mb`).
    per_query     a dict to fill with the per-query values (`pipeline.metrics.per_query.merge_folds`).
    """
    protocols = [protocol] if isinstance(protocol, str) else list(protocol)
    if not protocols:
        raise MetricInputError("protocol: give at least one protocol")
    _check_options(ndcg_k, map_k, recall_ks, t2i_discount)
    device = resolve_device(device)
    source = make_source(scores, n_images, n_texts, measure)
    n_img, n_txt = source.n_images, source.n_texts
    if n_img < 1 or n_txt < 1:
        raise MetricInputError(f"nothing to rank: {n_img} images and {n_txt} texts (both must be at least 1)")
    if caption_image is not None:
        caption_image = np.asarray(caption_image, dtype=np.int64).ravel()
        if len(caption_image) != n_txt:
            raise MetricInputError(f"caption_image has {len(caption_image)} entries but there are {n_txt} texts")
        if len(caption_image) and (caption_image.min() < 0 or caption_image.max() >= n_img):
            raise MetricInputError(f"caption_image values must be image indices in [0, {n_img}), got "
                                   f"[{caption_image.min()}, {caption_image.max()}]")
    lab_img = lab_txt = None
    if image_labels is not None:
        lab_img = _labels(image_labels, n_img, "image_labels", device)
        if text_labels is None:
            if caption_image is None:
                raise MetricInputError("text_labels: give them, or caption_image to take each text's image labels")
            lab_txt = lab_img[torch.as_tensor(caption_image, device=device)]
        else:
            lab_txt = _labels(text_labels, n_txt, "text_labels", device)
        if lab_img.shape[1] != lab_txt.shape[1]:
            raise MetricInputError(f"image_labels have {lab_img.shape[1]} labels but text_labels {lab_txt.shape[1]}")
    elif text_labels is not None:
        raise MetricInputError("text_labels were given without image_labels")
    if text_keys is not None and len(text_keys) != n_txt:
        raise MetricInputError(f"text_keys has {len(text_keys)} entries but there are {n_txt} texts")
    logits = {}
    for name, value, n in (("image_logits", image_logits, n_img), ("text_logits", text_logits, n_txt)):
        if value is not None:
            if lab_img is None:
                raise MetricInputError(f"{name} need image_labels to score the classifier against")
            arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
            if arr.ndim != 2 or arr.shape[0] != n:
                raise MetricInputError(f"{name} must be [{n}, labels], got shape {arr.shape}")
            logits[name] = arr
    if text_keys is not None and not isinstance(text_keys, np.ndarray):
        text_keys = list(text_keys)
    if caption_image is None and any(p != "all" for p in protocols):
        raise MetricInputError(f"protocols {protocols} need caption_image (the image of each text)")

    result: dict = {}
    for i, name in enumerate(protocols):
        subsets = protocol_subsets(name, caption_image if caption_image is not None else np.arange(n_txt), n_img)
        fold_values = [{} for _ in subsets]
        folds = [_evaluate_subset(source, s, image_labels=lab_img, text_labels=lab_txt,
                                  caption_image=caption_image, text_keys=text_keys,
                                  image_logits=logits.get("image_logits"), text_logits=logits.get("text_logits"),
                                  from_logits=from_logits, f1_threshold=f1_threshold, ndcg_k=int(ndcg_k),
                                  map_k=int(map_k), map_full=map_full, recall_ks=[int(k) for k in recall_ks],
                                  t2i_discount=t2i_discount, device=device, chunk_size=chunk_size,
                                  memory_mb=memory_mb, progress=progress, per_query=v)
                 for s, v in zip(subsets, fold_values)]
        averaged = {key: float(np.mean([f[key] for f in folds])) for key in folds[0]}
        prefix = "" if i == 0 else f"{name}_"
        result.update({prefix + key: value for key, value in averaged.items()})
        if per_query is not None:
            per_query.update({prefix + key: value for key, value in merge_folds(fold_values).items()})
        if i == 0:
            result["protocol"] = name
    result["ndcg_k"] = int(ndcg_k)
    result["map_k"] = int(map_k)
    return result


def protocol_view(metrics: dict, protocol: str) -> dict | None:
    """The metrics of one protocol with plain keys, from an `evaluate_similarity` dict (or None)."""
    if metrics.get("protocol") == protocol:
        others = {f"{p}_" for p in ("all", "coco5k", "coco1k") if p != protocol}
        return {k: v for k, v in metrics.items() if not any(k.startswith(o) for o in others)}
    prefix = f"{protocol}_"
    view = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
    return view or None
