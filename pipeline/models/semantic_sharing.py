"""Semantic Sharing (papers/000): one shared encoder and classifier for image and text segments.

One class serves the method and its Table-1 ablations, each a method name selecting `Switches`:

| name    | change from `ss`                                                          |
|---------|---------------------------------------------------------------------------|
| ss      | full: regions, shared transformer, L = L1 + lambda * L2                  |
| ss_con  | + triplet consistency loss (con_weight, con_margin)                      |
| ss_wo_r | one global segment per item (mean of RoIs / of words) + one shared FC; L1 |
| ss_wo_t | one shared FC instead of the transformer                                  |
| ss_wo_c | no masked-segment prediction (L1 only)                                    |
| ss_wo_l | no label prediction (lambda * L2 only)                                    |
| st      | separate encoder + classifier per modality, trained side by side         |
| imc     | Eq. 1 (inter/intra-modal consistency) only                                |

Retrieval embedding as the official code: per segment `l2norm(sigmoid(g(h)))`, averaged over the
valid segments; it is also the prediction y_pred of the label loss (Eq. 4). Context loss (Eq. 5):
15% of the segments are sampled; g_v predicts the RoI's detector class, g_w the word id. Options (the
recipe sets them, pipeline/training/recipes.py): `context_loss` "logits" (paper: cross-entropy on
logits) or "sigmoid" (official: cross-entropy applied to sigmoid outputs); `mask_rois` true (paper:
sampled RoIs are replaced by a learned [MASK]) or false (official: predicted from unmasked inputs;
words are always replaced by <mask>). One forward pass serves both losses, as in the official code.
`input_embedding` "paper" or "official" (the segment inputs, `pipeline/models/segments.py`) and `layer_norm`
"standard" or "official" (the encoder's LayerNorm, `pipeline/models/encoder.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.contract.batches import DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.contract.method import RetrievalMethod, build_kwargs_word_vectors
from pipeline.losses import imc_loss, label_loss, masked_prediction_loss, triplet_consistency_loss
from pipeline.models.bert import load_bert_into
from pipeline.models.encoder import FCEncoder, TransformerEncoder
from pipeline.models.segments import ImageSegments, TextSegments, masked_mean, random_segment_mask

IMAGE, TEXT = 0, 1


@dataclass(frozen=True)
class Switches:
    regions: bool = True            # False: one global segment per item (w/o R)
    encoder: str = "transformer"    # "transformer" or "fc" (w/o T, w/o R)
    shared: bool = True             # False: one encoder + classifier per modality (ST)
    label: bool = True              # label prediction L1 (Eq. 4)
    context: bool = True            # masked-segment prediction L2 (Eq. 5)
    consistency: str | None = None  # "triplet" (Ours+Con) or "imc" (Eq. 1)


VARIANTS: dict[str, Switches] = {
    "ss": Switches(),
    "ss_con": Switches(consistency="triplet"),
    "ss_wo_r": Switches(regions=False, encoder="fc", context=False),
    "ss_wo_t": Switches(encoder="fc"),
    "ss_wo_c": Switches(context=False),
    "ss_wo_l": Switches(label=False),
    "st": Switches(shared=False),
    "imc": Switches(label=False, context=False, consistency="imc"),
}


class SemanticSharing(RetrievalMethod):
    needs_labels = True
    # 2: `input_embedding: official` computes the official code's arithmetic (issue 26); version-1 models
    # of it had other modules and sums.
    config_version = 2

    def __init__(self, name: str, settings: dict, info: DataInfo, lam: float | None = None,
                 word_vectors: np.ndarray | None = None):
        super().__init__(name, settings, info, lam)
        if name not in VARIANTS:
            raise ValueError(f"SemanticSharing has no variant '{name}' (known: {', '.join(VARIANTS)})")
        sw = self.switches = VARIANTS[name]
        if sw.context and lam is None:
            raise ValueError(f"method '{name}' weighs its context loss by the top-level 'lambda', which is missing")
        d = settings["d_model"]
        form = settings.get("input_embedding") or "paper"  # null (an ablation without a recipe): the paper's
        self.image_in = ImageSegments(info.feature_dim, d, settings["phi"], settings["dropout"], form)
        self.text_in = TextSegments(info.vocab_size, info.word_dim, d, settings["phi"], settings["dropout"],
                                    settings["text_gru"], build_kwargs_word_vectors(word_vectors, info),
                                    settings["finetune_words"], form)
        copies = 1 if sw.shared else 2
        self.encoders = nn.ModuleList(self._make_encoder() for _ in range(copies))
        self.classifiers = nn.ModuleList(nn.Linear(d, info.num_labels) for _ in range(copies))  # g
        if sw.context:
            self.region_head = nn.Linear(d, info.num_detector_classes)  # g_v
            self.word_head = nn.Linear(d, info.vocab_size)              # g_w
        if settings.get("bert_checkpoint"):
            for encoder in self.encoders:
                load_bert_into(encoder, settings["bert_checkpoint"])

    def _make_encoder(self) -> nn.Module:
        s = self.settings
        if self.switches.encoder == "fc":
            return FCEncoder(s["d_model"], s["dropout"])
        return TransformerEncoder(s["d_model"], s["layers"], s["heads"], s["d_ff"], s["dropout"],
                                  s["activation"], s["norm_first"],
                                  layer_norm="official" if s.get("layer_norm") == "official" else "torch")

    def text_parameters(self) -> list[nn.Parameter]:
        """The parameters only the text path uses (`train.grad_clip_scope: text`; the official code clips its
        text encoder only): the word inputs, and with separate encoders (`st`) the text encoder and
        classifier."""
        params = list(self.text_in.parameters())
        if not self.switches.shared:
            params += [*self.encoders[TEXT].parameters(), *self.classifiers[TEXT].parameters()]
        return params

    def _part(self, modality: int) -> int:
        return 0 if self.switches.shared else modality

    # --- forward pieces -------------------------------------------------------------------------
    def _image_hidden(self, images: ImageBatch, masked: torch.Tensor | None = None):
        x = self.image_in(images.features, images.positions, masked, pooled=not self.switches.regions)
        h = self.encoders[self._part(IMAGE)](x, None)  # all RoIs are valid
        return h, torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)

    def _text_hidden(self, texts: TextBatch, masked: torch.Tensor | None = None):
        pooled = not self.switches.regions
        x = self.text_in(texts.ids, texts.lengths, masked, pooled=pooled)
        if pooled:
            valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        else:  # an empty caption keeps its first (pad) segment so that attention has a key
            valid = torch.arange(x.shape[1], device=x.device) < texts.lengths.clamp_min(1).unsqueeze(1)
        return self.encoders[self._part(TEXT)](x, valid), valid

    def _embed(self, modality: int, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.classifiers[self._part(modality)](h).float())
        scores = scores / scores.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return masked_mean(scores, valid)

    # --- RetrievalMethod protocol ---------------------------------------------------------------
    def encode_images(self, images: ImageBatch) -> torch.Tensor:
        return self._embed(IMAGE, *self._image_hidden(images))

    def encode_texts(self, texts: TextBatch) -> torch.Tensor:
        return self._embed(TEXT, *self._text_hidden(texts))

    def _probabilities(self, modality: int, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor | None:
        if not self.switches.label:  # the classifier of w/o L and IMC is never trained to classify
            return None
        return masked_mean(torch.sigmoid(self.classifiers[self._part(modality)](h).float()), valid)

    def classify_images(self, images: ImageBatch) -> torch.Tensor | None:
        """Segment-averaged sigmoid outputs of g: the shared classifier's label probabilities."""
        return self._probabilities(IMAGE, *self._image_hidden(images))

    def classify_texts(self, texts: TextBatch) -> torch.Tensor | None:
        return self._probabilities(TEXT, *self._text_hidden(texts))

    def training_loss(self, batch: PairBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sw, img, txt = self.switches, batch.images, batch.texts
        mask_v = mask_w = None
        if sw.context:
            p = self.settings["mask_prob"]
            mask_v = random_segment_mask(img.classes >= 0, p)
            mask_w = random_segment_mask(torch.arange(txt.ids.shape[1], device=txt.ids.device)
                                         < txt.lengths.unsqueeze(1), p)
        mask_rois = self.settings.get("mask_rois")
        h_v, valid_v = self._image_hidden(img, mask_v if mask_rois is None or mask_rois else None)
        h_w, valid_w = self._text_hidden(txt, mask_w)
        z_v, z_w = self._embed(IMAGE, h_v, valid_v), self._embed(TEXT, h_w, valid_w)

        parts: dict[str, torch.Tensor] = {}
        total = z_v.new_zeros(())
        if sw.label:
            parts["label"] = label_loss(torch.cat([z_v, z_w]), torch.cat([img.labels, txt.labels]))
            total = total + parts["label"]
        if sw.context:
            form = self.settings.get("context_loss") or "logits"
            parts["context_image"] = masked_prediction_loss(self.region_head(h_v[mask_v]), img.classes[mask_v], form)
            parts["context_text"] = masked_prediction_loss(self.word_head(h_w[mask_w]), txt.ids[mask_w], form)
            total = total + self.lam * (parts["context_image"] + parts["context_text"])
        if sw.consistency == "triplet":
            negatives = ((img.labels @ txt.labels.T) == 0) & (img.rows.unsqueeze(1) != txt.rows.unsqueeze(0))
            parts["consistency"] = triplet_consistency_loss(z_v, z_w, negatives, self.settings["con_margin"])
            total = total + self.settings["con_weight"] * parts["consistency"]
        elif sw.consistency == "imc":
            parts["consistency"] = imc_loss(z_v, z_w, img.labels, txt.labels)
            total = total + parts["consistency"]
        return total, {k: v.detach() for k, v in parts.items()}
