"""Request guards that run before any route: no cross-site browser request changes state, state-changing bodies
are JSON, a Prompter on loopback answers only at a loopback name (DNS rebinding), and no body larger than the
limit is read.

``CrossSiteGuard`` and ``BodyLimit`` are pure ASGI middleware: they decide on the headers, before a byte of
the body is buffered, and answer with a JSON ``detail`` like every other refusal. Label Studio's server-to-server
calls send no ``Origin`` and ``Content-Type: application/json`` (tests/e2e/fixtures/ls_requests.json), so they
pass unchanged.
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import settings

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAFE_FETCH_SITES = frozenset({"same-origin", "none"})  # "none": typed in the address bar, a bookmark
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """A loopback address or name (``127.0.0.1``, ``::1``, ``[::1]``, ``localhost``); a host name may resolve to
    anything, so it is not."""
    host = host.strip().lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` lowercased, the default port dropped; None when ``value`` is not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[parts.scheme] else "")


def allowed_origins() -> frozenset[str]:
    """PROMPTER_ALLOWED_ORIGINS, normalized; entries that are not origins are ignored."""
    found = (normalize_origin(item) for item in settings.allowed_origins.split(","))
    return frozenset(origin for origin in found if origin)


def own_origin(scope: Scope, headers: Headers) -> str | None:
    """The origin the browser sees this server at: the request's scheme and its Host header."""
    host = headers.get("host")
    return normalize_origin(f"{scope.get('scheme', 'http')}://{host}") if host else None


def cross_site_refusal(scope: Scope, headers: Headers) -> str | None:
    """Why a state-changing request is refused as cross-site, or None when it may go on.

    A browser says where a request comes from: ``Sec-Fetch-Site`` (current browsers; a page cannot set it) and
    ``Origin`` (on every cross-origin POST, and on older browsers the only sign). ``Sec-Fetch-Site:
    same-origin`` passes; else the ``Origin`` must be this server's (its Host header) when the browser sent no
    ``Sec-Fetch-Site``, or listed in PROMPTER_ALLOWED_ORIGINS. A request with neither header is no browser's
    cross-site request (Label Studio, curl, scripts): it passes, and the content-type and credential checks still
    apply to it.
    """
    origin_header = headers.get("origin")
    origin = normalize_origin(origin_header) if origin_header is not None else None
    site = headers.get("sec-fetch-site")
    if origin is not None and origin in allowed_origins():
        return None
    if site is not None:
        if site.strip().lower() in SAFE_FETCH_SITES:
            return None
        return (
            f"cross-site request refused: Sec-Fetch-Site is {site}, Origin {origin_header or '(none)'} is not in "
            "PROMPTER_ALLOWED_ORIGINS"
        )
    if origin_header is None:
        return None
    own = own_origin(scope, headers)
    if origin is None or origin != own:
        return (
            f"cross-site request refused: Origin {origin_header} is not this server's ({own or 'unknown'}) "
            "and not in PROMPTER_ALLOWED_ORIGINS"
        )
    return None


def rebinding_refusal(headers: Headers) -> str | None:
    """Why a request to a Prompter listening on loopback is refused for its Host, or None.

    A page on a name its owner re-points at 127.0.0.1 (DNS rebinding) is same-origin with Prompter to the
    browser, and its GETs carry neither ``Origin`` nor (plain http) ``Sec-Fetch-Site``: only the ``Host`` header,
    that name, gives it away. So on loopback a request must name a loopback host (``127.0.0.1``, ``localhost``,
    ``[::1]``), or the host of an origin in PROMPTER_ALLOWED_ORIGINS. Clients on the same machine (Label Studio,
    curl, the demo) use those names; a request with no Host at all (HTTP/1.0) passes.
    """
    if not is_loopback(settings.host) or (host := headers.get("host")) is None:
        return None
    try:
        hostname = urlsplit(f"//{host}").hostname or ""
    except ValueError:
        hostname = ""
    if is_loopback(hostname) or hostname in {urlsplit(origin).hostname for origin in allowed_origins()}:
        return None
    return (
        f"Host {host!r} refused: Prompter listens on loopback ({settings.host}) and answers at a loopback name "
        "only (DNS rebinding); add the origin to PROMPTER_ALLOWED_ORIGINS"
    )


def content_type_refusal(headers: Headers) -> str | None:
    """Why a state-changing request's body is refused, or None: a body must be declared ``application/json``
    (or ``application/*+json``), which a browser cannot send cross-site without a CORS preflight, and this server
    answers no preflight. No body and no Content-Type (``curl -X POST``) passes."""
    content_type = headers.get("content-type")
    if content_type is None:
        has_body = headers.get("transfer-encoding") is not None or headers.get("content-length", "0").strip() != "0"
        return "a request body needs Content-Type: application/json" if has_body else None
    media_type = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media_type.partition("/")
    if main == "application" and (sub == "json" or sub.endswith("+json")):
        return None
    return f"Content-Type {media_type or '(empty)'} refused: send application/json"


async def send_refusal(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is never read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class CrossSiteGuard:
    """POST, PUT, PATCH and DELETE: 403 for a cross-site browser request, 415 for a body that is not JSON. Any
    method: 403 for a request at a non-loopback name to a Prompter on loopback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if (reason := rebinding_refusal(headers)) is not None:
            await send_refusal(send, 403, reason)
            return
        if scope.get("method") not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        if (reason := cross_site_refusal(scope, headers)) is not None:
            await send_refusal(send, 403, reason)
            return
        if (reason := content_type_refusal(headers)) is not None:
            await send_refusal(send, 415, reason)
            return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised into the app from ``receive`` once the body passes the limit; the app's answer is replaced."""


class BodyLimit:
    """413 for a body over ``settings.body_limit()``: at once from Content-Length, else as soon as the bytes
    received pass it (chunked bodies), so at most the limit plus one chunk is ever held."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = settings.body_limit()
        detail = f"the request body is larger than {limit} bytes (PROMPTER_MAX_BODY_BYTES)"
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await send_refusal(send, 400, f"Content-Length {declared!r} is not a number")
                return
            if int(declared) > limit:
                await send_refusal(send, 413, detail)
                return

        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(detail)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # whatever the app makes of the interrupted body (a 400, a 500), the answer is the 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await send_refusal(send, 413, detail)
