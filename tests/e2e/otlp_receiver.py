"""A real OTLP/HTTP trace receiver on a loopback port, for the tracing tests: it accepts
`POST /v1/traces`, decodes each `ExportTraceServiceRequest` with opentelemetry-proto and
keeps its spans; or, `hanging`, takes connections and never answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(pairs)
    return {pair.key: _value(pair.value) for pair in items}


def _span(span: Span, resource: dict[str, Any]) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status_code=span.status.code,
        attributes=_attributes(span.attributes),
        resource=resource,
    )


class OtlpReceiver:
    """What the server exported: every span, and every request body as received."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver.receive(body, self.headers.get("content-type", ""))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def receive(self, body: bytes, content_type: str) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                spans.extend(_span(span, resource) for span in scope_spans.spans)
        with self._changed:
            self.bodies.append(body)
            self.content_types.append(content_type)
            self.spans.extend(spans)
            self._changed.notify_all()

    def wait_for(
        self, ready: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """The spans so far, once `ready` says they are complete."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready(self.spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({(s.trace_id[:8], s.name) for s in self.spans})
                    raise TimeoutError(f"spans not complete after {timeout} s; have {names}")
                self._changed.wait(left)
            return list(self.spans)

    def trace(self, trace_id: str, count: int, timeout: float = 15.0) -> list[ReceivedSpan]:
        """The spans of one trace, once at least `count` arrived."""
        spans = self.wait_for(
            lambda spans: sum(s.trace_id == trace_id for s in spans) >= count, timeout
        )
        return [s for s in spans if s.trace_id == trace_id]

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@contextmanager
def hanging_receiver() -> Iterator[str]:
    """A collector that takes each connection and never answers: every export waits for
    its timeout. Yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        thread.join(5)
        listener.close()
        for connection in held:
            connection.close()


class _Counter(OtlpReceiver):
    """Counts spans without keeping them: a long benchmark's receiver."""

    count = 0

    def receive(self, body: bytes, content_type: str) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        self.count += sum(
            len(scope.spans) for spans in request.resource_spans for scope in spans.scope_spans
        )


def _serve_until_stdin_closes() -> None:
    """`python -m tests.e2e.otlp_receiver`: a receiver in its own process (a benchmark's
    collector must not share the load generator's interpreter). Prints its URL, serves
    until stdin closes, then prints how many spans it decoded."""
    import sys

    receiver = _Counter()
    receiver.start()
    try:
        print(receiver.url, flush=True)
        sys.stdin.read()
        print(receiver.count, flush=True)
    finally:
        receiver.stop()


if __name__ == "__main__":
    _serve_until_stdin_closes()
