"""Declarations of the Table-1 baselines of papers/000 (`pipeline/models/baselines/`): their sections
and value rules are in `pipeline/models/baselines/params.py`."""
from __future__ import annotations

from pipeline.methods import LABEL_WISE, Declaration, between, one_of, transformer_shape
from pipeline.models.baselines.params import BASELINE_SCHEMAS, check_baseline_section

ORDER = 30


# ViLBERT's streams are transformers: the same shape rules as the Semantic Sharing encoder.
_EXTRA_RULES = {"vilbert": (between("d_model", 1, integer=True), between("dropout", 0, 1, high_open=True),
                            transformer_shape, one_of("activation", "relu", "gelu"))}


def _baseline(name: str, cls: str, paper: str, needs_labels: bool, description: str,
              closed_form: bool = False) -> Declaration:
    return Declaration(name, f"pipeline.models.baselines.{name}:{cls}", paper, LABEL_WISE, needs_labels, description,
                       BASELINE_SCHEMAS[name], (check_baseline_section, *_EXTRA_RULES.get(name, ())), closed_form)


DECLARED = [
    _baseline("cca", "CCAMethod", "Hotelling 1936 (CCA)", False,
              "canonical correlation of pooled RoI and caption features", closed_form=True),
    _baseline("lcfs", "LCFS", "Wang et al., ICCV 2013 (LCFS)", True,
              "coupled regression onto labels with l21 and trace-norm terms", closed_form=True),
    _baseline("jfssl", "JFSSL", "Wang et al., TPAMI 2016 (JFSSL)", True,
              "regression onto labels, l21 and a multimodal graph term", closed_form=True),
    _baseline("dcca", "DCCA", "Andrew et al., ICML 2013 (DCCA)", False,
              "two MLPs trained on total correlation, then linear CCA"),
    _baseline("dscmr", "DSCMR", "Zhen et al., CVPR 2019 (DSCMR)", True,
              "label-space and common-space discrimination with modality invariance"),
    _baseline("scml", "SCML", "Song and Tan, 2019 (SCML)", True,
              "one network learned from the modalities in sequence, meta-gradient"),
    _baseline("vilbert", "ViLBERT", "Lu et al., NeurIPS 2019 (ViLBERT)", False,
              "two-stream co-attentional transformer scoring pairs, from scratch"),
]
