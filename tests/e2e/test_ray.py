"""Ray, for real: the corpus job on Ray Data (`embellama embed --ray`, a local cluster
started by the command) against the local job, and the server as a Ray Serve
application with 2 replicas, called with the `openai` SDK, scaled down to 1 under load."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from openai import OpenAI
from ray import serve

from embellama import EmbeddingEngine
from embellama.ray.serve import build
from tests.e2e.server import free_port
from tests.tolerances import assert_batch_invariant

pytestmark = pytest.mark.slow


def _corpus(path: Path, count: int) -> Path:
    rows = [
        {"doc": f"doc-{i}", "text": f"row {i}: local embeddings, search and retrieval"}
        for i in range(count)
    ]
    rows[5]["text"] = ""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_ray_data_job_equals_the_local_job(minilm_gguf: Path, tmp_path: Path) -> None:
    source = _corpus(tmp_path / "in.jsonl", 1500)
    common = ["--input", str(source), "--model-path", str(minilm_gguf), "--id-column", "doc"]
    local = tmp_path / "local.parquet"
    distributed = tmp_path / "ray.parquet"
    for output, extra in ((local, []), (distributed, ["--ray", "--ray-actors", "2"])):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "embellama",
                "embed",
                *common,
                "--output",
                str(output),
                "--no-progress",
                "--threads-per-worker",
                "1",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "1499 rows embedded" in done.stderr and ", 1 bad row listed" in done.stderr
        # The job's summary is what shows: Ray's INFO lines stay in its session log.
        assert " INFO " not in done.stderr, done.stderr[-3000:]
        assert len(done.stderr.splitlines()) <= 5, done.stderr[-3000:]
    want = pq.read_table(local)
    got = pq.read_table(distributed)  # a directory of parts, in any order
    by_id = dict(
        zip(got.column("id").to_pylist(), got.column("embedding").to_pylist(), strict=True)
    )
    assert sorted(by_id) == sorted(want.column("id").to_pylist())
    vectors = np.asarray([by_id[i] for i in want.column("id").to_pylist()], dtype=np.float32)
    assert_batch_invariant(vectors, np.asarray(want.column("embedding").to_pylist(), np.float32))
    errors = tmp_path / "ray.errors.jsonl"
    # As the local job lists it: row and line too, though Ray Data keeps no row numbers.
    assert json.loads(errors.read_text()) == json.loads(
        (tmp_path / "local.errors.jsonl").read_text()
    )
    assert json.loads(errors.read_text()) == {
        "row": 5,
        "id": "doc-5",
        "reason": "empty text",
        "line": 6,
    }


README_SNIPPET = """
import sys
import numpy as np
import ray
from embellama.ray import embed_dataset

ray.init(num_cpus=2, include_dashboard=False)  # a 2-CPU machine
ds = embed_dataset(ray.data.read_parquet(sys.argv[3]), model=sys.argv[1],
                   concurrency=2, threads_per_actor=1)
rows = ds.take_all()
np.save(sys.argv[2], np.array([r["embedding"] for r in sorted(rows, key=lambda r: r["text"])]))
"""


def test_the_readme_numbers_run_on_a_2_cpu_cluster(minilm_gguf: Path, tmp_path: Path) -> None:
    """2 actors x 1 thread on 2 CPUs: the actors reserve less than all, so the read runs
    (it used to wait forever on "3/2 CPU")."""
    out = tmp_path / "vectors.npy"
    texts = sorted(f"row {i}: local embeddings on a small machine" for i in range(200))
    docs = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": texts}), docs)
    done = subprocess.run(
        [sys.executable, "-c", README_SNIPPET, str(minilm_gguf), str(out), str(docs)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "each actor reserves 0.50 CPUs" in done.stderr
    with EmbeddingEngine.from_path(minilm_gguf) as engine:
        assert_batch_invariant(np.load(out), engine.embed(texts))


@pytest.fixture(scope="module")
def serve_port() -> Iterator[int]:
    ray.init(num_cpus=3, include_dashboard=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield port
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def _replicas() -> int:
    status = serve.status().applications["embellama"].deployments["Embellama"]
    states: dict[str, int] = {getattr(k, "value", k): v for k, v in status.replica_states.items()}
    return states.get("RUNNING", 0)


def test_ray_serve_replicas_and_scale_down(serve_port: int, minilm_gguf: Path) -> None:
    model = {"model_path": minilm_gguf, "model_name": "minilm"}
    app = build({"num_replicas": 2, "threads_per_replica": 1, **model})
    serve.run(app, name="embellama", route_prefix="/")
    assert _replicas() == 2
    texts = ["replicas behind Ray's proxy", "the same vectors as the library"]
    with EmbeddingEngine.from_path(minilm_gguf) as engine:
        expected = engine.embed(texts)
    with OpenAI(base_url=f"http://127.0.0.1:{serve_port}/v1", api_key="unused") as client:
        answer = client.embeddings.create(model="minilm", input=texts)
    for item, vector in zip(answer.data, expected, strict=True):
        assert_batch_invariant(item.embedding, vector)
    failures: list[str] = []
    sent = [0]
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                response = http.post(
                    f"http://127.0.0.1:{serve_port}/v1/embeddings", json={"input": texts[0]}
                )
                sent[0] += 1
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        smaller = build({"num_replicas": 1, "threads_per_replica": 1, **model})
        serve.run(smaller, name="embellama", route_prefix="/")
        assert _replicas() == 1
    finally:
        stop.set()
        worker.join(60)
    assert sent[0] > 0 and failures == [], failures[:3]
