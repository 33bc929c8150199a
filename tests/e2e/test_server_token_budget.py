"""Tokens per minute against a real server: the reservation covers what an input really
costs once the model's prefix or a request's instruction is put in front of it, so
concurrent requests cannot overdraw a budget; `/tokenize` is charged too; and a key's
own limits override the global ones field by field."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, serving

TPM = 2000
INSTRUCTION_KEY = "sk-budget-instruction-001"
MERGED_KEY = "sk-budget-merged-000001"
TOKENIZE_KEY = "sk-budget-tokenize-0001"
TOKENIZE_TPM = 300


@pytest.fixture(scope="module")
def budgeted(
    minilm_gguf: Path, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    config = tmp_path_factory.mktemp("budget") / "embellama.toml"
    config.write_text(f"""
[server]
api_key = ["{INSTRUCTION_KEY}"]
rate_limit_tpm = {TPM}
rate_limit_rps = 100

[[keys]]  # sets only a request rate: keeps the global tokens per minute
key = "{MERGED_KEY}"
requests_per_second = 50

[[keys]]  # sets only tokens per minute: keeps the global request rate
key = "{TOKENIZE_KEY}"
tokens_per_minute = {TOKENIZE_TPM}

[[models]]
name = "m"
path = "{minilm_gguf}"
instruction_template = "Instruct: {{instruction}}\\nQuery:"
workers = 1
threads_per_worker = 1
""")
    with serving(["--config", str(config)], server_logs) as process:
        yield process


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_long_instruction_on_tiny_inputs_is_reserved_at_its_real_cost(
    budgeted: ServerProcess,
) -> None:
    """16 one-letter queries behind a ~400-byte instruction cost ~1,000 tokens, while
    their texts alone bound ~50: reserved from the texts alone, 8 concurrent requests
    all pass and spend several budgets at once."""
    body = {
        "input": ["x"] * 16,
        "input_type": "query",
        "instruction": "retrieve the passages that answer this question " * 8,
    }

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=budgeted.url, timeout=60) as client:
            send = [
                client.post("/v1/embeddings", json=body, headers=_auth(INSTRUCTION_KEY))
                for _ in range(8)
            ]
            return list(await asyncio.gather(*send))

    started = time.monotonic()
    responses = asyncio.run(burst())
    elapsed = time.monotonic() - started
    served = [r for r in responses if r.status_code == 200]
    assert served and {r.status_code for r in responses} <= {200, 429}
    cost = int(served[0].headers["x-tokens"])
    assert cost > 16 * 50, cost  # the instruction is really there: its tokens are billed
    spent = sum(int(r.headers["x-tokens"]) for r in served)
    assert spent <= TPM + TPM / 60 * elapsed, (spent, len(served), cost)


def test_a_key_that_sets_one_limit_keeps_the_other_global_one(budgeted: ServerProcess) -> None:
    response = httpx.post(
        budgeted.url + "/v1/embeddings", json={"input": "x"}, headers=_auth(MERGED_KEY)
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-ratelimit-limit-requests"] == "50"
    assert response.headers["x-ratelimit-limit-tokens"] == str(TPM)
    auth = httpx.get(budgeted.url + "/info", headers=_auth(TOKENIZE_KEY)).json()["auth"]
    assert auth["requests_per_second"] == 100 and auth["tokens_per_minute"] == TOKENIZE_TPM
    assert auth["api_keys"] == ["…0001"]


def test_tokenize_is_charged_its_real_count(budgeted: ServerProcess) -> None:
    """Reserved from the body's size, settled to the real count: after ~20 tokens of a
    120-byte body the budget shows ~20 spent; a 2,400-byte body no longer fits."""
    url = budgeted.url + "/tokenize"
    first = httpx.post(url, json={"content": "hello " * 20}, headers=_auth(TOKENIZE_KEY))
    assert first.status_code == 200, first.text
    used = len(first.json()["tokens"])
    second = httpx.post(url, json={"content": "hello"}, headers=_auth(TOKENIZE_KEY))
    assert second.status_code == 200
    remaining = int(second.headers["x-ratelimit-remaining-tokens"])  # before its own charge
    # 300 tokens a minute refill 5 a second: the slack allows two seconds.
    assert TOKENIZE_TPM - used - 1 <= remaining <= TOKENIZE_TPM - used + 10, (remaining, used)
    refused = httpx.post(url, json={"content": "hello " * 400}, headers=_auth(TOKENIZE_KEY))
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1


def test_tei_embed_all_reserves_the_prompt_in_front_of_every_input(
    minilm_gguf: Path, server_logs: Path, tmp_path: Path
) -> None:
    """TEI's `/embed_all` with `prompt_name` puts the model's query prefix in front of
    every input: reserved from the texts alone, 8 concurrent requests would all pass."""
    prefix = "represent this question for retrieving the passages that answer it: " * 6
    config = tmp_path / "embellama.toml"
    config.write_text(f"""
[server]
api_key = ["{INSTRUCTION_KEY}"]
rate_limit_tpm = {TPM}
rate_limit_rps = 100

[[models]]
name = "m"
path = "{minilm_gguf}"
query_prefix = "{prefix}"
workers = 1
threads_per_worker = 1
""")
    body = {"inputs": ["x"] * 16, "prompt_name": "query"}

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            send = [
                client.post("/embed_all", json=body, headers=_auth(INSTRUCTION_KEY))
                for _ in range(8)
            ]
            return list(await asyncio.gather(*send))

    with serving(["--config", str(config)], server_logs) as server:
        started = time.monotonic()
        responses = asyncio.run(burst(server.url))
        elapsed = time.monotonic() - started
    served = [r for r in responses if r.status_code == 200]
    assert served and {r.status_code for r in responses} <= {200, 429}, responses
    cost = int(served[0].headers["x-tokens"])
    assert cost > 16 * 50, cost  # the prefix is really there: its tokens are billed
    spent = sum(int(r.headers["x-tokens"]) for r in served)
    assert spent <= TPM + TPM / 60 * elapsed, (spent, len(served), cost)
