"""How the web service refuses input: FastAPI's 422 shape with the offending field named.

``{"detail": [{"loc": ["body", "dose", 0, "amount"], "msg": "...", "type": "value_error"}]}``: the
same shape FastAPI uses for its own request validation, so a client handles one format. The body
size limit (413) is an ASGI middleware, so an oversized body is refused before anything reads it.
"""

from __future__ import annotations

import errno
import json
import re
import sqlite3

from starlette.requests import Request
from starlette.responses import JSONResponse

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class InputError(Exception):
    """Input the service cannot use; answered with ``status`` (422 unless said otherwise)."""

    def __init__(self, loc: list, msg: str, kind: str = "value_error", status: int = 422):
        super().__init__(msg)
        self.loc, self.msg, self.kind, self.status = loc, msg, kind, status


def field_loc(field: str, root: str = "body") -> list:
    """``dose[0].amount`` -> ``["body", "dose", 0, "amount"]`` (a whole-document error -> ``["body"]``)."""
    if field in ("scenario", "trial file", ""):
        return [root]
    return [root, *(name if name else int(index) for name, index in _PART.findall(field))]


def from_scenario_error(exc, root: str = "body") -> InputError:
    """A ``ScenarioError`` as a 422 naming its field (the message without the repeated field prefix)."""
    message = str(exc)
    prefix = f"{exc.field}: "
    return InputError(field_loc(exc.field, root), message[len(prefix):] if message.startswith(prefix) else message)


def error_body(loc: list, msg: str, kind: str) -> dict:
    return {"detail": [{"loc": loc, "msg": msg, "type": kind}]}


async def input_error_handler(request: Request, exc: InputError) -> JSONResponse:
    return JSONResponse(error_body(exc.loc, exc.msg, exc.kind), status_code=exc.status)


#: a write that failed because the disk (or the user's quota on it) is full
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def storage_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


def insufficient_storage(detail: str) -> InputError:
    return InputError(["server", "data"], f"the service's data folder is full ({detail}); nothing was kept. Delete "
                      "old runs (--keep-runs/--keep-days) or free space, then retry", "insufficient_storage", status=507)


async def storage_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """507 for a full disk or data quota, so a client sees why; anything else stays a server error."""
    if storage_full(exc):
        refusal = insufficient_storage(str(exc))
        return JSONResponse(error_body(refusal.loc, refusal.msg, refusal.kind), status_code=507)
    raise exc


class BodySizeLimit:
    """ASGI middleware: a request body above ``max_bytes`` is answered 413 without reaching the app.

    The body is read here (declared length checked first, then the bytes actually sent, which
    covers chunked uploads) and replayed to the app.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        payload = json.dumps(error_body(["body"], f"the request body is larger than {self.max_bytes} bytes",
                                        "too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
