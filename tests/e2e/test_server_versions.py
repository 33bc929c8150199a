"""Two versions of one model name behind a real server: pins, sticky weighted routing,
the version in every answer, separate cache entries, weights changed at run time (by
the admin API, under load, and by a reload from the file)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from embellama import EmbeddingEngine, Normalization
from embellama.routing import choose
from tests.e2e.server import ServerProcess, serving
from tests.tolerances import assert_batch_invariant

ADMIN_KEY = "sk-admin-versions-7c1e94"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TEXT = "which version embeds this"


def _config(minilm: Path, weights: tuple[float, float] = (90, 10)) -> str:
    # One file twice: v2 differs by its normalization only, so both versions share the
    # file and the pooling and only the version can keep their cache entries apart.
    return f"""
[server]
admin_key = ["{ADMIN_KEY}"]
request_timeout = 30

[[models]]
name = "m"
version = "v1"
weight = {weights[0]}
path = "{minilm}"
aliases = ["text-embedding-3-small"]
workers = 1
threads_per_worker = 1

[[models]]
name = "m"
version = "v2"
weight = {weights[1]}
path = "{minilm}"
normalization = "none"
workers = 1
threads_per_worker = 1
"""


@pytest.fixture(scope="module")
def versioned(
    minilm_gguf: Path, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Path]]:
    config = tmp_path_factory.mktemp("versions") / "embellama.toml"
    config.write_text(_config(minilm_gguf))
    with serving(["--config", str(config)], server_logs) as process:
        yield process, config


@pytest.fixture(autouse=True)
def weights_90_10(versioned: tuple[ServerProcess, Path]) -> Iterator[None]:
    yield
    _set_weights(versioned[0], {"v1": 90, "v2": 10})


def _embed(server: ServerProcess, model: str, **fields: object) -> httpx.Response:
    body = {"input": TEXT, "model": model, **fields}
    response = httpx.post(server.url + "/v1/embeddings", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response


def _set_weights(server: ServerProcess, weights: object) -> httpx.Response:
    return httpx.post(
        server.url + "/admin/models/m/weights", json=weights, headers=ADMIN, timeout=30
    )


def _served(response: httpx.Response) -> str:
    model = response.json()["model"]
    assert model == "m@" + response.headers["x-model-version"]
    return str(model)


def test_a_pinned_version_gives_that_versions_vectors(
    versioned: tuple[ServerProcess, Path], minilm_gguf: Path
) -> None:
    server, _ = versioned
    with (
        EmbeddingEngine.from_path(minilm_gguf) as l2,
        EmbeddingEngine.from_path(minilm_gguf, normalization=Normalization.NONE) as raw,
    ):
        for model, reference in (("m@v1", l2), ("m@v2", raw)):
            response = _embed(server, model)
            assert _served(response) == model
            assert_batch_invariant(response.json()["data"][0]["embedding"], reference.embed(TEXT))
    _set_weights(server, {"v2": 100})
    assert _served(_embed(server, "m@v1", user="anyone")) == "m@v1"  # never rerouted


def test_the_name_routes_each_user_to_one_version_by_weight(
    versioned: tuple[ServerProcess, Path],
) -> None:
    server, _ = versioned
    users = [f"user-{n}" for n in range(120)]
    weights = [("v1", 90.0), ("v2", 10.0)]
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def version_of(user: str, model: str = "m") -> str:
            answer = client.post(
                "/v1/embeddings", json={"input": "x", "model": model, "user": user}
            )
            assert answer.status_code == 200, answer.text
            return str(answer.headers["x-model-version"])

        got = {user: version_of(user) for user in users}
        assert got == {user: choose(weights, user) for user in users}
        assert set(got.values()) == {"v1", "v2"}
        assert all(version_of(user, "text-embedding-3-small") == got[user] for user in users[:20])
        again = {user: version_of(user) for user in users[:30]}
        assert again == {user: got[user] for user in users[:30]}
        # Without `user`: the header, else the caller's address, decides.
        by_header = [
            client.post(
                "/v1/embeddings",
                json={"input": "x", "model": "m"},
                headers={"x-embellama-ab-key": user},
            ).headers["x-model-version"]
            for user in users[:20]
        ]
        assert by_header == [got[user] for user in users[:20]]


def test_promotion_and_rollback_move_users_without_moving_pins(
    versioned: tuple[ServerProcess, Path],
) -> None:
    server, _ = versioned
    users = [f"promo-{n}" for n in range(40)]
    answer = _set_weights(server, {"v2": 100})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "updated",
        "model": "m",
        "weights": {"v1": 0.0, "v2": 100.0},
        "previous": {"v1": 90.0, "v2": 10.0},
    }
    assert {_served(_embed(server, "m", user=user)) for user in users} == {"m@v2"}
    assert _served(_embed(server, "m@v1")) == "m@v1"
    shown = httpx.get(server.url + "/admin/models/text-embedding-3-small", headers=ADMIN).json()
    assert shown["model"] == "m" and shown["versioned"] is True
    assert [(v["name"], v["weight"]) for v in shown["versions"]] == [("m@v1", 0), ("m@v2", 100)]
    assert _set_weights(server, {"v1": 100}).status_code == 200  # rollback
    assert {_served(_embed(server, "m", user=user)) for user in users} == {"m@v1"}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"v3": 10}, 400, "has no version 'v3'"),
        ({"v1": -1}, 400, "must be a number >= 0"),
        ({"v1": "10"}, 400, "must be a number >= 0"),
        ({"v1": 0, "v2": 0}, 400, "must not all be 0"),
        ({}, 400, "an object of version weights"),
        ([90, 10], 400, "JSON object"),
        # A body of 50,000 versions is bounded before it is built, like any other body.
        ({f"v{n}": 1 for n in range(50_000)}, 400, "strings, lists and objects"),
    ],
)
def test_bad_weights_are_refused_and_change_nothing(
    versioned: tuple[ServerProcess, Path], body: object, status: int, says: str
) -> None:
    server, _ = versioned
    answer = _set_weights(server, body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]["message"]
    shown = httpx.get(server.url + "/admin/models/m", headers=ADMIN).json()
    assert [v["weight"] for v in shown["versions"]] == [90, 10]


def test_the_weights_routes_need_the_admin_key_and_a_known_name(
    versioned: tuple[ServerProcess, Path],
) -> None:
    server, _ = versioned
    assert httpx.post(server.url + "/admin/models/m/weights", json={"v2": 100}).status_code == 401
    unknown = httpx.post(server.url + "/admin/models/nope/weights", json={"v1": 1}, headers=ADMIN)
    assert unknown.status_code == 404, unknown.text
    assert httpx.get(server.url + "/admin/models/nope", headers=ADMIN).status_code == 404
    assert _served(_embed(server, "m", user="user-1"))  # still serving


def test_two_versions_of_one_file_never_share_cache_entries(
    versioned: tuple[ServerProcess, Path],
) -> None:
    server, _ = versioned
    text = f"cached once per version {time.time()}"
    hits = [
        _embed(server, model, input=text).headers["x-cache-hits"]
        for model in ("m@v1", "m@v2", "m@v1", "m@v2")
    ]
    assert hits == ["0", "0", "1", "1"]
    shown = httpx.get(server.url + "/admin/models/m", headers=ADMIN).json()["versions"]
    assert shown[0]["fingerprint"] == shown[1]["fingerprint"]
    assert shown[0]["cache_tag"] != shown[1]["cache_tag"]


def test_models_info_metrics_and_tokenize_name_the_version(
    versioned: tuple[ServerProcess, Path],
) -> None:
    server, _ = versioned
    _embed(server, "m@v2")
    cards = {card["id"]: card for card in httpx.get(server.url + "/v1/models").json()["data"]}
    assert {"m", "text-embedding-3-small", "m@v1", "m@v2"} <= set(cards)
    assert cards["m"]["versions"] == {"v1": 90, "v2": 10}
    assert cards["m@v2"]["version"] == "v2"
    info = httpx.get(server.url + "/info").json()
    assert info["versions"] == {"m": {"v1": 90, "v2": 10}}
    assert [m["version"] for m in info["models"]] == ["v1", "v2"]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'embellama_inputs_total{model="m@v2",version="v2"}' in metrics
    tokens = httpx.post(server.url + "/tokenize", json={"content": "hi", "model": "m@v2"})
    assert tokens.status_code == 200 and tokens.headers["x-model-version"] == "v2"


def test_the_openai_sdk_sees_the_version_that_served(
    versioned: tuple[ServerProcess, Path],
) -> None:
    server, _ = versioned
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    pinned = client.embeddings.create(model="m@v2", input=TEXT)
    assert pinned.model == "m@v2"
    routed = client.embeddings.create(model="m", input=TEXT, user="user-7")
    assert routed.model == f"m@{choose([('v1', 90.0), ('v2', 10.0)], 'user-7')}"


@pytest.mark.slow
def test_weights_change_three_times_under_load_with_no_failed_request(
    versioned: tuple[ServerProcess, Path],
) -> None:
    server, _ = versioned
    stop = threading.Event()
    failures: list[str] = []
    served: Counter[str] = Counter()

    def client(index: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"input": f"load {index} {n}", "model": "m", "user": f"c{index}-{n % 50}"}
                answer = http.post("/v1/embeddings", json=body)
                if answer.status_code != 200:
                    failures.append(answer.text)
                else:
                    served[answer.headers["x-model-version"]] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for weights in ({"v1": 50, "v2": 50}, {"v2": 100}, {"v1": 100}):
            time.sleep(1.0)
            assert _set_weights(server, weights).status_code == 200
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert served["v1"] > 0 and served["v2"] > 0


@pytest.mark.slow
def test_a_reload_from_the_file_sets_the_weights_and_keeps_the_models(
    versioned: tuple[ServerProcess, Path], minilm_gguf: Path
) -> None:
    server, config = versioned
    pids = httpx.get(server.url + "/admin/workers", headers=ADMIN).json()
    try:
        config.write_text(_config(minilm_gguf, (30, 70)))
        assert (
            httpx.post(server.url + "/admin/reload", headers=ADMIN, timeout=60).status_code == 200
        )
        shown = httpx.get(server.url + "/admin/models/m", headers=ADMIN).json()
        assert [v["weight"] for v in shown["versions"]] == [30, 70]
        assert httpx.get(server.url + "/admin/workers", headers=ADMIN).json() == pids
    finally:
        config.write_text(_config(minilm_gguf))
        httpx.post(server.url + "/admin/reload", headers=ADMIN, timeout=60)


def test_every_api_routes_by_the_same_key_and_says_which_version(
    versioned: tuple[ServerProcess, Path],
) -> None:
    """The drop-in APIs pick the version as /v1/embeddings does (the same assignment
    header, the same pin) and name it in `x-model-version`."""
    server, _ = versioned
    bodies: dict[str, dict[str, object]] = {
        "/v2/embed": {"texts": [TEXT], "input_type": "search_query", "embedding_types": ["float"]},
        "/api/embed": {"input": TEXT},
        "/embed": {"inputs": TEXT},
    }
    _set_weights(server, {"v1": 50, "v2": 50})
    keys = [f"client-{i}" for i in range(40)]
    expected = {key: _embed(server, "m", user=key).headers["x-model-version"] for key in keys}
    assert set(expected.values()) == {"v1", "v2"}  # both versions are in play
    for path, body in bodies.items():
        for key in keys:
            headers = {"x-embellama-ab-key": key}
            answer = httpx.post(
                server.url + path, json={**body, "model": "m"}, headers=headers, timeout=30
            )
            assert answer.status_code == 200, (path, answer.text)
            assert answer.headers["x-model-version"] == expected[key], (path, key)
        pinned = httpx.post(server.url + path, json={**body, "model": "m@v2"}, timeout=30)
        assert pinned.status_code == 200 and pinned.headers["x-model-version"] == "v2", path
