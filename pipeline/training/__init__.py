"""Training every retrieval method: method registry, data layer, the loop, checkpoints, scoring.

The method contract the loop drives (`RetrievalMethod`, the batch types) is one layer below, in
`pipeline.contract`. Submodules are imported explicitly (`pipeline.training.loop`, ...); this package file
stays empty so that `pipeline.params` can read `pipeline.training.schema` and `xmr methods` can read
`pipeline.training.registry` without importing torch.
"""
