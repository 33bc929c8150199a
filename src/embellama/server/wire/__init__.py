"""Every request and response shape of the HTTP API, declared once.

A request is a pydantic model: its validation parses the body, its JSON schema goes in
/openapi.json. A response is a TypedDict the encoders build (mypy checks them against
it); `TypeAdapter(...).json_schema()` documents it. Nothing here reads the state.
"""
