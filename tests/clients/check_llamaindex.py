"""LlamaIndex's `OllamaEmbedding` (llama-index-embeddings-ollama) and
`TextEmbeddingsInference` (llama-index-embeddings-text-embeddings-inference) against
embellama. Run by tests/e2e/test_clients.py with .venv-clients' python: reads
`{url, key, model, texts, query}` on stdin, prints each call's vectors as JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from llama_index.embeddings.ollama import OllamaEmbedding
from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference


def calls(embedding: Any, job: dict[str, Any]) -> dict[str, list[list[float]]]:
    """The three calls an index and a retriever make."""
    return {
        "get_text_embedding": [embedding.get_text_embedding(job["texts"][0])],
        "get_text_embedding_batch": embedding.get_text_embedding_batch(job["texts"]),
        "get_query_embedding": [embedding.get_query_embedding(job["query"])],
        # Over the context: both clients ask the server to cut (Ollama's default, TEI's flag).
        "long": [embedding.get_text_embedding(job["long"])],
    }


def main() -> None:
    job: dict[str, Any] = json.load(sys.stdin)
    bearer = {"Authorization": f"Bearer {job['key']}"}
    ollama = OllamaEmbedding(
        model_name=job["model"], base_url=job["url"], client_kwargs={"headers": bearer}
    )
    tei = TextEmbeddingsInference(
        model_name=job["model"], base_url=job["url"], auth_token=job["key"], timeout=60
    )
    json.dump({"ollama": calls(ollama, job), "tei": calls(tei, job)}, sys.stdout)


if __name__ == "__main__":
    main()
