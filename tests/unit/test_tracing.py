"""Tracing off costs nothing (no opentelemetry import, no middleware, no stage notes);
its flags are checked at start; the pipeline notes stages only for a traced call."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from embellama.cli.options import SERVER_OPTIONS, resolve
from embellama.config import ModelConfig, ServiceLimits
from embellama.errors import ConfigError
from embellama.pipeline import ServedModel
from embellama.stages import current, recording
from tests.unit.fake_backend import FakeBackends

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_tracing_off_imports_no_opentelemetry_and_adds_no_middleware() -> None:
    out = _python(
        """
        import sys
        from embellama.cli.options import SERVER_OPTIONS, resolve
        from embellama.cli.serve import parse_serve_args, tracing_from
        from embellama.server.app import create_app
        from embellama.server.state import Deployment, ServerState

        server = resolve(parse_serve_args([]), SERVER_OPTIONS, environ={})
        tracing = tracing_from(server)
        app = create_app(ServerState(deployment=Deployment(models=())), tracing=tracing)
        names = [type(m.cls).__name__ + ":" + getattr(m.cls, "__name__", "") for m in app.user_middleware]
        print(tracing, [m for m in sys.modules if m.startswith("opentelemetry")], names)
        """
    )
    assert out.startswith("None [] ")
    assert "racing" not in out.split("] ", 1)[1]


def test_tracing_on_without_the_extra_fails_in_one_line() -> None:
    out = _python(
        """
        import sys
        sys.modules["opentelemetry.exporter.otlp.proto.http.trace_exporter"] = None
        from embellama.cli.serve import tracing_from
        from embellama.errors import ConfigError
        try:
            tracing_from({"otlp_endpoint": "http://127.0.0.1:4318", "otlp_service_name": None})
        except ConfigError as exc:
            print(exc)
        """
    )
    assert "pip install 'embellama[otel]'" in out
    assert "--otlp-endpoint" in out


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ftp://collector:4318", "expected http://host:port"),
        ("collector:4318", "expected http://host:port"),
        ("http://", "expected http://host:port"),
        ("http://user:pw@collector:4318", "OTEL_EXPORTER_OTLP_HEADERS"),
        ("http://collector:99999", "not a valid URL"),
        ("http://collector:4318/?token=x", "without a query"),
    ],
)
def test_a_bad_otlp_endpoint_fails_at_start(value: str, why: str) -> None:
    with pytest.raises(ConfigError, match="EMBELLAMA_OTLP_ENDPOINT") as failure:
        resolve(None, SERVER_OPTIONS, environ={"EMBELLAMA_OTLP_ENDPOINT": value})
    assert why in str(failure.value)
    assert repr(value) not in str(failure.value)  # a password in a URL is never repeated


def test_otlp_endpoint_and_service_name_resolve_from_the_environment() -> None:
    values = resolve(
        None,
        SERVER_OPTIONS,
        environ={
            "EMBELLAMA_OTLP_ENDPOINT": "https://collector.example:4318",
            "EMBELLAMA_OTLP_SERVICE_NAME": "embed-eu",
        },
    )
    assert values["otlp_endpoint"] == "https://collector.example:4318"
    assert values["otlp_service_name"] == "embed-eu"
    off = resolve(None, SERVER_OPTIONS, environ={})
    assert (off["otlp_endpoint"], off["otlp_service_name"]) == (None, None)


def test_traces_url_appends_the_signal_path_once() -> None:
    from embellama.server.tracing import traces_url

    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    assert traces_url("http://c/otlp") == "http://c/otlp/v1/traces"


def test_recording_is_scoped_to_its_block() -> None:
    assert current() is None
    with recording() as outer:
        assert current() is outer
        with recording() as inner:
            assert current() is inner
        assert current() is outer
    assert current() is None


def _served(minilm_gguf: Path) -> ServedModel:
    return ServedModel(
        ModelConfig(path=minilm_gguf, name="m"), ServiceLimits(), None, backends=FakeBackends()
    )


def test_the_pipeline_notes_stages_of_a_traced_call_only(minilm_gguf: Path) -> None:
    from embellama.options import EmbedOptions

    async def body() -> None:
        served = _served(minilm_gguf)
        await served.start()
        try:
            await served.embed(["not traced"], EmbedOptions())
            assert served.scheduler._traced == 0
            with recording() as log:
                await served.embed(["one text", "and another one"], EmbedOptions())
            assert served.scheduler._traced == 0  # released after the call
            by_start = sorted(log.stages, key=lambda stage: (stage.start, stage.end))
            names = [stage.name for stage in by_start]
            assert names[:2] == ["tokenize", "queue"] and set(names[2:]) == {"decode"}
            tokens = log.stages[0].attributes["tokens"]
            decodes = [s for s in log.stages if s.name == "decode"]
            assert sum(int(d.attributes["tokens"]) for d in decodes) == tokens
            assert sum(int(d.attributes["inputs"]) for d in decodes) == 2
            assert log.finished is not None
            assert all(s.start <= s.end <= log.finished for s in log.stages)
            for stage in log.stages:  # counts and names, never the text
                assert all(
                    not isinstance(v, str) or v in ("mean",) for v in stage.attributes.values()
                )
        finally:
            await served.stop()

    asyncio.run(body())
