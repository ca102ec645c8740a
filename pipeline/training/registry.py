"""The one list of methods: name -> builder (an import path) and the facts `xmr methods` shows.

Torch-free: listing or checking names imports no model (the builder is imported on first use). Adding a
method means: its module (a `pipeline.contract.method.RetrievalMethod`), one entry here, its params
section (`pipeline/training/schema.py` and `params.yaml`: the section and one of the `run` lists) and its
tests; `tests/test_method_registry.py` checks that these agree.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pipeline.training.schema import METHOD_SCHEMAS, USES_LAMBDA

LABEL_WISE, INSTANCE_LEVEL = "label-wise", "instance-level"


@dataclass(frozen=True)
class MethodEntry:
    builder: str         # "module:Class" of the RetrievalMethod
    paper: str
    family: str          # LABEL_WISE (multi-label relevance, NDCG) or INSTANCE_LEVEL (own pairs, R@K)
    needs_labels: bool   # the objective reads label annotations (the class says the same)
    description: str     # one line
    closed_form: bool = False  # fitted once on arrays instead of trained by epochs


_SS = "pipeline.models.semantic_sharing:SemanticSharing"
_SCAN = "pipeline.models.scan:SCAN"
_P000 = "papers/000 (Semantic Sharing)"


def _ss(description: str) -> MethodEntry:
    return MethodEntry(_SS, _P000, LABEL_WISE, True, description)


METHODS: dict[str, MethodEntry] = {
    "ss": _ss("Semantic Sharing: shared transformer over RoIs and words, label loss + lambda * context loss"),
    "ss_con": _ss("ss plus the triplet consistency loss (Ours+Con)"),
    "ss_wo_r": _ss("ablation w/o R: mean-pooled global image input and one FC"),
    "ss_wo_t": _ss("ablation w/o T: one FC instead of the transformer"),
    "ss_wo_c": _ss("ablation w/o C: no masked-segment context prediction"),
    "ss_wo_l": _ss("ablation w/o L: no label prediction"),
    "st": _ss("separate model per modality (ST / Independent)"),
    "imc": _ss("inter/intra-modal consistency of Eq. 1 only (IMC)"),
    "scan_i2t": MethodEntry(_SCAN, "papers/002 (SCAN)", INSTANCE_LEVEL, False,
                            "stacked cross attention, regions attend words, hardest-negative triplet loss"),
    "scan_t2i": MethodEntry(_SCAN, "papers/002 (SCAN)", INSTANCE_LEVEL, False,
                            "stacked cross attention, words attend regions, hardest-negative triplet loss"),
    "scan_consistency": MethodEntry(_SCAN, "papers/002 (SCAN + semantic consistency)", INSTANCE_LEVEL, False,
                                    "both SCAN directions summed plus their consistency term"),
    "dual_path": MethodEntry("pipeline.models.dual_path:DualPath", "papers/003 (dual-path instance loss)",
                             INSTANCE_LEVEL, False,
                             "one class per image, instance softmax per modality, then + ranking loss"),
    "dual_path_stage1": MethodEntry("pipeline.models.dual_path:DualPathStage1", "papers/003 (dual-path instance loss)",
                                    INSTANCE_LEVEL, False,
                                    "dual_path in stage I for every epoch: instance losses only, no ranking loss"),
    "cca": MethodEntry("pipeline.models.baselines.cca:CCAMethod", "Hotelling 1936 (CCA)", LABEL_WISE, False,
                       "canonical correlation of pooled RoI and caption features", closed_form=True),
    "lcfs": MethodEntry("pipeline.models.baselines.lcfs:LCFS", "Wang et al., ICCV 2013 (LCFS)", LABEL_WISE, True,
                        "coupled regression onto labels with l21 and trace-norm terms", closed_form=True),
    "jfssl": MethodEntry("pipeline.models.baselines.jfssl:JFSSL", "Wang et al., TPAMI 2016 (JFSSL)", LABEL_WISE,
                         True, "regression onto labels, l21 and a multimodal graph term", closed_form=True),
    "dcca": MethodEntry("pipeline.models.baselines.dcca:DCCA", "Andrew et al., ICML 2013 (DCCA)", LABEL_WISE,
                        False, "two MLPs trained on total correlation, then linear CCA"),
    "dscmr": MethodEntry("pipeline.models.baselines.dscmr:DSCMR", "Zhen et al., CVPR 2019 (DSCMR)", LABEL_WISE,
                         True, "label-space and common-space discrimination with modality invariance"),
    "scml": MethodEntry("pipeline.models.baselines.scml:SCML", "Song and Tan, 2019 (SCML)", LABEL_WISE, True,
                        "one network learned from the modalities in sequence, meta-gradient"),
    "vilbert": MethodEntry("pipeline.models.baselines.vilbert:ViLBERT", "Lu et al., NeurIPS 2019 (ViLBERT)",
                           LABEL_WISE, False, "two-stream co-attentional transformer scoring pairs, from scratch"),
}


class UnknownMethodError(ValueError):
    """A method name that is not registered."""


def check_method(name: str) -> None:
    """Raise UnknownMethodError listing the known names unless `name` is registered."""
    if name not in METHODS:
        raise UnknownMethodError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))}; "
                                 f"`xmr methods` describes them)")
    if name not in METHOD_SCHEMAS:
        raise UnknownMethodError(f"method '{name}' has no parameter section in pipeline/training/schema.py")


def uses_lambda(name: str) -> bool:
    """The method's objective reads the top-level `lambda` (it has a context loss)."""
    return name in USES_LAMBDA


def method_class(name: str) -> type:
    check_method(name)
    module, _, attr = METHODS[name].builder.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_method(name: str, params: dict, info, word_vectors=None, dataset: str | None = None):
    """A freshly initialised method from validated params (`methods.<name>` with its recipe's values for
    `dataset`'s kind, `lambda`); `info` is the dataset's `pipeline.contract.batches.DataInfo`,
    `word_vectors` an optional `[V, word_dim]` array. The context weight is `lambda * lambda_scale`."""
    from pipeline.training.recipes import dataset_kind, resolve_settings

    check_method(name)
    settings = resolve_settings(params, name, dataset_kind(params, dataset))
    lam = None
    if uses_lambda(name):
        lam = float(params["lambda"]) * float(settings.get("lambda_scale") or 1.0)
    return method_class(name)(name, settings, info, lam, word_vectors=word_vectors)


def rebuild_method(config: dict[str, Any]):
    """A method (random weights) from the `config()` it saved; raises ValueError on a bad config."""
    from pipeline.contract.batches import DataInfo

    for key in ("method", "settings", "info"):
        if key not in config:
            raise ValueError(f"model config lacks '{key}'")
    name = config["method"]
    check_method(name)
    cls = method_class(name)
    saved = config.get("config_version", 1)  # configs written before versions existed are version 1
    if saved != cls.config_version:
        raise ValueError(f"model config version {saved}, but method '{name}' now builds version "
                         f"{cls.config_version} (another model for the same settings); retrain it")
    return cls(name, config["settings"], DataInfo.from_json(config["info"]), config.get("lambda"))
