"""Model building blocks and the methods built from them.

- `encoder`: the shared transformer encoder (and the one-FC replacement of the w/o T ablation).
- `segments`: per-modality segment inputs phi(psi1(x) + psi2(position)) and random segment masking.
- `bert`: key mapping from a HF BertModel state dict to the encoder.
- `semantic_sharing`: the Semantic Sharing method of papers/000 and its ablations, one class.
Other methods (SCAN, dual-path, the label-wise baselines) have their own modules beside these; every
method implements `pipeline.contract.method.RetrievalMethod` (the layer below; nothing here imports
`pipeline.training`) and is listed in `pipeline.training.registry`.
"""
