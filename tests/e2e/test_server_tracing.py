"""OpenTelemetry traces from a real server (worker processes, cache on) to a real OTLP/HTTP
receiver: span names, parents, HTTP semantic-convention attributes, the caller's
`traceparent`, no input text, and a collector that is down or hangs costing nothing."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedSpan, hanging_receiver, otlp_receiver
from tests.e2e.server import ServerProcess, serving

pytestmark = pytest.mark.slow

KEY = "sk-tracing-test-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}", "User-Agent": "tracing-test/1.0"}
SERVER = 2  # OTLP SpanKind: SPAN_KIND_SERVER
INTERNAL = 1
STATUS_ERROR = 2
# Short batching, so spans arrive within ~100 ms of the request.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}


def _args(minilm_gguf: Path, endpoint: str) -> list[str]:
    return [
        "--model-path",
        str(minilm_gguf),
        "--model-name",
        "minilm",
        "--workers",
        "2",
        "--threads-per-worker",
        "1",
        "--api-key",
        KEY,
        "--otlp-endpoint",
        endpoint,
        "--otlp-service-name",
        "embellama-tracing-test",
    ]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def server(minilm_gguf: Path, server_logs: Path, receiver: OtlpReceiver) -> Iterator[ServerProcess]:
    with serving(_args(minilm_gguf, receiver.url), server_logs, FAST_EXPORT) as process:
        yield process


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _embed(server: ServerProcess, texts: list[str], **headers: str) -> httpx.Response:
    response = httpx.post(
        server.url + "/v1/embeddings",
        json={"model": "minilm", "input": texts},
        headers={**AUTH, **headers},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response


def _root(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (root,) = [s for s in spans if s.kind == SERVER]
    return root


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> dict[str, list[ReceivedSpan]]:
    found: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        if span.parent_span_id == parent.span_id:
            found.setdefault(span.name, []).append(span)
    return found


def _complete(trace_id: str, names: set[str]) -> Any:
    def ready(spans: list[ReceivedSpan]) -> bool:
        return names <= {s.name for s in spans if s.trace_id == trace_id}

    return ready


def test_a_request_is_a_server_span_under_the_callers_traceparent(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    header, trace_id, caller = _traceparent()
    texts = [f"first text {secrets.token_hex(4)}", f"second, longer text {secrets.token_hex(4)}"]
    response = _embed(server, texts, traceparent=header)
    names = {"POST /v1/embeddings", "tokenize", "cache lookup", "queue wait", "decode", "encode"}
    spans = [s for s in receiver.wait_for(_complete(trace_id, names)) if s.trace_id == trace_id]

    root = _root(spans)
    assert root.name == "POST /v1/embeddings"
    assert root.parent_span_id == caller  # the client's span is the parent
    assert root.resource["service.name"] == "embellama-tracing-test"
    attributes = root.attributes
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.path"] == "/v1/embeddings"
    assert attributes["url.scheme"] == "http"
    assert attributes["http.route"] == "/v1/embeddings"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == server.port
    assert attributes["client.address"] == "127.0.0.1"
    assert attributes["user_agent.original"] == "tracing-test/1.0"
    assert attributes["network.protocol.version"] == "1.1"
    assert attributes["embellama.request_id"] == response.headers["x-request-id"]
    assert attributes["embellama.model"] == "minilm"
    tokens = response.json()["usage"]["total_tokens"]
    assert attributes["embellama.tokens"] == tokens
    assert root.status_code != STATUS_ERROR

    # The response names the span that served it (W3C Trace Context level 2).
    assert response.headers["traceresponse"] == f"00-{trace_id}-{root.span_id}-01"

    children = _children(spans, root)
    assert set(children) == names - {root.name}
    for child in (c for group in children.values() for c in group):
        assert child.kind == INTERNAL
        assert root.start_ns <= child.start_ns <= child.end_ns <= root.end_ns, child.name
    (tokenize,) = children["tokenize"]
    assert tokenize.attributes["embellama.inputs"] == 2
    assert tokenize.attributes["embellama.tokens"] == tokens
    (lookup,) = children["cache lookup"]
    assert lookup.attributes == {"embellama.cache.keys": 2, "embellama.cache.hits": 0}
    (queue,) = children["queue wait"]
    assert queue.attributes["embellama.tokens"] == tokens
    decodes = children["decode"]
    # What the worker reported, per batch this request was in: the inputs add up.
    assert sum(d.attributes["embellama.inputs"] for d in decodes) == 2
    assert sum(d.attributes["embellama.tokens"] for d in decodes) == tokens
    for decode in decodes:
        batch = decode.attributes
        assert batch["embellama.batch.size"] >= batch["embellama.inputs"] >= 1
        assert batch["embellama.batch.tokens"] >= batch["embellama.tokens"]
        assert batch["embellama.decode.threads"] >= 1
        assert batch["embellama.pooling"] == "mean"
        assert decode.end_ns > decode.start_ns
    (encode,) = children["encode"]
    assert encode.start_ns >= max(d.end_ns for d in decodes)
    # Stages follow each other: tokenize, then the lookup, then queue, then decode.
    assert tokenize.end_ns <= lookup.start_ns <= lookup.end_ns <= queue.start_ns + 1000
    assert queue.end_ns <= min(d.start_ns for d in decodes) + 5_000_000


def test_a_cache_hit_has_no_queue_or_decode(server: ServerProcess, receiver: OtlpReceiver) -> None:
    texts = [f"cached text {secrets.token_hex(4)}"]
    _embed(server, texts)
    header, trace_id, _ = _traceparent()
    _embed(server, texts, traceparent=header)
    spans = receiver.trace(trace_id, 4)
    children = _children(spans, _root(spans))
    assert set(children) == {"tokenize", "cache lookup", "encode"}
    (lookup,) = children["cache lookup"]
    assert lookup.attributes["embellama.cache.hits"] == 1
    assert _root(spans).attributes["embellama.cache.hits"] == 1


def test_without_a_traceparent_a_request_starts_its_own_trace(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    for header in ({}, {"traceparent": "00-not-a-trace-01"}, {"traceparent": "00-" + "0" * 55}):
        response = _embed(server, [f"own trace {secrets.token_hex(4)}"], **header)
        version, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
        assert version == "00" and int(flags, 16) & 1  # sampled (the SDK may add "random")
        assert int(trace_id, 16) and int(span_id, 16)
        root = _root(receiver.trace(trace_id, 1))
        assert root.parent_span_id == ""
        assert root.span_id == span_id


def test_an_unsampled_caller_is_not_recorded(server: ServerProcess, receiver: OtlpReceiver) -> None:
    """ParentBased sampling: a caller that did not sample its trace gets no spans here."""
    _, trace_id, caller = _traceparent()
    response = _embed(server, ["not sampled"], traceparent=f"00-{trace_id}-{caller}-00")
    assert response.headers["traceresponse"].endswith("-00")
    header, marker_trace, _ = _traceparent()
    _embed(server, ["sampled, sent after"], traceparent=header)
    receiver.trace(marker_trace, 5)  # everything exported before it has arrived too
    assert [s for s in receiver.spans if s.trace_id == trace_id] == []


def test_refusals_and_unknown_paths_are_spans_without_errors(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    header, trace_id, _ = _traceparent()
    refused = httpx.post(
        server.url + "/v1/embeddings",
        json={"model": "minilm", "input": "x"},
        headers={"Authorization": "Bearer sk-wrong-key-0000000000", "traceparent": header},
    )
    assert refused.status_code == 401
    root = _root(receiver.trace(trace_id, 1))
    assert root.attributes["http.response.status_code"] == 401
    assert root.status_code != STATUS_ERROR  # a client's mistake, not the server's
    assert "error.type" not in root.attributes

    header, trace_id, _ = _traceparent()
    missing = httpx.get(server.url + "/no/such/path", headers={**AUTH, "traceparent": header})
    assert missing.status_code == 404
    root = _root(receiver.trace(trace_id, 1))
    assert root.name == "GET"  # no route matched: the method alone (low cardinality)
    assert "http.route" not in root.attributes
    assert root.attributes["url.path"] == "/no/such/path"


def test_aliases_and_other_routes_name_their_route(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    header, trace_id, _ = _traceparent()
    response = httpx.post(
        server.url + "/embeddings",
        json={"model": "minilm", "input": "through the alias"},
        headers={**AUTH, "traceparent": header},
    )
    assert response.status_code == 200
    root = _root(receiver.trace(trace_id, 1))
    assert (root.name, root.attributes["http.route"]) == ("POST /embeddings", "/embeddings")

    header, trace_id, _ = _traceparent()  # another API's route: the same stages
    ollama = httpx.post(
        server.url + "/api/embed",
        json={"model": "minilm", "input": f"ollama {secrets.token_hex(4)}"},
        headers={**AUTH, "traceparent": header},
    )
    assert ollama.status_code == 200, ollama.text
    names = {"POST /api/embed", "tokenize", "cache lookup", "queue wait", "decode", "encode"}
    spans = [s for s in receiver.wait_for(_complete(trace_id, names)) if s.trace_id == trace_id]
    assert _root(spans).attributes["http.route"] == "/api/embed"

    header, trace_id, _ = _traceparent()
    assert httpx.get(server.url + "/v1/models/minilm", headers={**AUTH, "traceparent": header})
    root = _root(receiver.trace(trace_id, 1))
    assert root.attributes["http.route"] == "/v1/models/{model_id:path}"


def test_tokenize_is_a_tokenize_span_and_an_encode(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    header, trace_id, _ = _traceparent()
    answer = httpx.post(
        server.url + "/tokenize",
        json={"model": "minilm", "content": "count these tokens"},
        headers={**AUTH, "traceparent": header},
    )
    assert answer.status_code == 200, answer.text
    spans = receiver.wait_for(_complete(trace_id, {"POST /tokenize", "tokenize", "encode"}))
    spans = [s for s in spans if s.trace_id == trace_id]
    children = _children(spans, _root(spans))
    assert set(children) == {"tokenize", "encode"}
    assert children["tokenize"][0].attributes["embellama.tokens"] == len(answer.json()["tokens"])


def test_no_input_text_reaches_the_collector(server: ServerProcess, receiver: OtlpReceiver) -> None:
    """The texts of embeddings and tokenize requests appear nowhere in what is exported,
    nor does the API key."""
    marker = "secretmarker" + secrets.token_hex(8)
    header, trace_id, _ = _traceparent()
    _embed(server, [f"{marker} one", f"two {marker}"], traceparent=header)
    tokenized = httpx.post(
        server.url + "/tokenize",
        json={"model": "minilm", "content": f"{marker} tokenize", "with_pieces": True},
        headers={**AUTH, "traceparent": header},
    )
    assert tokenized.status_code == 200, tokenized.text
    failed = httpx.post(
        server.url + "/v1/embeddings",
        json={"model": "minilm", "input": [marker, 7]},
        headers={**AUTH, "traceparent": header},
    )
    assert failed.status_code == 400 and marker not in failed.text
    receiver.wait_for(
        lambda spans: sum(s.trace_id == trace_id and s.kind == SERVER for s in spans) >= 3
    )
    exported = b"".join(receiver.bodies)
    assert marker.encode() not in exported
    assert KEY.encode() not in exported
    assert set(receiver.content_types) == {"application/x-protobuf"}


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("collector", ["refusing", "hanging"])
def test_a_collector_that_is_down_or_hangs_never_fails_or_slows_requests(
    minilm_gguf: Path, server_logs: Path, collector: str
) -> None:
    """A bounded queue (8 spans) and a 30 s export timeout: spans are dropped, no request
    waits for an export, and the server still stops at once."""
    env = {
        **FAST_EXPORT,
        "OTEL_BSP_MAX_QUEUE_SIZE": "8",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "30",
    }
    with hanging_receiver() as hanging:
        endpoint = _closed_port_url() if collector == "refusing" else hanging
        with serving(_args(minilm_gguf, endpoint), server_logs, env) as process:
            _embed(process, ["warm up"])
            seconds = []
            for index in range(60):  # 60 requests x 6 spans: far beyond the queue
                started = time.perf_counter()
                _embed(process, [f"request {index} {secrets.token_hex(4)}"])
                seconds.append(time.perf_counter() - started)
            # A request that waited on an export would take its 30 s timeout (a refused
            # connection retries with backoff until then); a third of it leaves room for
            # a loaded machine's slow decodes.
            assert max(seconds) < 10.0, seconds
            stopping = time.monotonic()
            assert process.stop() == 0, process.log()
            # The last export may wait on the collector for at most the 5 s close bound.
            assert time.monotonic() - stopping < 15.0
