"""What stands between the service and its network: token authentication, security headers and a
request log that holds no patient inputs.

Three plain ASGI middlewares (no per-request body buffering):

- ``TokenAuth``: with a token configured, every request except the page, its static files,
  ``/healthz`` and the API's schema (``/openapi.json``, ``/docs``, ``/redoc``) needs
  ``Authorization: Bearer <token>`` (or ``?token=<token>``, for download links a browser
  follows); otherwise 401. Without a token the service is open, which is the default for a
  service on the loopback address (``ketasim serve`` refuses another address without one unless told).
- ``SecurityHeaders``: a Content-Security-Policy without inline or remote script (the page's
  scripts are files under ``/static``), ``X-Content-Type-Options: nosniff``, no framing, no referrer.
  FastAPI's interactive ``/docs`` and ``/redoc`` load their scripts from a CDN and are left without
  the policy.
- ``RequestLog``: one line per request on the ``ketasim.web.requests`` logger: method, path (never
  the query string, which may carry a token), status and milliseconds. Bodies (scenarios, trials,
  patients) are never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from urllib.parse import parse_qs

#: no token needed: the page and its files hold no data; the schema and its viewers describe the API
PUBLIC_PATHS = ("/", "/healthz", "/favicon.ico", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
PUBLIC_PREFIXES = ("/static/",)
UNGUARDED_DOCS = ("/docs", "/docs/oauth2-redirect", "/redoc")

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
                           "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]

request_log = logging.getLogger("ketasim.web.requests")


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class TokenAuth:
    """401 for a request without the service's token (see the module docstring)."""

    def __init__(self, app, token: str):
        if not token or len(token) < 16:
            raise ValueError("the service token must have at least 16 characters")
        self.app, self._token = app, token.encode()

    def _presented(self, scope) -> bytes | None:
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return value[7:].strip()
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return query["token"][0].encode() if query.get("token") else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _public(scope["path"]):
            return await self.app(scope, receive, send)
        presented = self._presented(scope)
        if presented is not None and hmac.compare_digest(presented, self._token):
            return await self.app(scope, receive, send)
        reason = "missing" if presented is None else "wrong"
        body = json.dumps({"detail": [{"loc": ["header", "authorization"], "type": "unauthorized",
                                       "msg": f"this service needs a token ({reason}): send "
                                              "'Authorization: Bearer <token>'"}]}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})  # SecurityHeaders adds the rest
        await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """The headers above on every response (the policy everywhere but FastAPI's own docs pages)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = list(SECURITY_HEADERS)
        if scope["path"] not in UNGUARDED_DOCS:
            extra.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in extra if h[0] not in present)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestLog:
    """Method, path, status and duration of each request; nothing a client sent in it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def remember_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            request_log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status[0],
                             1000 * (time.perf_counter() - started))
