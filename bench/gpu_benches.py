"""The five benchmarks of `make gpu-check`, each a function of (device, size) returning one dict.

Every bench reports items/s on the device, the work per item (FLOPs counted by
`torch.utils.flop_counter.FlopCounterMode` on the real shapes; bytes estimated from the tensors the
code must move) and a CPU rate of the same code on the same shapes, timed on fewer items and scaled
per item (`cpu_items` in each size). Weights are random: speed does not depend on them, except
where noted (RoI selection). Sizes come from `bench/gpu_check.py` (full on a GPU, tiny in the dry run).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(fn) -> float | None:
    """FLOPs of one call of `fn` (matmuls and convolutions; elementwise work is not counted); None
    (no compute ratio) if the counter fails, so that the measured rate is still reported."""
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())
    except Exception as err:  # noqa: BLE001
        print(f"[gpu-check] FLOP counter failed: {type(err).__name__}: {err}", file=sys.stderr)
        return None


def timed_rate(fn, items_per_call: int, calls: int, device: torch.device, warmup: int = 1) -> float:
    """Items/s of `calls` calls of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return items_per_call * calls / (time.perf_counter() - t0)


def top_ops(fn, device: torch.device, n: int = 8) -> list[dict]:
    """Where the time of one call of `fn` goes: the `n` operators with the most self time on the
    device (CUDA kernels' time on a GPU, CPU time on the CPU), from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        with profile(activities=activities) as prof:
            fn()
            sync(device)
    except Exception as err:  # noqa: BLE001  (a profile is a diagnosis: never lose the rate for it)
        return [{"op": f"profiler failed: {type(err).__name__}: {err}", "self_ms": 0.0, "calls": 0, "share": 0.0}]
    rows = []
    for e in prof.key_averages():
        if not str(getattr(e, "device_type", "CPU")).endswith("CPU"):
            continue  # kernels: their time is already in the operator that launched them
        own = (getattr(e, "self_device_time_total", None) if device.type == "cuda" else None)
        if own is None:
            own = e.self_cpu_time_total
        rows.append({"op": e.key, "self_ms": own / 1000.0, "calls": e.count})
    total = sum(r["self_ms"] for r in rows) or 1.0
    rows.sort(key=lambda r: -r["self_ms"])
    return [dict(r, share=r["self_ms"] / total) for r in rows[:n]]


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# --- BUTD R101-C4 extraction ------------------------------------------------------------------------------

def _butd(size: dict, device: torch.device, autocast: bool, detector=None):
    """The detector (built once, random weights) and extraction settings for `device` and `autocast`."""
    from pipeline.detection.butd import ButdConfig, build_butd, init_random_
    from pipeline.detection.detectors import LoadedDetector

    if detector is not None:
        return detector, _butd_settings(size, device, autocast)
    cfg = ButdConfig(blocks=tuple(size["blocks"]), min_size=size["height"], max_size=size["width"],
                     proposals=size["proposals"], pre_nms_proposals=size["pre_nms"], pool_size=size["pool"],
                     num_classes=size["classes"])
    model = init_random_(build_butd(cfg)).eval().to(device)
    if device.type == "cuda":  # as extract_features does
        model.to(memory_format=torch.channels_last)
    detector = LoadedDetector("butd_r101_c4", model, [f"vg_{i}" for i in range(cfg.num_classes - 1)], 2048,
                              "random", "0" * 64)
    return detector, _butd_settings(size, device, autocast)


def _butd_settings(size: dict, device: torch.device, autocast: bool):
    from pipeline.detection.settings import extract_settings
    from pipeline.params import validate

    params = validate({"datasets": ["b"], "data": {"b": {"kind": "coco"}},
                       "extract": {"device": str(device), "autocast": autocast, "proposals": size["proposals"],
                                   "num_boxes": size["num_boxes"],
                                   "min_size": size["height"], "max_size": size["width"]}})
    return extract_settings(params, "b")


def butd_extraction(device: torch.device, size: dict) -> dict:
    """Images/s of `describe_batch` (detector + RoI selection + copy back) on decoded uint8 images of
    height x width, fp32 and bf16 autocast; peak GPU memory. JPEG decode and Zarr writes are not
    included (they run on DataLoader workers and a writer thread beside the GPU)."""
    from pipeline.detection.extract import describe_batch

    gen = torch.Generator().manual_seed(0)
    h, w, bs = size["height"], size["width"], size["batch"]
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen) for _ in range(bs)]
    if device.type == "cuda":
        images = [im.pin_memory() for im in images]
    out = {"what": f"BUTD R101-C4 extraction, {h}x{w}, batch {bs}, {size['proposals']} proposals, "
                   f"{size['pool']}x{size['pool']} RoIPool, {size['num_boxes']} RoIs kept, random weights",
           "unit": "images/s", "modes": {}}
    detector = None
    for mode, autocast in (("fp32", False), ("bf16", True)):
        detector, settings = _butd(size, device, autocast, detector)
        run = lambda: describe_batch(detector, images, settings, device)  # noqa: E731
        reset_peak(device)
        rate = timed_rate(run, bs, size["batches"], device)
        flops = count_flops(lambda: describe_batch(detector, images[:1], settings, device))
        out["modes"][mode] = {"items_per_s": rate, "flops_per_item": flops, "peak_mib": peak_mib(device)}
        if mode == "fp32":
            out["profile"] = top_ops(run, device)
    cpu = torch.device("cpu")
    detector.model.to(cpu, memory_format=torch.contiguous_format)
    detector, settings = _butd(size, cpu, False, detector)
    out["cpu_items_per_s"] = timed_rate(lambda: describe_batch(detector, images[:size["cpu_items"]], settings, cpu),
                                        size["cpu_items"], 1, cpu)
    out["cpu_note"] = f"fp32, {size['cpu_items']} image(s) timed after one warm-up, {torch.get_num_threads()} threads"
    return out


# --- Semantic Sharing training ----------------------------------------------------------------------------

def _ss_data(size: dict):
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT / "tests"))
    from train import synthetic  # bench/train.py: MIRFlickr-shaped synthetic items

    from pipeline.training.data import RetrievalData

    table, store, text = synthetic(size["items"], 1, size["regions"], size["feature_dim"], size["words"], 24,
                                   size["vocab"], size["val"], size["test"])
    return RetrievalData(table, store, text, cache_splits=("train", "val")), text


def _ss_params(size: dict, device: torch.device, epochs: int = 1) -> dict:
    from pipeline.params import validate

    return validate({"train": {"device": str(device), "epochs": epochs, "batch_size": size["batch"]},
                     "methods": {"ss": dict(size["model"])}})


def ss_training(device: torch.device, size: dict) -> dict:
    """Semantic Sharing (`ss`) training on MIRFlickr-shaped items: optimizer steps/s (the loop's step:
    bf16 autocast on CUDA, Adam, clipping) and a whole `train_method` epoch (batching, host-to-device
    copies, validation), projected to 45 epochs of MIRFlickr (16,015 training pairs, 2,000 val items)."""
    from pipeline.training.loop import train_method
    from pipeline.training.registry import build_method
    from pipeline.training.scoring import autocast

    data, text = _ss_data(size)
    captions = data.split_items("train").captions
    bs = size["batch"]

    def stepper(dev: torch.device):
        params = _ss_params(size, dev)
        torch.manual_seed(0)
        method = build_method("ss", params, data.info, np.asarray(text.embeddings)).to(dev)
        opt = torch.optim.Adam(method.parameters(), lr=1e-4)
        state = {"i": 0}

        def step():
            i = state["i"] = state["i"] + 1
            batch = data.pair_batch(captions[(i * bs) % (len(captions) - bs):][:bs]).to(dev)
            with autocast(dev, params["train"]["amp"]):
                loss, _ = method.training_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(method.parameters(), params["train"]["grad_clip"] or 1e9)
            opt.step()
            return loss
        return step

    step = stepper(device)
    reset_peak(device)
    rate = timed_rate(step, bs, size["steps"], device, warmup=2)
    flops = count_flops(step)
    flops = flops / bs if flops else None
    mem = peak_mib(device)
    profile = top_ops(step, device)
    cpu = torch.device("cpu")
    cpu_rate = timed_rate(stepper(cpu), bs, size["cpu_steps"], cpu)

    with tempfile.TemporaryDirectory() as tmp:
        result = train_method("ss", _ss_params(size, device, epochs=2), data, Path(tmp) / "m", Path(tmp) / "h.json",
                              dataset="bench", progress=False, log=lambda m: None)
    epoch_s = result.history[-1]["seconds"]
    n_train, n_val = len(captions), len(data.split_items("val").image_rows)
    mir_train, mir_val = 16_015, 2_000
    # the epoch's time split as training pairs at the step rate, the rest (validation, batching) per val item
    rest = max(epoch_s - n_train / rate, 0.0)
    projected = 45 * (mir_train / rate + rest * mir_val / max(n_val, 1))
    return {"what": f"Semantic Sharing training step, MIRFlickr-shaped items ({size['regions']} RoIs x "
                    f"{size['feature_dim']}-d, {size['words']}-token captions), model "
                    f"{size['model'] or 'methods.ss schema defaults (d_model 1024, 6 layers, Bi-GRU)'}, batch {bs}",
            "unit": "pairs/s", "items_per_s": rate, "flops_per_item": flops, "peak_mib": mem,
            "precision": "bf16" if device.type == "cuda" else "fp32", "profile": profile,
            "epoch_seconds": epoch_s, "epoch_pairs": n_train, "epoch_val_items": n_val,
            "projected_45_epochs_s": projected,
            "projection": f"45 x (16,015 pairs / {rate:,.1f} pairs/s + {rest:.2f} s of non-step epoch time "
                          f"x 2,000 / {n_val} val items)",
            "cpu_items_per_s": cpu_rate,
            "cpu_note": f"fp32, {size['cpu_steps']} step(s) of batch {bs} timed after one warm-up, "
                        f"{torch.get_num_threads()} threads"}


# --- SCAN scoring -----------------------------------------------------------------------------------------

def _scan_inputs(n_img: int, n_txt: int, size: dict, device: torch.device):
    from pipeline.models.scan import l2_normalise

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(7, size["max_words"] + 1, (n_txt,), generator=g)
    width = int(lengths.max())
    regions = l2_normalise(torch.randn(n_img, size["regions"], size["dim"], generator=g))
    words = l2_normalise(torch.randn(n_txt, width, size["dim"], generator=g))
    words = words * (torch.arange(width) < lengths.unsqueeze(1)).unsqueeze(-1)
    return regions.to(device), words.to(device), lengths.to(device)


def _scan_bytes(regions: int, mean_words: float) -> tuple[float, str]:
    """Bytes a SCAN pair moves (the working tensors of regions x words, float32, each written and read
    once) and the sentence that says so."""
    from pipeline.models.scan import _WORKING_TENSORS

    return (2 * _WORKING_TENSORS * 4 * regions * mean_words,
            f"{_WORKING_TENSORS} float32 working tensors of regions x mean words ({regions} x {mean_words:.1f}) "
            f"per pair, each written and read once")


def scan_scoring(device: torch.device, size: dict) -> dict:
    """Pairs/s of SCAN's all-pairs similarity (`chunked_cross_attention`, scan_consistency: F^V + F^S,
    the evaluation path) for images x captions, at the schema's `attention_memory_mb` and a larger
    budget; projected to COCO-5K (5,000 x 25,000 pairs)."""
    from pipeline.models.scan import chunked_cross_attention
    from pipeline.training.schema import METHOD_SCHEMAS

    default_mb = METHOD_SCHEMAS["scan_consistency"]["attention_memory_mb"]
    regions, words, lengths = _scan_inputs(size["images"], size["captions"], size, device)
    pairs = size["images"] * size["captions"]

    def score(r, w, n, mb):
        with torch.no_grad():
            return chunked_cross_attention(r, w, n, lambda1=9.0, lambda2=9.0, image_grounded=True,
                                           text_grounded=True, memory_mb=mb)

    budgets = {}
    for mb in (default_mb, size["large_memory_mb"]):
        reset_peak(device)
        budgets[f"{mb:g} MB"] = {"items_per_s": timed_rate(lambda: score(regions, words, lengths, mb), pairs, 1,
                                                           device),
                                 "peak_mib": peak_mib(device)}
    best = max(budgets, key=lambda k: budgets[k]["items_per_s"])
    small = _scan_inputs(8, 64, size, device)
    flops = count_flops(lambda: score(*small, default_mb))
    flops = flops / (8 * 64) if flops else None
    bytes_per_pair, bytes_note = _scan_bytes(size["regions"], float(lengths.float().mean()))
    rate = budgets[best]["items_per_s"]
    part = max(1, size["images"] // 10)  # a tenth of the images against every caption
    best_mb = default_mb if best == f"{default_mb:g} MB" else size["large_memory_mb"]
    profile = top_ops(lambda: score(regions[:part], words, lengths, best_mb), device)
    cpu = torch.device("cpu")
    c_img, c_txt = size["cpu_items"]
    cpu_inputs = _scan_inputs(c_img, c_txt, size, cpu)
    cpu_rate = timed_rate(lambda: score(*cpu_inputs, default_mb), c_img * c_txt, 1, cpu)
    return {"what": f"SCAN scoring (scan_consistency), {size['images']:,} x {size['captions']:,} pairs, "
                    f"{size['regions']} regions, 7-{size['max_words']} words, d {size['dim']}",
            "unit": "pairs/s", "items_per_s": rate, "best_budget": best, "budgets": budgets,
            "flops_per_item": flops, "bytes_per_item": bytes_per_pair, "precision": "fp32",
            "bytes_note": bytes_note,
            "coco5k_s": 5000 * 25000 / rate, "peak_mib": budgets[best]["peak_mib"], "profile": profile,
            "cpu_items_per_s": cpu_rate,
            "cpu_note": f"{c_img} x {c_txt} pairs at {default_mb:g} MB, one call after one warm-up, "
                        f"{torch.get_num_threads()} threads"}


# --- NDCG@500 ---------------------------------------------------------------------------------------------

def _ndcg_inputs(n_q: int, n_g: int, size: dict):
    rng = np.random.default_rng(0)
    labels = lambda n: (rng.random((n, size["labels"])) < 0.12).astype(np.uint8)  # noqa: E731
    emb = lambda n: rng.standard_normal((n, size["dim"]), dtype=np.float32)  # noqa: E731
    return emb(n_q), emb(n_g), labels(n_q), labels(n_g)


def ndcg_at_k(device: torch.device, size: dict) -> dict:
    """Queries/s of image->text NDCG@k (`pipeline.metrics.score_direction` on an `EmbeddingSource`:
    cosine blocks, top-k, packed-label relevance, IDCG by distinct label row) at NUS-WIDE scale:
    2,000 queries against 190,000 gallery items, 21 labels, label-space embeddings."""
    from pipeline.metrics import score_direction
    from pipeline.metrics.scoring import make_source

    def run(dev, n_q):
        q, g, lq, lg = _ndcg_inputs(n_q, size["gallery"], size)
        pairs = make_source((q, g)).pairs(np.arange(n_q), np.arange(size["gallery"]), dev)
        lq_t, lg_t = (torch.from_numpy(x).float().to(dev) for x in (lq, lg))  # as evaluate_similarity passes them
        return lambda: score_direction(pairs, "i2t", query_labels=lq_t, gallery_labels=lg_t, truth=None,
                                       ndcg_k=size["k"], map_k=0, map_full=False, device=dev)

    reset_peak(device)
    fn = run(device, size["queries"])
    rate = timed_rate(fn, size["queries"], 1, device)
    values = fn()["ndcg"]
    mem = peak_mib(device)
    n_g, d = size["gallery"], size["dim"]
    flops = 2.0 * n_g * d  # the cosine row of one query
    bytes_per_query = 4.0 * n_g * 2 + 4.0 * n_g * d / size["queries"]  # score row written + read; gallery share
    cpu = torch.device("cpu")
    cpu_rate = timed_rate(run(cpu, size["cpu_items"]), size["cpu_items"], 1, cpu)
    return {"what": f"NDCG@{size['k']} image->text, {size['queries']:,} x {n_g:,}, {size['labels']} labels, "
                    f"{d}-d embeddings", "unit": "queries/s", "items_per_s": rate,
            "seconds": size["queries"] / rate, "queries": size["queries"], "gallery": n_g, "flops_per_item": flops, "bytes_per_item": bytes_per_query,
            "precision": "fp32", "peak_mib": mem, "mean_ndcg": float(np.mean(values)),
            "bytes_note": "a float32 score row of the gallery written and read once per query, plus the gallery "
                          "embeddings read once per chunk of queries (counted once per run)",
            "cpu_items_per_s": cpu_rate,
            "cpu_note": f"{size['cpu_items']} queries x the same gallery, one call after one warm-up, "
                        f"{torch.get_num_threads()} threads"}


# --- SCAN evaluation at COCO 5K ---------------------------------------------------------------------------

def _coco5k_batches(size: dict, start: int, stop: int, images: bool, gen_seed: int):
    """Synthetic batches of COCO-5K's shapes: float16 RoI features as stored, or captions of 7 to
    `max_words` word ids (COCO's captions average about 11 words)."""
    from pipeline.contract.batches import ImageBatch, TextBatch

    g = torch.Generator().manual_seed(gen_seed + start)
    n = stop - start
    rows = torch.arange(start, stop)
    if images:
        r = size["regions"]
        feats = torch.randn(n, r, size["feature_dim"], generator=g).half()
        return ImageBatch(rows, feats, torch.zeros(n, r, 5), torch.zeros(n, r, dtype=torch.long), torch.zeros(n, 0))
    lengths = torch.randint(7, size["max_words"] + 1, (n,), generator=g)
    ids = torch.randint(4, size["vocab"], (n, int(lengths.max())), generator=g)
    ids = ids * (torch.arange(ids.shape[1]) < lengths.unsqueeze(1))  # PAD_ID 0 after the end
    return TextBatch(rows, rows // 5, ids, lengths, torch.zeros(n, 0))


def _coco5k_method(size: dict, device: torch.device, memory_mb: float):
    from pipeline.contract.batches import DataInfo
    from pipeline.params import validate
    from pipeline.training.registry import build_method

    params = validate({"datasets": ["coco"], "data": {"coco": {"kind": "coco2014"}},
                       "methods": {"scan_t2i": {"d_model": size["dim"], "attention_memory_mb": memory_mb}}})
    info = DataInfo(feature_dim=size["feature_dim"], num_regions=size["regions"], num_detector_classes=1601,
                    vocab_size=size["vocab"], word_dim=300, num_labels=0, num_images=size["images"])
    torch.manual_seed(0)
    return build_method("scan_t2i", params, info, dataset="coco").to(device).eval()


def scan_eval_coco5k(device: torch.device, size: dict) -> dict:
    """`xmr evaluate`'s path for `scan_t2i` at COCO 5K (5,000 images x 25,000 captions, d 1024, official
    COCO recipe, random weights): encode both sides in batches of `batch`, score every pair with
    `score_source` (64 image rows a block, as a resumable evaluation does), then the coco5k and coco1k
    metrics of the 500 MB score matrix on the device. One block is timed first at each memory budget
    (`attention_memory_mb`); the whole run uses the faster one and is skipped, with the projection
    kept, when one block projects past `max_seconds`."""
    from pipeline.metrics.evaluate import evaluate_similarity
    from pipeline.training.scoring import DENSE_IMAGE_CHUNK, _concat, score_source

    n_img, n_txt, bs = size["images"], size["captions"], size["batch"]

    def encode(method, dev, n_i, n_t):
        with torch.no_grad():
            out = []
            for n, images, encode_fn in ((n_i, True, method.encode_images), (n_t, False, method.encode_texts)):
                parts = [encode_fn(_coco5k_batches(size, s, min(s + bs, n), images, 0).to(dev))
                         for s in range(0, n, bs)]
                out.append(_concat(parts))
            return out

    def block_seconds(method, image_rep, text_rep, dev):
        rows = torch.arange(min(DENSE_IMAGE_CHUNK, n_img))
        with torch.no_grad():
            method.similarity(image_rep[rows[:2]], text_rep)  # warm-up
            sync(dev)
            t0 = time.perf_counter()
            method.similarity(image_rep[rows], text_rep)
            sync(dev)
        return time.perf_counter() - t0

    reset_peak(device)
    timings = {}
    method = _coco5k_method(size, device, size["memory_mb"][0])
    sync(device)
    t0 = time.perf_counter()
    image_rep, text_rep = encode(method, device, n_img, n_txt)
    sync(device)
    encode_s = time.perf_counter() - t0
    blocks = -(-n_img // DENSE_IMAGE_CHUNK)
    for mb in size["memory_mb"]:
        method.settings["attention_memory_mb"] = mb
        timings[f"{mb:g} MB"] = blocks * block_seconds(method, image_rep, text_rep, device)
    best = min(timings, key=timings.get)
    method.settings["attention_memory_mb"] = float(best.split()[0])
    out = {"what": f"scan_t2i evaluation (official COCO recipe, d {size['dim']}), {n_img:,} images x {n_txt:,} "
                   f"captions, {size['regions']} x {size['feature_dim']} float16 features, 7-{size['max_words']} "
                   f"words, random weights", "unit": "pairs/s", "precision": "fp32",
           "encode_s": encode_s, "projected_scoring_s": timings, "best_budget": best}
    if timings[best] > size["max_seconds"]:
        out.update(skipped=f"one block projects {timings[best]:,.0f} s for the scoring, over {size['max_seconds']} s",
                   score_s=timings[best], metrics_s=0.0, measured="projected from one block")
    else:
        t0 = time.perf_counter()
        matrix = score_source(method, image_rep, text_rep, n_img, n_txt)
        sync(device)
        out["score_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        caption_image = np.arange(n_txt) // (n_txt // n_img)
        protocols = ["coco5k", "coco1k"] if n_img == 5000 else ["all"]  # the COCO folds need 5,000 images
        evaluate_similarity(matrix.numpy(), caption_image=caption_image, protocol=protocols, device=device)
        sync(device)
        out.update(metrics_s=time.perf_counter() - t0, measured="the whole run")
    out["coco5k_eval_s"] = out["encode_s"] + out["score_s"] + out["metrics_s"]
    out["items_per_s"] = n_img * n_txt / out["score_s"]
    out["peak_mib"] = peak_mib(device)
    with torch.no_grad():
        flops = count_flops(lambda: method.similarity(image_rep[:4], tuple(t[:16] for t in text_rep)))
    out["flops_per_item"] = flops / 64 if flops else None
    out["bytes_per_item"], out["bytes_note"] = _scan_bytes(size["regions"], (7 + size["max_words"]) / 2)
    cpu = torch.device("cpu")
    c_img, c_txt = size["cpu_items"]
    cpu_method = method.to(cpu)
    cpu_method.settings["attention_memory_mb"] = size["memory_mb"][0]
    ci, ct = encode(cpu_method, cpu, c_img, c_txt)
    t0 = time.perf_counter()
    with torch.no_grad():
        cpu_method.similarity(ci, ct)
    out["cpu_items_per_s"] = c_img * c_txt / (time.perf_counter() - t0)
    out["cpu_note"] = (f"{c_img} x {c_txt} pairs at {size['memory_mb'][0]:g} MB, one call, "
                       f"{torch.get_num_threads()} threads")
    return out


BENCHES = {"butd_extraction": butd_extraction, "ss_training": ss_training, "scan_scoring": scan_scoring,
           "ndcg": ndcg_at_k, "scan_eval_coco5k": scan_eval_coco5k}
