"""`xmr tokenize <dataset>`: captions of the prepared table -> token ids, vocabulary, word embeddings."""
from __future__ import annotations

import logging
from pathlib import Path

import typer

from pipeline.data.table import read_table, table_path
from pipeline.io import output_lock
from pipeline.params import dataset_params, load_params
from pipeline.text.store import text_dir
from stages.common import DATA_OPTION, PARAMS_OPTION, stage_errors


@stage_errors
def main(
    dataset: str = typer.Argument(..., help="Dataset name (an entry under `data` in params.yaml)."),
    params: Path = PARAMS_OPTION,
    data_dir: Path = DATA_OPTION,
) -> None:
    """Tokenise every caption of data/<dataset>/table.parquet and attach word vectors.

    Reads: the prepared table; the word2vec file `text.word2vec_path` if set (converted once to a memory-mappable copy).

    Writes data/<dataset>/text/: vocab.json (ids 0 <pad>, 1 <unk>, 2 <mask>, then training-split words by frequency), tokens.parquet (row, caption_index, ids per caption), embeddings.npy ([V, text.embedding_dim] float32, <pad> zeros), stats.json (counts, unk_rate, oov_rate).

    Params: text.max_len (tokens kept per caption), text.min_count (rarer training words become <unk>), text.word2vec_path (null: train Word2Vec on the training captions with text.w2v_epochs, text.w2v_window, text.w2v_skipgram), text.word2vec_cache_dir (folder of the native copy; null: next to the file), text.embedding_dim, seed.
    """
    from pipeline.text.build import build_text_data  # imported here: nltk costs seconds at every `xmr` start

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipeline.text").setLevel(logging.INFO)
    cfg = load_params(params)
    dataset_params(cfg, dataset, str(params))
    table = read_table(table_path(data_dir, dataset))
    out = text_dir(data_dir, dataset)
    with output_lock(out):
        stats = build_text_data(table, cfg["text"], cfg["seed"], out, dataset=dataset, progress=True)
    typer.echo(f"{out}: {stats['captions']} captions, vocabulary {stats['vocab_size']}, "
               f"oov_rate {stats['oov_rate']:.4f} (vectors: {stats['vectors']['source']})")
