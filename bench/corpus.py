"""Fixed-seed benchmark texts shared by every benchmark, so runs are comparable."""

from __future__ import annotations

import random

_WORDS = (
    "the of and to in is that for it as with was on be by this are or from at an have not "
    "which but all were when we there can more if no out so said what up its about into than "
    "them only other new some time could these two may first then do any like my now over "
    "such our man me even most made after also did many before must through back years where "
    "much your way well down should because each just those people how too little state good "
    "very make world still own see men work long get here between both life being under never "
    "day same another know while last might us great old year off come since against go came "
    "right used take three embedding vector search retrieval model local server latency cosine "
    "database index query document cluster semantic token batch throughput llama gguf python"
).split()


def mixed_texts(count: int = 1000, seed: int = 1234) -> list[str]:
    """70 % short (8-40 words), 20 % medium (40-120), 10 % long (150-250): a RAG-like mix."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        roll = rng.random()
        low, high = (8, 40) if roll < 0.7 else (40, 120) if roll < 0.9 else (150, 250)
        texts.append(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high))))
    return texts


def short_texts(count: int, seed: int = 99) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 40))) for _ in range(count)]
