"""Every client fault gets OpenAI's error shape with the right status, and the server
keeps serving: each bad request is followed by a good one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess

LONG = "word " * 600

# (description, method, path, body or raw bytes, status, type, code, param)
CASES: list[tuple[str, str, str, Any, int, str, str | None, str | None]] = [
    (
        "malformed json",
        "POST",
        "/v1/embeddings",
        b"{not json",
        400,
        "invalid_request_error",
        None,
        None,
    ),
    (
        "json array body",
        "POST",
        "/v1/embeddings",
        b"[1, 2]",
        400,
        "invalid_request_error",
        None,
        None,
    ),
    (
        "missing input",
        "POST",
        "/v1/embeddings",
        {"model": "minilm"},
        400,
        "invalid_request_error",
        "missing_required_parameter",
        "input",
    ),
    (
        "input is a number",
        "POST",
        "/v1/embeddings",
        {"input": 5},
        400,
        "invalid_request_error",
        "invalid_input",
        "input",
    ),
    (
        "token ids mixed with strings",
        "POST",
        "/v1/embeddings",
        {"input": [[1, 2], "a"]},
        400,
        "invalid_request_error",
        "invalid_input",
        "input",
    ),
    (
        "input is null",
        "POST",
        "/v1/embeddings",
        {"input": None},
        400,
        "invalid_request_error",
        "invalid_input",
        "input",
    ),
    (
        "empty list",
        "POST",
        "/v1/embeddings",
        {"input": []},
        400,
        "invalid_request_error",
        "invalid_input",
        "input",
    ),
    (
        "empty string",
        "POST",
        "/v1/embeddings",
        {"input": ""},
        400,
        "invalid_request_error",
        "invalid_input",
        "input[0]",
    ),
    (
        "empty string in list",
        "POST",
        "/v1/embeddings",
        {"input": ["ok", ""]},
        400,
        "invalid_request_error",
        "invalid_input",
        "input[1]",
    ),
    (
        "mixed list",
        "POST",
        "/v1/embeddings",
        {"input": ["ok", 3]},
        400,
        "invalid_request_error",
        "invalid_input",
        "input[1]",
    ),
    (
        "nested strings",
        "POST",
        "/v1/embeddings",
        {"input": [["a"]]},
        400,
        "invalid_request_error",
        "invalid_input",
        "input[0]",
    ),
    (
        "empty token list",
        "POST",
        "/v1/embeddings",
        {"input": [[101], []]},
        400,
        "invalid_request_error",
        "invalid_input",
        "input[1]",
    ),
    (
        "token out of vocab",
        "POST",
        "/v1/embeddings",
        {"input": [101, 40000, 102]},
        400,
        "invalid_request_error",
        "invalid_token_id",
        "input[0]",
    ),
    (
        "negative token",
        "POST",
        "/v1/embeddings",
        {"input": [[101, -5]]},
        400,
        "invalid_request_error",
        "invalid_token_id",
        "input[0]",
    ),
    (
        "too many inputs",
        "POST",
        "/v1/embeddings",
        {"input": ["x"] * 65},
        400,
        "invalid_request_error",
        "invalid_value",
        "input",
    ),
    (
        "too long",
        "POST",
        "/v1/embeddings",
        {"input": ["fine", LONG]},
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "input[1]",
    ),
    (
        "unknown model",
        "POST",
        "/v1/embeddings",
        {"input": "x", "model": "gpt-9"},
        404,
        "invalid_request_error",
        "model_not_found",
        "model",
    ),
    (
        "model not a string",
        "POST",
        "/v1/embeddings",
        {"input": "x", "model": 7},
        400,
        "invalid_request_error",
        "invalid_value",
        "model",
    ),
    (
        "bad encoding",
        "POST",
        "/v1/embeddings",
        {"input": "x", "encoding_format": "int4"},
        400,
        "invalid_request_error",
        "invalid_value",
        "encoding_format",
    ),
    (
        "dimensions zero",
        "POST",
        "/v1/embeddings",
        {"input": "x", "dimensions": 0},
        400,
        "invalid_request_error",
        "invalid_value",
        "dimensions",
    ),
    (
        "dimensions too big",
        "POST",
        "/v1/embeddings",
        {"input": "x", "dimensions": 1000},
        400,
        "invalid_request_error",
        "invalid_dimensions",
        "dimensions",
    ),
    (
        "dimensions string",
        "POST",
        "/v1/embeddings",
        {"input": "x", "dimensions": "64"},
        400,
        "invalid_request_error",
        "invalid_value",
        "dimensions",
    ),
    (
        "bad truncate",
        "POST",
        "/v1/embeddings",
        {"input": "x", "truncate": "middle"},
        400,
        "invalid_request_error",
        "invalid_value",
        "truncate",
    ),
    (
        "bad normalize",
        "POST",
        "/v1/embeddings",
        {"input": "x", "normalize": "yes"},
        400,
        "invalid_request_error",
        "invalid_value",
        "normalize",
    ),
    (
        "user not string",
        "POST",
        "/v1/embeddings",
        {"input": "x", "user": 1},
        400,
        "invalid_request_error",
        "invalid_value",
        "user",
    ),
    (
        "body too large",
        "POST",
        "/v1/embeddings",
        {"input": "x" * 300_000},
        413,
        "invalid_request_error",
        "request_too_large",
        None,
    ),
    (
        "lone surrogate escape",
        "POST",
        "/v1/embeddings",
        b'{"input": "bad \\ud800 text"}',
        400,
        "invalid_request_error",
        None,
        None,
    ),
    ("unknown route", "GET", "/v1/nothing", None, 404, "invalid_request_error", "not_found", None),
    (
        "wrong method",
        "GET",
        "/v1/embeddings",
        None,
        405,
        "invalid_request_error",
        "method_not_allowed",
        None,
    ),
    (
        "unknown model card",
        "GET",
        "/v1/models/nope",
        None,
        404,
        "invalid_request_error",
        "model_not_found",
        "model",
    ),
]


@pytest.mark.parametrize(
    ("description", "method", "path", "body", "status", "error_type", "code", "param"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_bad_request_then_good(
    server: ServerProcess,
    description: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    error_type: str,
    code: str | None,
    param: str | None,
) -> None:
    kwargs: dict[str, Any] = (
        {"content": body} if isinstance(body, bytes) else {"json": body} if body else {}
    )
    response = httpx.request(method, server.url + path, timeout=30, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == error_type
    if code is not None:
        assert error["code"] == code
    if param is not None or code is not None:
        assert error["param"] == param
    good = httpx.post(server.url + "/v1/embeddings", json={"input": "still serving"}, timeout=30)
    assert good.status_code == 200
    assert len(good.json()["data"][0]["embedding"]) == 384


def test_truncate_extension(server: ServerProcess) -> None:
    for mode in (True, "end", "start"):
        response = httpx.post(
            server.url + "/v1/embeddings", json={"input": [LONG], "truncate": mode}, timeout=30
        )
        assert response.status_code == 200
        assert response.json()["usage"]["prompt_tokens"] == 512


def test_normalize_extension(server: ServerProcess) -> None:
    raw = httpx.post(
        server.url + "/v1/embeddings", json={"input": "abc", "normalize": False}
    ).json()
    vector = raw["data"][0]["embedding"]
    assert abs(sum(v * v for v in vector) ** 0.5 - 1.0) > 1e-3
