"""Corpus jobs: a file of texts in, a Parquet file of vectors out (`embellama embed`)."""

from embellama.corpus.job import CorpusOptions, CorpusProgress, CorpusReport, embed_corpus
from embellama.corpus.parts import PartStore
from embellama.corpus.sources import Chunk, CorpusSource, open_source

__all__ = [
    "Chunk",
    "CorpusOptions",
    "CorpusProgress",
    "CorpusReport",
    "CorpusSource",
    "PartStore",
    "embed_corpus",
    "open_source",
]
