"""Initialising the shared encoder from a BERT-base checkpoint (papers/001: "initialized from BERT-base").

No checkpoint ships offline; a user may point `methods.<m>.bert_checkpoint` at a HF `BertModel`
(or `BertForPreTraining`, prefix `bert.`) state dict saved with `torch.save` or as
`pytorch_model.bin`. The first `layers` of BERT's 12 are mapped onto `TransformerEncoder`
(post-norm, GELU, d_model 768, d_ff 3072); BERT's word/position embeddings are not used
(segments come from RoIs and word vectors). Head count may differ from BERT's 12: the projections
are the same matrices, only split differently.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.models.encoder import TransformerEncoder

# Our name inside layer i <- HF name inside `encoder.layer.{i}.`
_LAYER_KEYS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ff_in": "intermediate.dense",
    "ff_out": "output.dense",
    "ff_norm": "output.LayerNorm",
}
_OLD_NORM_NAMES = {"gamma": "weight", "beta": "bias"}


class BertCheckpointError(ValueError):
    """A BERT checkpoint that cannot initialise the configured encoder."""


def _normalise_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip a `bert.` prefix and map TF-era LayerNorm `gamma`/`beta` to `weight`/`bias`."""
    out = {}
    for name, value in state.items():
        if name.startswith("bert."):
            name = name[len("bert."):]
        head, _, last = name.rpartition(".")
        if "LayerNorm" in head and last in _OLD_NORM_NAMES:
            name = f"{head}.{_OLD_NORM_NAMES[last]}"
        out[name] = value
    return out


def bert_to_encoder_state(state: dict[str, torch.Tensor], layers: int, source: str = "BERT checkpoint") -> dict[str, torch.Tensor]:
    """Encoder state dict (`layers.{i}.<name>.{weight,bias}`) from a HF BertModel state dict."""
    state = _normalise_names(state)
    out = {}
    for i in range(layers):
        for ours, theirs in _LAYER_KEYS.items():
            for param in ("weight", "bias"):
                key = f"encoder.layer.{i}.{theirs}.{param}"
                if key not in state:
                    raise BertCheckpointError(f"{source}: tensor '{key}' missing (a BertModel state dict with at "
                                              f"least {layers} layers is expected)")
                out[f"layers.{i}.{ours}.{param}"] = state[key]
    return out


def load_bert_into(encoder: TransformerEncoder, path: str | Path) -> None:
    """Copy the first layers of the BERT checkpoint at `path` into `encoder` (shapes must match)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BERT checkpoint not found (set bert_checkpoint to \"\" for random init)")
    if encoder.layers and encoder.layers[0].norm_first:
        raise BertCheckpointError(f"{path}: BERT uses post-norm blocks; set norm_first: false to load it")
    if encoder.layers and encoder.layers[0].activation is not F.gelu:
        raise BertCheckpointError(f"{path}: BERT's feed-forward uses GELU; set activation: gelu to load it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise BertCheckpointError(f"{path}: not a readable torch state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise BertCheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    mapped = bert_to_encoder_state(state, len(encoder.layers), str(path))
    own = encoder.state_dict()
    for name, value in mapped.items():
        if own[name].shape != value.shape:
            raise BertCheckpointError(f"{path}: '{name}' has shape {tuple(value.shape)} in the checkpoint but "
                                      f"{tuple(own[name].shape)} in the encoder (BERT-base needs d_model 768, d_ff 3072)")
    encoder.load_state_dict(mapped, strict=False)
