"""The official `cohere` SDK (ClientV2 and the v1 Client) against a real server process:
every embedding type, checked against `/v1/embeddings`' floats quantized by vectors.py
with the ranges the model card shows; and the `/v1/embeddings` integer extension."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cohere
import httpx
import numpy as np
import pytest

from embellama.vectors import Quantization, Ranges, quantize
from tests.e2e.server import ServerProcess, free_port, serving
from tests.tolerances import assert_batch_invariant

TEXTS = ["hello world", "Embeddings for search and RAG", "日本語のテキスト", "emoji 🙂 text"]
TYPES = ["float", "int8", "uint8", "binary", "ubinary", "base64"]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:  # the SDKs' sockets closed at the end
        yield client


@pytest.fixture(scope="module")
def v2(server: ServerProcess, http: httpx.Client) -> cohere.ClientV2:
    return cohere.ClientV2(base_url=server.url, api_key="unused", httpx_client=http)


def _floats(server: ServerProcess, **extra: object) -> tuple[np.ndarray, int]:
    body = {"model": "minilm", "input": TEXTS, "encoding_format": "float", **extra}
    response = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()
    vectors = np.array([item["embedding"] for item in data["data"]], np.float32)
    return vectors, data["usage"]["prompt_tokens"]


def _ranges(server: ServerProcess) -> Ranges:
    card = httpx.get(server.url + "/v1/models/minilm", timeout=60).json()
    quantization = card["quantization"]
    assert quantization["calibration"] == "built-in"
    assert quantization["types"] == ["int8", "uint8", "binary", "ubinary"]
    bounds = quantization["ranges"]
    assert len(bounds["low"]) == len(bounds["high"]) == card["dimensions"]
    return Ranges(np.array(bounds["low"], np.float32), np.array(bounds["high"], np.float32))


def _expected(floats: np.ndarray, kind: str, ranges: Ranges) -> np.ndarray:
    return quantize(floats, Quantization(kind), ranges if Quantization(kind).scalar else None)


def _close_codes(got: np.ndarray, want: np.ndarray, kind: str) -> None:
    """The floats went through JSON and back (shortest repr, exact for float32), so the
    codes match; a batch's vectors may differ from one text's by float noise, which can
    move a value across a step: at most one step, in a few components."""
    if kind in ("binary", "ubinary"):
        bits_got = np.unpackbits(
            got.astype(np.int16).astype(np.uint8) if kind == "binary" else got.astype(np.uint8),
            axis=-1,
        )
        bits_want = np.unpackbits(
            want.astype(np.int16).astype(np.uint8) if kind == "binary" else want.astype(np.uint8),
            axis=-1,
        )
        assert (bits_got != bits_want).mean() < 0.01
        return
    assert np.abs(got.astype(np.int32) - want.astype(np.int32)).max() <= 1
    assert (got != want).mean() < 0.02


def test_v2_every_embedding_type(server: ServerProcess, v2: cohere.ClientV2) -> None:
    floats, tokens = _floats(server, input_type="document")
    ranges = _ranges(server)
    response = v2.embed(
        model="minilm", texts=TEXTS, input_type="search_document", embedding_types=TYPES
    )
    assert response.response_type == "embeddings_by_type"
    assert response.texts == TEXTS
    assert response.meta is not None and response.meta.billed_units is not None
    assert response.meta.billed_units.input_tokens == tokens
    embeddings = response.embeddings
    assert_batch_invariant(np.array(embeddings.float_), floats)
    decoded = np.array([np.frombuffer(base64.b64decode(b), "<f4") for b in embeddings.base64 or []])
    np.testing.assert_array_equal(decoded, np.array(embeddings.float_, np.float32))
    same_floats = np.array(embeddings.float_, np.float32)
    for kind in ("int8", "uint8", "binary", "ubinary"):
        got = np.array(getattr(embeddings, kind))
        dim = 384 if Quantization(kind).scalar else 48
        assert got.shape == (len(TEXTS), dim), kind
        lo, hi = (-128, 127) if kind in ("int8", "binary") else (0, 255)
        assert got.min() >= lo and got.max() <= hi, kind
        # Exactly the answer's own floats quantized with the card's ranges...
        np.testing.assert_array_equal(got, _expected(same_floats, kind, ranges), kind)
        # ... and /v1/embeddings' floats of the same texts, up to batch noise.
        _close_codes(got, _expected(floats, kind, ranges), kind)


def test_v2_types_match_the_openai_extension(server: ServerProcess, v2: cohere.ClientV2) -> None:
    response = v2.embed(
        model="minilm", texts=TEXTS, input_type="clustering", embedding_types=["int8", "ubinary"]
    )
    assert response.embeddings.float_ is None
    for kind in ("int8", "ubinary"):
        body = {"model": "minilm", "input": TEXTS, "encoding_format": kind}
        openai = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60).json()
        ours = np.array([item["embedding"] for item in openai["data"]])
        np.testing.assert_array_equal(np.array(getattr(response.embeddings, kind)), ours)


def test_v2_default_type_is_float_and_output_dimension_cuts(
    server: ServerProcess, v2: cohere.ClientV2
) -> None:
    plain = v2.embed(model="minilm", texts=TEXTS[:2], input_type="search_query")
    assert np.array(plain.embeddings.float_).shape == (2, 384)
    assert plain.embeddings.int8 is None
    cut = v2.embed(
        model="minilm",
        texts=TEXTS[:2],
        input_type="search_query",
        output_dimension=128,
        embedding_types=["float", "int8", "binary"],
    )
    floats, _ = _floats(server, dimensions=128)
    assert_batch_invariant(np.array(cut.embeddings.float_), floats[:2])
    assert np.array(cut.embeddings.int8).shape == (2, 128)
    assert np.array(cut.embeddings.binary).shape == (2, 16)


def test_v2_inputs_with_text_parts(v2: cohere.ClientV2) -> None:
    inputs = [
        cohere.EmbedInput(content=[cohere.TextEmbedContent(type="text", text=t)]) for t in TEXTS[:2]
    ]
    by_inputs = v2.embed(model="minilm", inputs=inputs, input_type="search_document")
    by_texts = v2.embed(model="minilm", texts=TEXTS[:2], input_type="search_document")
    assert_batch_invariant(
        np.array(by_inputs.embeddings.float_), np.array(by_texts.embeddings.float_)
    )


# The v1 SDK's response union reads `model_fields` on an instance (its own deprecation).
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")
def test_v1_client_floats_and_by_type(server: ServerProcess, http: httpx.Client) -> None:
    client = cohere.Client(base_url=server.url, api_key="unused", httpx_client=http)
    floats, tokens = _floats(server)
    plain = client.embed(texts=TEXTS, model="minilm")
    assert plain.response_type == "embeddings_floats"
    assert_batch_invariant(np.array(plain.embeddings), floats)
    assert plain.meta is not None and plain.meta.billed_units is not None
    assert plain.meta.billed_units.input_tokens == tokens
    typed = client.embed(texts=TEXTS, model="minilm", embedding_types=["ubinary", "float"])
    assert typed.response_type == "embeddings_by_type"
    ubinary = np.array(typed.embeddings.ubinary)
    np.testing.assert_array_equal(
        ubinary, quantize(np.array(typed.embeddings.float_, np.float32), Quantization.UBINARY)
    )


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (
            {"texts": ["a"], "images": ["data:image/png;base64,AAAA"]},
            400,
            "images are not supported",
        ),
        (
            {"inputs": [{"content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]},
            400,
            "images are not supported",
        ),
        ({"texts": ["a"], "input_type": "image"}, 400, "images are not supported"),
        ({}, 400, "'texts' (or 'inputs') is a required property"),
        ({"texts": []}, 400, "'texts' must be a non-empty list of strings"),
        ({"texts": ["a", 5]}, 400, "texts[1] must be a string"),
        ({"texts": ["a"] * 65}, 400, "too many texts: 65"),
        ({"texts": ["a"], "embedding_types": ["int4"]}, 400, "'embedding_types' must be a list"),
        ({"texts": ["a"], "truncate": "LEFT"}, 400, "'truncate' must be NONE, START or END"),
        (
            {"texts": ["a"], "output_dimension": 999},
            400,
            "dimensions must be an integer between 1 and 384",
        ),
        ({"texts": ["a"], "input_type": "search"}, 400, "'input_type' must be one of"),
        ({"texts": ["word " * 2000], "truncate": "NONE"}, 400, "pass truncate END or START"),
        ({"texts": [""]}, 400, "empty"),
        ({"texts": ["a"], "model": "nope"}, 404, "nope"),
    ],
)
def test_v2_faults_are_clear_and_the_server_keeps_serving(
    server: ServerProcess, body: dict[str, object], status: int, text: str
) -> None:
    response = httpx.post(server.url + "/v2/embed", json=body, timeout=60)
    assert response.status_code == status, response.text
    assert list(response.json()) == ["message"], response.text  # Cohere's error shape
    assert text in response.json()["message"]
    ok = httpx.post(server.url + "/v2/embed", json={"texts": ["still here"]}, timeout=60)
    assert ok.status_code == 200, ok.text


def test_v2_sdk_raises_on_images(v2: cohere.ClientV2) -> None:
    with pytest.raises(cohere.BadRequestError) as caught:
        v2.embed(model="minilm", images=["data:image/png;base64,AAAA"], input_type="image")
    assert "images are not supported" in caught.value.body["message"]


def test_v2_truncate_start_and_end(v2: cohere.ClientV2) -> None:
    long = "the quick brown fox jumps over the lazy dog " * 200
    ends = [
        v2.embed(model="minilm", texts=[long + "tail"], input_type="search_document", truncate=t)
        for t in ("END", "START")
    ]
    assert ends[0].meta.billed_units.input_tokens == ends[1].meta.billed_units.input_tokens == 512  # type: ignore[union-attr]


def test_openai_integer_formats_and_per_token_refusal(server: ServerProcess) -> None:
    ranges = _ranges(server)
    floats, _ = _floats(server)
    for kind in ("int8", "uint8", "binary", "ubinary"):
        body = {"model": "minilm", "input": TEXTS, "encoding_format": kind}
        response = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
        assert response.status_code == 200, response.text
        got = np.array([item["embedding"] for item in response.json()["data"]])
        _close_codes(got, _expected(floats, kind, ranges), kind)
    refused = httpx.post(
        server.url + "/v1/embeddings",
        json={"input": "x", "encoding_format": "int8", "pooling": "none"},
        timeout=60,
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "encoding_format"


@pytest.mark.slow
def test_calibration_file_sets_the_ranges(
    minilm_gguf: Path, server_logs: Path, tmp_path: Path
) -> None:
    texts = [f"invoice {n}: net 30 days, total {n * 17} euros, paid by transfer" for n in range(40)]
    file = tmp_path / "calibration.txt"
    file.write_text("\n".join(texts) + "\n")
    args = ["--model-path", str(minilm_gguf), "--model-name", "minilm", "--workers", "1"]
    with serving([*args, "--calibration-file", str(file)], server_logs) as calibrated:
        card = httpx.get(calibrated.url + "/v1/models/minilm", timeout=60).json()
        quantization = card["quantization"]
        assert quantization["calibration"] == str(file)
        assert quantization["calibration_texts"] == len(texts)
        body = {"input": texts, "encoding_format": "float"}
        data = httpx.post(calibrated.url + "/v1/embeddings", json=body, timeout=60).json()
        floats = np.array([item["embedding"] for item in data["data"]], np.float32)
        widest = np.abs(floats).max()
        high = np.array(quantization["ranges"]["high"])
        np.testing.assert_allclose(high, widest, rtol=1e-4)
        np.testing.assert_array_equal(quantization["ranges"]["low"], -high)


@pytest.mark.slow
def test_an_unusable_calibration_file_fails_the_start_naming_it(
    minilm_gguf: Path, tmp_path: Path
) -> None:
    file = tmp_path / "short.txt"
    file.write_text("only\nthree\nlines\n")
    command = [sys.executable, "-m", "embellama", "serve", "--port", str(free_port())]
    command += ["--model-path", str(minilm_gguf), "--calibration-file", str(file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"calibration_file '{file}' has 3 non-blank lines" in done.stderr, done.stderr


@pytest.mark.slow
def test_keys_guard_the_cohere_routes(minilm_gguf: Path, server_logs: Path) -> None:
    key = "sk-cohere-route-key-0123456789"
    args = ["--model-path", str(minilm_gguf), "--model-name", "minilm", "--workers", "1"]
    with serving([*args, "--api-key", key], server_logs) as keyed:
        for path in ("/v2/embed", "/v1/embed"):
            refused = httpx.post(keyed.url + path, json={"texts": ["a"]}, timeout=60)
            assert refused.status_code == 401, refused.text
        with httpx.Client(timeout=60) as http:
            wrong = cohere.ClientV2(
                base_url=keyed.url, api_key="sk-not-the-key-0123456789", httpx_client=http
            )
            with pytest.raises(cohere.UnauthorizedError):
                wrong.embed(model="minilm", texts=["a"], input_type="search_query")
            right = cohere.ClientV2(base_url=keyed.url, api_key=key, httpx_client=http)
            answer = right.embed(
                model="minilm", texts=["a"], input_type="search_query", embedding_types=["int8"]
            )
            assert np.array(answer.embeddings.int8).shape == (1, 384)
