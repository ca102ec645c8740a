"""Training objectives shared by the methods.

- `label`: the multi-label loss of papers/000 Eq. 4 (official-code form).
- `context`: cross-entropy of masked-segment prediction (Eq. 5).
- `consistency`: the inter/intra-modal consistency loss of Eq. 1 (IMC) and the triplet
  consistency loss of the "Ours+Con" ablation (Eq. 1 is also DSCMR's common-space loss).
- `correlation`: deep CCA's total-correlation objective (imported from its module: it needs
  `pipeline.models.baselines.linalg`).
- `discrimination`: DSCMR's label-space and modality-invariance losses.
"""
from pipeline.losses.consistency import imc_loss, triplet_consistency_loss
from pipeline.losses.context import masked_prediction_loss
from pipeline.losses.label import label_loss

__all__ = ["imc_loss", "label_loss", "masked_prediction_loss", "triplet_consistency_loss"]
