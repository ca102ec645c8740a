"""How many of the sampled (masked) segments does the Semantic Sharing official context loss use? (issue 26 item 7)

    python bench/ss_mask_selection.py [--batches 200] [--batch-size 64] [--seed 0]

The official `BackNet.forward` (`model/Model.py`) gathers the segments to predict by walking the batch's
items `f` in `range(min(len(masklist), L))`, L being the sequence length of the batch (36 for RoIs, the
longest caption for words), and skips a segment whose index is >= L. Items at batch positions >= L are
therefore never predicted. xmr predicts every sampled segment. This script draws xmr's own inputs and masks
(every valid segment with probability `mask_prob` 0.15, as `random_segment_mask`), applies the official
selection rule to them, and prints the fraction of sampled segments that rule keeps:
- images: 36 RoIs per image (xmr's `extract.num_boxes`), all valid;
- words: the embedded `shapes` captions (generated from params.yaml's `data.shapes`, tokenised as the text
  stage does) and, when ../shared/coco-mini is present, real COCO captions; batches of random captions
  padded to their longest.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data.shapes import generate_image  # noqa: E402
from pipeline.text.tokenizer import tokenize  # noqa: E402

MASK_PROB = 0.15
NUM_ROIS = 36
COCO_CAPTIONS = ROOT.parent.parent / "shared" / "coco-mini" / "annotations" / "captions_train2017.json"


def official_kept(masked: np.ndarray, length: int) -> int:
    """Sampled segments the official rule keeps: items below min(batch, L), segment index below L."""
    items = min(masked.shape[0], length)
    return int(masked[:items, :length].sum())


def measure(lengths: list[int], batches: int, batch_size: int, rng: np.random.Generator) -> dict:
    """Mean share of sampled segments kept, over `batches` random batches of items with these lengths."""
    kept = total = 0
    for _ in range(batches):
        batch = rng.choice(lengths, size=batch_size, replace=False)
        width = int(batch.max())
        valid = np.arange(width)[None, :] < batch[:, None]
        masked = (rng.random(valid.shape) < MASK_PROB) & valid
        kept += official_kept(masked, width)
        total += int(masked.sum())
    return {"kept": kept, "sampled": total, "share": kept / total}


def shapes_lengths(n_images: int) -> list[int]:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["shapes"]
    return [len(tokenize(c)) for i in range(n_images) for c in generate_image(i, p)[2]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--images", type=int, default=400, help="shapes images whose captions are drawn from")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = {"images (36 RoIs)": measure([NUM_ROIS] * (args.batch_size * 2), args.batches, args.batch_size, rng),
            "words, shapes captions": measure(shapes_lengths(args.images), args.batches, args.batch_size, rng)}
    if COCO_CAPTIONS.is_file():
        captions = json.loads(COCO_CAPTIONS.read_text())["annotations"]
        rows["words, COCO captions"] = measure([max(1, len(tokenize(a["caption"]))) for a in captions],
                                               args.batches, args.batch_size, rng)
    print(f"batch {args.batch_size}, mask probability {MASK_PROB}, {args.batches} batches, seed {args.seed}")
    for name, r in rows.items():
        print(f"{name:24s} kept {r['kept']:6d} of {r['sampled']:6d} sampled segments = {100 * r['share']:.1f}%")


if __name__ == "__main__":
    main()
