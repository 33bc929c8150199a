"""Corpus jobs: a file of texts in, a Parquet file of vectors out (`embellama embed`)."""

from embellama.corpus.job import (
    CorpusOptions,
    CorpusProgress,
    CorpusReport,
    EmbeddedRows,
    embed_corpus,
    embed_rows,
)
from embellama.corpus.manifest import job_manifest, model_file_fingerprint
from embellama.corpus.parts import PartStore, errors_path
from embellama.corpus.sources import Chunk, CorpusSource, open_source

__all__ = [
    "Chunk",
    "CorpusOptions",
    "CorpusProgress",
    "CorpusReport",
    "CorpusSource",
    "EmbeddedRows",
    "PartStore",
    "embed_corpus",
    "embed_rows",
    "errors_path",
    "job_manifest",
    "model_file_fingerprint",
    "open_source",
]
