"""Haystack's TEI components (huggingface-api-haystack: the two `HuggingFaceAPI*Embedder`s
with `api_type="text_embeddings_inference"`, `HuggingFaceTEIRanker`) and its Jina ranker
(jina-haystack) against embellama. Run by tests/e2e/test_clients.py with .venv-clients'
python: reads `{url, key, model, reranker, texts, query}`, prints what each returned."""

from __future__ import annotations

import json
import sys
from typing import Any

from haystack import Document
from haystack.utils import Secret
from haystack_integrations.components.embedders.huggingface_api import (
    HuggingFaceAPIDocumentEmbedder,
    HuggingFaceAPITextEmbedder,
)
from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker
from haystack_integrations.components.rankers.jina import JinaRanker


def embedders(job: dict[str, Any], token: Secret) -> dict[str, list[list[float]]]:
    """Haystack asks TEI for raw vectors unless `normalize=True`: both ways are run."""
    tei = {"api_type": "text_embeddings_inference", "api_params": {"url": job["url"]}}
    text = HuggingFaceAPITextEmbedder(**tei, token=token)
    unit = HuggingFaceAPITextEmbedder(**tei, token=token, normalize=True)
    documents = HuggingFaceAPIDocumentEmbedder(**tei, token=token, progress_bar=False)
    embedded = documents.run(documents=[Document(content=t) for t in job["texts"]])
    return {
        "text_embedder": [text.run(text=job["query"])["embedding"]],
        "text_embedder_long": [text.run(text=job["long"])["embedding"]],  # truncate=True
        "text_embedder_normalized": [unit.run(text=job["query"])["embedding"]],
        "document_embedder": [document.embedding for document in embedded["documents"]],
    }


def ranked(ranker: Any, job: dict[str, Any]) -> list[list[object]]:
    """Each returned document as `[content, score]`, in the order the ranker gave."""
    documents = [Document(content=t) for t in job["texts"]]
    answer = ranker.run(query=job["query"], documents=documents)
    return [[document.content, document.score] for document in answer["documents"]]


def main() -> None:
    job: dict[str, Any] = json.load(sys.stdin)
    token = Secret.from_token(job["key"])
    tei_ranker = HuggingFaceTEIRanker(url=job["url"], token=token, top_k=len(job["texts"]))
    jina_ranker = JinaRanker(
        model=job["reranker"], api_key=token, base_url=job["url"] + "/v1/rerank"
    )
    answers = {
        **embedders(job, token),
        "tei_ranker": ranked(tei_ranker, job),
        "jina_ranker": ranked(jina_ranker, job),
    }
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
