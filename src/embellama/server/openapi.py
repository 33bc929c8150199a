"""The published contract: an OpenAPI 3.1 document for every route, and the /docs page.

Written next to the parsers it describes (`schemas.py`, `routes/`). Two things keep it
from drifting: a test that the spec's routes are exactly the app's, and schemathesis,
which fuzzes the live server from this document and fails on any response (status,
content type or body) the document does not allow. /docs serves Swagger UI from the
`swagger-ui-py` package's bundled assets: nothing is fetched from a CDN.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from embellama import __version__

__all__ = ["DOCS_PAGE", "SWAGGER_ASSETS", "openapi_document"]

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _ok(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


_ERROR_TEXT = {
    400: "Invalid request; `param` names the field (or `input[i]`). Over a limit in /info "
    "(inputs, instruction length) too; a body with more strings, lists and objects than "
    "16 per allowed input plus 1,024 is `too_many_values`",
    401: "Missing or wrong API key",
    403: "Forbidden (admin API off, or a path outside the models directory)",
    404: "Unknown model or route",
    413: "Body larger than the server's limit",
    429: "Queue full or rate limit reached; see Retry-After",
    499: "The client closed the connection",
    500: "Internal error (the request id is in x-request-id)",
    503: "No worker can run the work, or the server is draining",
    504: "The request did not finish within the request timeout",
}


# /tokenize and /detokenize: a 413 also when the ids are over the token cap.
_TOKENS_413 = (
    "Body larger than the server's limit (`request_too_large`), or more token ids than "
    "`max_tokenize_tokens` in /info (`too_many_tokens`; 262,144 by default), found "
    "before the ids of a longer text are all stored"
)


def _errors(*statuses: int, text: dict[int, str] | None = None) -> dict[str, Schema]:
    texts = {**_ERROR_TEXT, **(text or {})}
    return {
        str(status): {
            "description": texts[status],
            "content": {JSON: {"schema": _ref("Error")}},
        }
        for status in statuses
    }


_COMMON = (400, 401, 413, 429, 500)
_ADMIN = (400, 401, 403, 404, 413, 429, 500, 503)

_SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "EmbeddingsRequest": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {
                "description": "A string, strings, token ids, or lists of token ids (not "
                "mixed); at most `max_inputs_per_request` inputs (/info; 2,048 by default).",
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                    {
                        "type": "array",
                        "items": {"type": "array", "items": {"type": "integer"}},
                        "minItems": 1,
                    },
                ],
            },
            "model": {"type": "string", "description": "Name or alias; default: first model."},
            "encoding_format": {"enum": ["float", "base64", None]},
            "dimensions": {"type": "integer", "minimum": 1, "description": "Matryoshka cut."},
            "user": {"type": "string"},
            "truncate": {
                "description": "Extension: what to do with an input over the context.",
                "oneOf": [{"type": "boolean"}, {"enum": ["none", "end", "start", "chunk"]}],
            },
            "normalize": {"type": "boolean", "description": "Extension: override L2 etc."},
            "cache": {"type": "boolean", "description": "Extension: false bypasses the cache."},
            "input_type": {
                "description": "Extension: the texts' retrieval role; selects the model's "
                "query or document prefix.",
                "enum": ["query", "document", "search_query", "search_document", "passage"],
            },
            "pooling": {
                "description": 'Extension: "none" returns one vector per token (late '
                "interaction); each embedding is then a list of vectors.",
                "enum": ["none"],
            },
            "chunk_overlap": {
                "type": "integer",
                "minimum": 0,
                "description": 'Extension: with truncate "chunk", tokens shared by windows; '
                "with any other truncate a 400 (`param: chunk_overlap`).",
            },
            "instruction": {
                "type": "string",
                "description": "Extension: fills the model's instruction template (queries). "
                "Needs `input_type` (a 400 without); at most `max_instruction_length` "
                "characters (/info; 2,048 by default), more is a 400 (`param: instruction`).",
            },
        },
    },
    "EmbeddingsResponse": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer"},
                        "embedding": {
                            "description": "Floats, or base64 of little-endian float32; "
                            'with "pooling": "none", a list of those, one per token.',
                            "oneOf": [
                                {"type": "array", "items": {"type": "number"}},
                                {"type": "string", "contentEncoding": "base64"},
                                {
                                    "type": "array",
                                    "items": {"type": "array", "items": {"type": "number"}},
                                },
                                {"type": "array", "items": {"type": "string"}},
                            ],
                        },
                    },
                },
            },
            "model": {"type": "string"},
            "usage": {
                "type": "object",
                "required": ["prompt_tokens", "total_tokens"],
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                    "prompt_tokens_details": {
                        "type": "object",
                        "properties": {"cached_tokens": {"type": "integer"}},
                    },
                },
            },
        },
    },
    "TokenizeRequest": {
        "type": "object",
        "required": ["content"],
        "properties": {
            "content": {"type": "string"},
            "model": {"type": "string"},
            "add_special": {"type": "boolean", "default": False},
            "parse_special": {
                "type": "boolean",
                "default": True,
                "description": 'true reads special-token text ("[SEP]") as that token; '
                "/v1/embeddings never does, so its ids are those of add_special true and "
                "parse_special false.",
            },
            "with_pieces": {"type": "boolean", "default": False},
        },
    },
    "TokenizeResponse": {
        "type": "object",
        "required": ["tokens"],
        "properties": {
            "tokens": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"type": "integer"},
                        {
                            "type": "object",
                            "required": ["id", "piece"],
                            "properties": {
                                "id": {"type": "integer"},
                                "piece": {
                                    "oneOf": [
                                        {"type": "string"},
                                        {"type": "array", "items": {"type": "integer"}},
                                    ]
                                },
                            },
                        },
                    ]
                },
            }
        },
    },
    "DetokenizeRequest": {
        "type": "object",
        "required": ["tokens"],
        "properties": {
            "tokens": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "At most `max_tokenize_tokens` ids (/info); more is a 413.",
            },
            "model": {"type": "string"},
        },
    },
    "Document": {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string"}},
    },
    "RerankRequest": {
        "type": "object",
        "required": ["query", "documents"],
        "properties": {
            "query": {"type": "string"},
            "documents": {
                "description": "Strings, or objects with `text` (llama-server also sends "
                "`texts`, accepted in its place).",
                "type": "array",
                "minItems": 1,
                "items": {"oneOf": [{"type": "string"}, _ref("Document")]},
            },
            "model": {"type": "string", "description": "Name or alias; default: first reranker."},
            "top_n": {"type": "integer", "minimum": 1},
            "return_documents": {"type": "boolean"},
            "max_tokens_per_doc": {"type": "integer", "minimum": 1},
            "raw_scores": {
                "type": "boolean",
                "description": "Extension: the classifier's logit instead of its sigmoid.",
            },
            "truncate": {
                "description": "Extension: a pair over the context loses the document's end "
                "(true, default) or is refused (false). The query is never cut.",
                "oneOf": [{"type": "boolean"}, {"enum": ["none", "end"]}],
            },
        },
    },
    "RerankResponse": {
        "type": "object",
        "required": ["id", "model", "results", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "list"},
            "model": {"type": "string"},
            "results": {
                "description": "Sorted by relevance_score, best first; top_n of them.",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "relevance_score"],
                    "properties": {
                        "index": {"type": "integer"},
                        "relevance_score": {"type": "number"},
                        "document": _ref("Document"),
                        "truncated": {"const": True},
                    },
                },
            },
            "usage": {
                "type": "object",
                "required": ["prompt_tokens", "total_tokens"],
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
            "meta": {"type": "object"},
        },
    },
    "ModelCard": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
            "root": {"type": "string"},
            "aliases": {"type": "array", "items": {"type": "string"}},
            "dimensions": {"type": "integer"},
            "context_length": {"type": "integer"},
            "kind": {"enum": ["embedding", "rerank"]},
            "architecture": {"type": "string"},
            "verified": {"type": "boolean"},
            "pooling": {"type": "string"},
            "normalization": {"type": "string"},
            "prompts": {"type": ["object", "null"]},
            # "failed": listed so clients see the model is missing; `error` says why.
            "status": {"enum": ["ready", "failed"]},
            "error": {"type": "string"},
        },
    },
    "Object": {"type": "object"},
    "Info": {
        "type": "object",
        "description": "Every per-request limit; README: Limits.",
        "properties": {
            "max_inputs_per_request": {"type": "integer"},
            "max_body_bytes": {"type": "integer"},
            "max_tokenize_tokens": {
                "type": "integer",
                "description": "Token ids per /tokenize answer or /detokenize request.",
            },
            "max_instruction_length": {
                "type": "integer",
                "description": "Characters of a request's `instruction`.",
            },
            "encoding_formats": {"type": "array", "items": {"type": "string"}},
            "truncation_modes": {"type": "array", "items": {"type": "string"}},
            "max_documents_per_request": {"type": "integer"},
            "auth": {"type": "object"},
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "max_tokens_per_input": {"type": "integer"},
                        "max_chunks_per_input": {"type": "integer"},
                        "max_token_vectors_per_request": {"type": "integer"},
                        "memory_per_worker_bytes": {
                            "type": "integer",
                            "description": "Upper bound of one worker's KV cache, compute "
                            "and output buffers and weight copy, from the GGUF header.",
                        },
                    },
                },
            },
            "failed_models": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Models that could not start, with why (the others serve).",
            },
            "cache": {"type": ["object", "null"]},
        },
    },
}


def _embeddings() -> Schema:
    return {
        "post": {
            "summary": "Create embeddings (OpenAI-compatible)",
            "requestBody": _body(_ref("EmbeddingsRequest")),
            "responses": {
                "200": {
                    **_ok(_ref("EmbeddingsResponse")),
                    "headers": {
                        name: {"schema": {"type": "string"}}
                        for name in ("x-request-id", "x-tokens", "x-cache-hits", "x-prefix")
                    },
                },
                **_errors(*_COMMON, 404, 499, 503, 504),
            },
        }
    }


def _rerank() -> Schema:
    return {
        "post": {
            "summary": "Rerank documents against a query with a cross-encoder (Cohere/Jina shape)",
            "requestBody": _body(_ref("RerankRequest")),
            "responses": {
                "200": _ok(_ref("RerankResponse")),
                **_errors(*_COMMON, 404, 499, 503, 504),
            },
        }
    }


def _admin(method: str, summary: str, *, body: Schema | None = None) -> Schema:
    operation: Schema = {
        "summary": summary,
        "security": [{"adminKey": []}],
        "responses": {"200": _ok(_ref("Object")), **_errors(*_ADMIN)},
    }
    if body is not None:
        operation["requestBody"] = _body(body, required=False)
    return {method: operation}


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


def _paths() -> dict[str, Schema]:
    public: Schema = {"security": []}
    return {
        "/v1/embeddings": _embeddings(),
        "/embeddings": _embeddings(),
        **{
            path: _rerank()
            for path in ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking", "/v2/rerank")
        },
        "/tokenize": {
            "post": {
                "summary": "Tokenize text (llama-server's shape)",
                "requestBody": _body(_ref("TokenizeRequest")),
                "responses": {
                    "200": _ok(_ref("TokenizeResponse")),
                    **_errors(*_COMMON, 404, text={413: _TOKENS_413}),
                },
            }
        },
        "/detokenize": {
            "post": {
                "summary": "Token ids back to text (llama-server's shape)",
                "requestBody": _body(_ref("DetokenizeRequest")),
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "required": ["content"],
                            "properties": {"content": {"type": "string"}},
                        }
                    ),
                    **_errors(*_COMMON, 404, text={413: _TOKENS_413}),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "Served models and aliases",
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "required": ["object", "data"],
                            "properties": {
                                "object": {"const": "list"},
                                "data": {"type": "array", "items": _ref("ModelCard")},
                            },
                        }
                    ),
                    **_errors(401, 429, 500),
                },
            }
        },
        "/v1/models/{model_id}": {
            "get": {
                "summary": "One model (name or alias)",
                "parameters": [
                    {
                        "name": "model_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"200": _ok(_ref("ModelCard")), **_errors(401, 404, 429, 500)},
            }
        },
        "/health": {
            "get": {**public, "summary": "Alive", "responses": {"200": _ok(_ref("Object"))}}
        },
        "/ready": {
            "get": {
                **public,
                "summary": "Can serve now (503 while starting, draining or full)",
                "responses": {
                    "200": _ok(_ref("Object")),
                    "503": _ok(_ref("Object"), "Not ready; `reason` says why"),
                },
            }
        },
        "/info": {
            "get": {
                "summary": "Every limit a client needs",
                "responses": {"200": _ok(_ref("Info")), **_errors(401, 429, 500)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (public unless --metrics-auth)",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 429, 500),
                },
            }
        },
        "/openapi.json": {
            "get": {
                **public,
                "summary": "This document",
                "responses": {"200": _ok(_ref("Object"))},
            }
        },
        "/docs": {
            "get": {
                **public,
                "summary": "Interactive documentation (Swagger UI, bundled assets)",
                "responses": {
                    "200": {
                        "description": "HTML page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/docs/static/{name}": {
            "get": {
                **public,
                "summary": "A Swagger UI asset bundled with the server",
                "parameters": [_NAME],
                "responses": {
                    "200": {"description": "The file", "content": {"*/*": {"schema": {}}}},
                    **_errors(404),
                },
            }
        },
        "/admin/config": _admin("get", "Settings in force, secrets masked"),
        "/admin/workers": _admin("get", "Worker processes per model"),
        "/admin/reload": _admin("post", "Re-read the config file and install it"),
        "/admin/drain": _admin("post", "Stop accepting work (503 draining); answer when idle"),
        "/admin/undrain": _admin("post", "Accept work again after a drain"),
        "/admin/cache/clear": _admin(
            "post",
            "Clear cached vectors (all, or one model)",
            body={"type": "object", "properties": {"model": {"type": "string"}}},
        ),
        "/admin/models/{name}/load": {
            **_admin(
                "post",
                "Load a model: [[models]] keys, or no body for the config file's entry",
                body={"type": "object", "properties": {"path": {"type": "string"}}},
            ),
            "parameters": [_NAME],
        },
        "/admin/models/{name}/unload": {
            **_admin("post", "Unload a model (name or alias)"),
            "parameters": [_NAME],
        },
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "embellama",
            "version": __version__,
            "description": "OpenAI-compatible embeddings from GGUF models through llama.cpp.",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key, when the server has any (--api-key).",
                },
                "adminKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin key (--admin-key).",
                },
            },
        },
    }


SWAGGER_ASSETS = resources.files("swagger_ui") / "static"

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>embellama API</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui"});
  </script>
</body>
</html>
"""
