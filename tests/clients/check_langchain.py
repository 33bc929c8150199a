"""LangChain's `HuggingFaceEndpointEmbeddings` (langchain-huggingface, TEI's routes) and
`OpenAIEmbeddings` (langchain-openai, /v1) against embellama. Run by tests/e2e/test_clients.py with .venv-clients' python: reads
`{url, key, texts, query}` on stdin, prints each call's vectors as JSON. Judges nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from huggingface_hub.errors import HfHubHTTPError
from langchain_huggingface import HuggingFaceEndpointEmbeddings
from langchain_openai import OpenAIEmbeddings


def refuses_url_as_model(url: str, key: str) -> bool:
    """LangChain's TEI page says `model="http://HOST:8080"`; 1.2.2 and later refuse a URL
    there before sending anything, which is why the README names `model_kwargs`."""
    try:
        HuggingFaceEndpointEmbeddings(model=url, huggingfacehub_api_token=key)
    except ValueError:
        return True
    return False


async def asynchronous(embeddings: HuggingFaceEndpointEmbeddings, job: dict[str, Any]) -> Any:
    """Both async calls on one loop: the client's session belongs to the loop it opened on."""
    return {
        "aembed_documents": await embeddings.aembed_documents(job["texts"]),
        "aembed_query": [await embeddings.aembed_query(job["query"])],
    }


def openai(job: dict[str, Any]) -> dict[str, list[list[float]]]:
    """As LangChain documents for OpenAI-compatible servers: raw text, not tiktoken ids of
    OpenAI's vocabulary, which would mean other tokens to any other model."""
    embeddings = OpenAIEmbeddings(
        model=job["model"],
        base_url=job["url"] + "/v1",
        api_key=job["key"],
        check_embedding_ctx_length=False,
    )
    return {
        "openai_embed_documents": embeddings.embed_documents(job["texts"]),
        "openai_embed_query": [embeddings.embed_query(job["query"])],
    }


def refusal(embeddings: HuggingFaceEndpointEmbeddings, text: str) -> dict[str, Any]:
    """What a user sees for a text over the model's context (TEI does not cut by default)."""
    try:
        embeddings.embed_documents([text])
    except HfHubHTTPError as error:
        return {"status": error.response.status_code, "message": str(error)}
    return {"status": None, "message": "embedded"}


def main() -> None:
    job: dict[str, Any] = json.load(sys.stdin)
    # feature_extraction's own `model` takes a URL: the client then posts TEI's `POST /`.
    embeddings = HuggingFaceEndpointEmbeddings(
        model_kwargs={"model": job["url"]}, huggingfacehub_api_token=job["key"]
    )
    answers = {
        "too_long": refusal(embeddings, job["long"]),  # first: the server must serve on
        "cut": HuggingFaceEndpointEmbeddings(
            model_kwargs={"model": job["url"], "truncate": True},
            huggingfacehub_api_token=job["key"],
        ).embed_documents([job["long"]]),
        "embed_documents": embeddings.embed_documents(job["texts"]),
        "embed_query": [embeddings.embed_query(job["query"])],
        **asyncio.run(asynchronous(embeddings, job)),
        **openai(job),
        "refuses_url_as_model": refuses_url_as_model(job["url"], job["key"]),
    }
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
