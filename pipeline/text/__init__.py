"""Text side of the pipeline: tokenisation, vocabulary, word vectors and the `data/<ds>/text/` store.

- `tokenizer`: captions -> word tokens (the tokenisation policy lives in its docstring).
- `vocab`: vocabulary from the training split, reserved ids 0 <pad>, 1 <unk>, 2 <mask>.
- `vectors`: word2vec-format files (cached once as memory-mappable gensim KeyedVectors) or
  Word2Vec trained on the captions; the embedding matrix and its out-of-vocabulary policy.
- `build`: the `tokenize` stage's work, table -> text store.
- `store`: the on-disk format and its reader `TextData`.
"""
