"""Why small decodes run without flash attention: speed and batch invariance, measured.

Compares, on all-MiniLM-L6-v2 F16 with 2 threads: one short text per decode and
packed 256-token decodes, with flash attention on or off, and the worst difference
between a text embedded alone and inside packed batches for three policies.
Writes bench/attention.md.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import short_texts
from embellama import prepare_default_model
from embellama.model.native import FLASH_ATTENTION_TILE, NativeModel, NativeParams


def backend(path: str, *, small_flash: bool, large_flash: bool) -> NativeModel:
    """A backend whose two contexts use the given attention kind."""
    b = NativeModel(NativeParams(path, 512, 16, 2, 0))
    b._large = b._create_context(b.params, 512, 512, flash_attention=large_flash)
    b._small = b._create_context(
        b.params, FLASH_ATTENTION_TILE, FLASH_ATTENTION_TILE, flash_attention=small_flash
    )
    b._contexts += [b._large, b._small]
    return b


def pooled(b: NativeModel, seqs: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for tokens in b.decode(seqs):
        v = tokens.mean(axis=0)
        out.append(v / np.linalg.norm(v))
    return out


def packs(lengths: list[int], budget: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups, current, used = [], [], 0
    for i in order:
        if current and (used + lengths[i] > budget or len(current) >= 16):
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    return [*groups, current]


def main() -> None:
    path = str(prepare_default_model().path)
    variants = {
        "flash attention everywhere": backend(path, small_flash=True, large_flash=True),
        "plain attention everywhere": backend(path, small_flash=False, large_flash=False),
        "plain below 64 tokens, flash above (embellama)": backend(
            path, small_flash=False, large_flash=True
        ),
    }
    first = next(iter(variants.values()))
    shorts = [first.tokenize(t.encode()) for t in short_texts(200, seed=7)]
    rng = random.Random(1)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "search",
        "embedding",
        "vector",
        "model",
        "Ünïcödé",
        "漢字",
        "🙂",
        "retrieval",
        "local",
    ]
    varied = [
        first.tokenize(" ".join(rng.choice(words) for _ in range(rng.randint(1, 120))).encode())
        for _ in range(200)
    ]
    rows = []
    for name, b in variants.items():
        single, packed = [], []
        for _ in range(3):
            started = time.perf_counter()
            for t in shorts:
                b.decode([t])
            single.append((time.perf_counter() - started) / len(shorts) * 1000)
            started = time.perf_counter()
            for group in packs([len(t) for t in shorts], 256):
                b.decode([shorts[i] for i in group])
            packed.append(len(shorts) / (time.perf_counter() - started))
        alone = np.stack([pooled(b, [t])[0] for t in varied])
        worst = 0.0
        for budget in (128, 256, 512):
            got = np.zeros_like(alone)
            for group in packs([len(t) for t in varied], budget):
                for i, v in zip(group, pooled(b, [varied[i] for i in group]), strict=True):
                    got[i] = v
            worst = max(worst, float(np.abs(got - alone).max()))
        rows.append(
            f"| {name} | {statistics.median(single):.2f} | {statistics.median(packed):.0f} | {worst:.1e} |"
        )
    lines = [
        "# Attention kernel per decode size",
        "",
        f"Machine: {machine()}; all-MiniLM-L6-v2 F16, 2 threads. 200 short texts (8-40 words);"
        " invariance over 200 varied texts (1-120 words, multilingual, emoji) packed at 128/256/512 tokens.",
        "",
        "| policy | one short text, ms | packed 256-token decodes, texts/s | worst alone-vs-batched |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "ggml's CPU flash attention uses a per-row kernel (F16 accumulation) below 64 query rows and a tiled",
        "kernel (F32 accumulation) above, so with flash attention everywhere a short text's vector depends",
        "on whether it was decoded alone. Plain attention is invariant but slow on packed batches (its",
        "attention matrix spans the whole batch). embellama runs decodes under 64 tokens on a plain-attention",
        "context and larger ones on a flash-attention context: fastest for a single text, fastest for",
        "packs, and within the 1e-4 invariance bound.",
        "",
    ]
    (Path(__file__).resolve().parent / "attention.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
