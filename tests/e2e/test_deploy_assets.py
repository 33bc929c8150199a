"""The deployment assets agree with the real server: the Kubernetes manifest's flags,
variables and probe paths, and every metric the Grafana dashboard queries (scraped from
a live server with workers and a Redis cache, so every family is present)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import yaml

from embellama.cli.options import CACHE_OPTIONS, MODEL_OPTIONS, SERVER_OPTIONS
from embellama.cli.serve import parse_serve_args
from tests.e2e.redis_server import start_redis
from tests.e2e.server import serving

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_kubernetes_manifest_matches_the_server() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "embellama.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command, *flags = container["args"]
    assert command == "serve"
    parsed = parse_serve_args(flags)  # an unknown flag or bad value exits here
    assert (parsed.host, parsed.port, parsed.workers) == ("0.0.0.0", 8080, 1)
    known = {o.env for o in (*SERVER_OPTIONS, *MODEL_OPTIONS, *CACHE_OPTIONS)}
    assert {e["name"] for e in container["env"]} <= known
    port = container["ports"][0]["containerPort"]
    assert port == parsed.port
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    service = next(d for d in documents if d["kind"] == "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_deploy_assets_cite_tests_that_exist() -> None:
    """A comment that names the test guarding an asset must name a real one."""
    cited = []
    for asset in (p for p in DEPLOY.rglob("*") if p.is_file()):
        for match in re.finditer(r"tests/[\w/]+\.py(?:::\w+)?", asset.read_text()):
            path, _, name = match.group().partition("::")
            test_file = DEPLOY.parent / path
            assert test_file.is_file(), f"{asset.name} cites {path}, which does not exist"
            assert not name or f"def {name}(" in test_file.read_text(), match.group()
            cited.append(match.group())
    assert cited  # the manifest names its test


def _queried_metrics() -> set[str]:
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"embellama_[a-z_]+", target["expr"]))
    assert names
    return names


def test_every_dashboard_metric_exists(
    minilm_gguf: Path, server_logs: Path, tmp_path: Path
) -> None:
    redis = start_redis(tmp_path)
    try:
        args = ["--model-path", str(minilm_gguf), "--workers", "1", "--cache-url", redis.url]
        with serving(args, server_logs) as server:
            httpx.post(server.url + "/v1/embeddings", json={"input": ["a", "b"]}, timeout=60)
            httpx.post(server.url + "/v1/embeddings", json={"input": 3}, timeout=60)  # a 400
            scraped = httpx.get(server.url + "/metrics").text
    finally:
        redis.stop()
    exposed = set(re.findall(r"^(embellama_[a-z_]+)", scraped, re.MULTILINE))
    missing = sorted(name for name in _queried_metrics() if name not in exposed)
    assert missing == []
