"""The assignment key a request's version choice hashes (routing.py): the body's `user`,
else the `x-embellama-ab-key` header, else the caller's API key identity, else its
address. Picks nothing itself; `user` and the header are taken as sent, so a library
call with `ab_key="alice"` and a request from user "alice" land on the same version."""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["AB_KEY_HEADER", "assignment_key"]

AB_KEY_HEADER = "x-embellama-ab-key"


def assignment_key(request: Request, user: str | None = None) -> str:
    if user:
        return user
    header = request.headers.get(AB_KEY_HEADER)
    if header:
        return header
    identity = request.scope.get("state", {}).get("client")  # "key#0:sk-…" or "addr:…"
    if identity:
        return str(identity)
    peer = request.client
    return f"addr:{peer.host}" if peer else "addr:unknown"
