"""The method contract: what every retrieval method implements and the data types it consumes.

The bottom layer of the methods: `pipeline.models` builds on it, `pipeline.training` (loop, scoring,
checkpoints, registry) drives any method through it, and it imports neither.

- `method`: `RetrievalMethod`, the base class the loop trains and scoring calls.
- `batches`: `DataInfo` (the dataset facts a model is built for), `ImageBatch`, `TextBatch`, `PairBatch`
  and the reserved vocabulary ids.
"""
