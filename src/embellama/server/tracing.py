"""OpenTelemetry traces of the HTTP server (`--otlp-endpoint`): one SERVER span per
request, child of the caller's W3C `traceparent`, with a child span per stage the
pipeline noted (embellama.stages) and one for encoding the answer.

Imported only when tracing is on: it imports opentelemetry (the `otel` extra). Spans go
to a BatchSpanProcessor (a bounded queue and a thread that exports over OTLP/HTTP), so a
slow or unreachable collector loses spans, never delays a request. Spans carry names,
counts and timings: never input text, query strings or credentials.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embellama.server.endpoints import ENDPOINTS
from embellama.stages import Stage, StageLog, recording

__all__ = ["Tracing", "TracingMiddleware", "traces_url"]

# Stage names (embellama.stages) as span names.
_SPAN_NAMES = {
    "tokenize": "tokenize",
    "cache": "cache lookup",
    "queue": "queue wait",
    "decode": "decode",
}
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
# A client's path or user agent is at most this long in a span; the rest is cut.
_MAX_ATTRIBUTE_LENGTH = 1024


def traces_url(endpoint: str) -> str:
    """Like OTEL_EXPORTER_OTLP_ENDPOINT: a base URL gets the signal path `/v1/traces`; a
    URL that already ends in it is used as given."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _embellama_version() -> str:
    try:
        return version("embellama")
    except PackageNotFoundError:  # run from a source tree
        return "unknown"


class Tracing:
    """The tracer provider of one server: built at start, shut down after the drain."""

    def __init__(
        self,
        endpoint: str,
        service_name: str | None = None,
        *,
        exporter: SpanExporter | None = None,
    ) -> None:
        """`service_name` None: OTEL_SERVICE_NAME, else "embellama". The batching knobs
        are the SDK's own variables (OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE,
        ...), and collector credentials go in OTEL_EXPORTER_OTLP_HEADERS."""
        name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "embellama"
        resource = Resource.create({SERVICE_VERSION: _embellama_version()}).merge(
            Resource({SERVICE_NAME: name})
        )
        self.provider = TracerProvider(
            resource=resource, span_limits=SpanLimits(max_attribute_length=_MAX_ATTRIBUTE_LENGTH)
        )
        self.processor = BatchSpanProcessor(
            exporter or OTLPSpanExporter(endpoint=traces_url(endpoint))
        )
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("embellama.server", _embellama_version())
        # The children are written after the fact, finished, straight to the processor:
        # the same spans the tracer would make, without a sampling decision (a child
        # follows its parent's), a lock and attribute cleaning per span (11 us of 13).
        self.scope = InstrumentationScope("embellama.server", _embellama_version())
        self.endpoint = traces_url(endpoint)
        self.propagator = TraceContextTextMapPropagator()
        self.routes = _RouteNames()

    def middleware(self, app: ASGIApp) -> TracingMiddleware:
        return TracingMiddleware(app, self)

    async def close(self, timeout: float = 5.0) -> None:
        """Export what is queued, waiting at most `timeout` seconds: a collector that
        hangs must not hold the server's exit (the SDK's own wait is 30 s)."""
        thread = threading.Thread(target=self.provider.shutdown, name="otel-shutdown", daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, timeout)


class _RouteNames:
    """`http.route`: the route-table path (a template, low cardinality) that matched."""

    def __init__(self) -> None:
        self._by_handler: dict[Callable[..., Any], list[tuple[re.Pattern[str], str]]] = {}
        for endpoint in ENDPOINTS:
            for path in endpoint.paths:
                pattern = compile_path(path)[0]
                self._by_handler.setdefault(endpoint.handler, []).append((pattern, path))

    def of(self, scope: Scope, path: str) -> str | None:
        for pattern, template in self._by_handler.get(scope.get("endpoint"), ()):  # type: ignore[arg-type]
            if pattern.match(path):
                return template
        return None


class TracingMiddleware:
    """Outermost but for the lifespan wrapper: its span covers auth refusals and 500s."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracing = self.tracing
        wall, clock = time.time_ns(), time.perf_counter()
        span = tracing.tracer.start_span(
            scope["method"],
            context=_parent(tracing.propagator, scope),
            kind=SpanKind.SERVER,
            start_time=wall,
            attributes=_request_attributes(scope),
        )
        path = _route_path(scope)
        answer: dict[str, Any] = {}

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["at"] = message["status"], time.perf_counter()
                message["headers"] = [*message.get("headers", []), _trace_response(span)]
            await send(message)

        with recording() as log:
            try:
                await self.app(scope, receive, send_traced)
            finally:
                if span.is_recording():
                    _Finish(tracing, span, wall, clock).request(scope, path, answer, log)
                else:
                    span.end()


def _parent(propagator: TraceContextTextMapPropagator, scope: Scope) -> Context:
    """The caller's span (`traceparent`, `tracestate`); a malformed header is ignored,
    as the W3C specification says, and the request starts a trace of its own."""
    carrier: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name in (b"traceparent", b"tracestate"):
            carrier[name.decode()] = value.decode("latin-1")
    return propagator.extract(carrier) if carrier else Context()


def _trace_response(span: Span) -> tuple[bytes, bytes]:
    """W3C Trace Context level 2 `traceresponse`: which span served the request, so a
    caller without a trace of its own can still find it."""
    context = span.get_span_context()
    flags = int(context.trace_flags)
    value = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
    return b"traceresponse", value.encode()


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the app's root path, taken before routing."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _request_attributes(scope: Scope) -> dict[str, str | int]:
    """HTTP server semantic conventions, from what is known before the app runs."""
    method: str = scope["method"]
    attributes: dict[str, str | int] = {
        "http.request.method": method if method in _METHODS else "_OTHER",
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if method not in _METHODS:
        attributes["http.request.method_original"] = method
    host, agent = None, None
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"user-agent":
            agent = value.decode("latin-1")
    attributes.update(_server_address(host, scope.get("server")))
    if agent:
        attributes["user_agent.original"] = agent
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
        attributes["client.port"] = client[1]
    return attributes


def _server_address(host: str | None, server: tuple[str, int] | None) -> dict[str, str | int]:
    """`server.address`/`server.port`: the Host header's (what the client called), else
    the socket's."""
    if not host:
        return {"server.address": server[0], "server.port": server[1]} if server else {}
    if host.startswith("["):  # an IPv6 literal: [::1]:8080
        end = host.find("]")
        address, rest = (host[1:end], host[end + 1 :]) if end > 0 else (host, "")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        address, _, port = host.partition(":")
    if port.isdigit() and int(port) <= 65535:
        return {"server.address": address, "server.port": int(port)}
    return {"server.address": address}


class _Finish:
    """Ends one request's span and writes its children, converting the pipeline's
    `perf_counter` times to the wall clock the request started on."""

    def __init__(self, tracing: Tracing, span: Span, wall: int, clock: float) -> None:
        self.tracing, self.span, self.wall, self.clock = tracing, span, wall, clock
        self.parent = span.get_span_context()

    def ns(self, moment: float) -> int:
        return max(self.wall, self.wall + int((moment - self.clock) * 1e9))

    def request(self, scope: Scope, path: str, answer: Mapping[str, Any], log: StageLog) -> None:
        span = self.span
        route = self.tracing.routes.of(scope, path)
        if route is not None:
            span.set_attribute("http.route", route)
            span.update_name(f"{scope['method']} {route}")
        status = answer.get("status")
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if status is None or status >= 500:  # a client's mistake is not the server's error
            span.set_attribute("error.type", str(status) if status else "no response")
            span.set_status(Status(StatusCode.ERROR))
        state = scope.get("state", {})
        if "request_id" in state:
            span.set_attribute("embellama.request_id", state["request_id"])
        for key, value in state.get("access", {}).items():
            if isinstance(value, str | int | float | bool):
                span.set_attribute(_attribute(key), value)
        for stage in log.stages:
            self.stage(stage)
        if log.finished is not None and "at" in answer:
            self.child("encode", log.finished, answer["at"], {})
        span.end()

    def stage(self, stage: Stage) -> None:
        name = _SPAN_NAMES.get(stage.name, stage.name)
        attributes = {_attribute(key): value for key, value in stage.attributes.items()}
        self.child(name, stage.start, stage.end, attributes)

    def child(self, name: str, start: float, end: float, attributes: Mapping[str, Any]) -> None:
        """A finished INTERNAL span under the request's, in its trace and sampling."""
        tracing, parent = self.tracing, self.parent
        context = SpanContext(
            parent.trace_id,
            tracing.provider.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
        child = ReadableSpan(
            name,
            context=context,
            parent=parent,
            resource=tracing.provider.resource,
            attributes=dict(attributes),
            kind=SpanKind.INTERNAL,
            start_time=self.ns(start),
            end_time=self.ns(end),
            instrumentation_scope=tracing.scope,
        )
        tracing.processor.on_end(child)


def _attribute(key: str) -> str:
    """`batch_size` -> `embellama.batch.size`: one namespace for what is ours."""
    return "embellama." + key.replace("_", ".")
