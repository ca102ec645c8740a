"""Training every retrieval method: method registry, data batches, the loop, checkpoints, scoring.

Submodules are imported explicitly (`pipeline.training.loop`, ...); this package file stays empty
so that `pipeline.params` can read `pipeline.training.schema` without importing torch.
"""
