"""HTTP: random requests (paths, methods, headers, bodies, tokens) and their ASGI form."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.types import Message, Scope

from .core import B64_ALPHABET, Chooser, pick_or
from .http_app import HTTP_CONFIG
from .mutations import Mutation, MutationContext, gen_mutations, mutate
from .values import CLAIM_KEYS, gen_json, json_bytes

ACCESS_SOURCES: Final = (
    "access",
    "access",
    "last_access",
    "last_access",
    "other_access",
    "mutated_access",
    "mutated_access",
    "refresh",
    "foreign",
    "random",
    "empty",
)
FLOW_SOURCES: Final = ("last_access",) * 6 + ACCESS_SOURCES  # after an HTTP login
REFRESH_SOURCES: Final = (
    "refresh",
    "refresh",
    "last_refresh",
    "old_refresh",
    "mutated_refresh",
    "mutated_refresh",
    "access",
    "random",
    "empty",
)


@dataclass(frozen=True, slots=True)
class TokenRef:
    source: str
    mutations: tuple[Mutation, ...] = ()
    text: str = ""


@dataclass
class ExampleState:
    """The genuine credentials one HTTP example holds, and what responses gave it."""

    access: str
    refresh: str
    sid: str
    other_access: str
    other_sid: str
    csrf: str
    last_access: str | None = None
    last_refresh: str | None = None
    old_refresh: str | None = None
    last_csrf: str | None = None
    context: MutationContext = field(default_factory=lambda: MutationContext(corpus=("a.b.c",)))


def gen_token_ref(ch: Chooser, sources: Sequence[str]) -> TokenRef:
    source = ch.pick(sources)
    if source.startswith("mutated"):
        return TokenRef(source, gen_mutations(ch, 3))
    if source == "random":
        text = pick_or(ch, (), lambda: ch.text(None, 40), lambda: ch.text(B64_ALPHABET + ".", 200))
        return TokenRef(source, text=text)
    return TokenRef(source)


def resolve_token(ref: TokenRef, state: ExampleState, foreign: Sequence[str]) -> str:
    source = ref.source
    if source == "access":
        return state.access
    if source == "last_access":
        return state.last_access or state.access
    if source == "other_access":
        return state.other_access
    if source == "mutated_access":
        return mutate(state.access, ref.mutations, state.context)
    if source == "refresh":
        return state.refresh
    if source == "last_refresh":
        return state.last_refresh or state.refresh
    if source == "old_refresh":
        return state.old_refresh or state.refresh
    if source == "mutated_refresh":
        return mutate(state.refresh, ref.mutations, state.context)
    if source == "foreign":
        return foreign[len(ref.text) % len(foreign)] if foreign else "a.b.c"
    if source == "random":
        return ref.text
    return ""


# (path, its natural methods); a request mostly uses one of those, else any method.
HTTP_ROUTES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("/auth/refresh", ("POST",)),
    ("/auth/refresh", ("POST",)),
    ("/auth/refresh", ("POST",)),
    ("/auth/refresh", ("POST",)),
    ("/auth/login", ("POST",)),
    ("/auth/login", ("POST",)),
    ("/auth/login", ("POST",)),
    ("/auth/logout", ("POST",)),
    ("/auth/logout-others", ("POST",)),
    ("/auth/logout-all", ("POST",)),
    ("/auth/sessions", ("GET", "HEAD")),
    ("/auth/sessions/{sid}", ("DELETE",)),
    ("/auth/sessions/{other_sid}", ("DELETE",)),
    ("/auth/sessions/{random}", ("DELETE",)),
    ("/auth/session", ("GET",)),
    ("/auth/session", ("GET",)),
    ("/me", ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")),
    ("/me", ("POST", "PUT", "PATCH", "DELETE")),
    ("/admin", ("GET",)),
    ("/public", ("GET", "POST", "DELETE")),
    ("/.well-known/jwks.json", ("GET",)),
    ("/auth", ("POST", "GET")),  # Starlette's slash redirect
    ("/auth/{random}", ("POST", "GET")),
)
HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "post", "TRACE")
WS_PATHS: Final = ("/ws", "/ws/admin", "/ws/public")
# A protected route answers 2xx only after the verifier accepted a token.
PROTECTED_PATHS: Final = frozenset(
    {
        "/me",
        "/admin",
        "/auth/logout",
        "/auth/logout-others",
        "/auth/logout-all",
        "/auth/sessions",
        "/auth/session",
        "/ws",
        "/ws/admin",
    }
)
CONTENT_TYPES: Final = (
    b"application/json",
    b"application/json",
    b"application/json; charset=utf-8",
    b"APPLICATION/JSON ;charset=latin-1",
    b"text/plain",
    b"application/json, text/plain",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=x",
    b"",
)
CONTENT_LENGTHS: Final = (
    "0",
    "-1",
    "+5",
    " 5",
    "5 ",
    "00",
    "0x10",
    "1e3",
    "\u00b2",
    "1\u00b3",
    "\u00b9" * 3,
    "9" * 20,
    "1" * 5000,
    "8193",
    "",
    "5, 5",
)
ASCII_QUERY: Final = string.ascii_letters + string.digits + "%&=+-_.~"
COOKIE_SEPARATORS: Final = ("; ", ";", ", ", " ;", ";;", "\t")
SHAPES: Final = ("token", "string", "json", "none")


@dataclass(frozen=True, slots=True)
class BodySpec:
    kind: str  # empty, refresh, login, json, text, bytes, deep, big, duplicate
    token: TokenRef | None = None
    shape: str = "token"
    value: Any = None
    extra: Any = None
    raw: bytes = b""
    variant: int = 0


@dataclass(frozen=True, slots=True)
class RequestSpec:
    websocket: bool
    method: str
    path: str
    path_text: str
    authorization: tuple[tuple[str, TokenRef | None, bytes], ...]
    cookies: tuple[tuple[str, TokenRef | None, str], ...]
    raw_cookie: bytes | None
    cookie_separator: str
    csrf: str | None  # None, "state", "last", or a literal value
    content_type: bytes | None
    content_length: str | None  # None: absent; "auto": exact
    chunked: bool
    body: BodySpec
    chunks: int
    user_agent: bytes | None
    client: tuple[str, int] | None
    origin: bytes | None
    query: bytes
    advance: int


def _latin1(ch: Chooser, max_size: int) -> str:
    return ch.binary(max_size).decode("latin-1") if ch.chance(30) else ch.text(None, max_size)


def gen_login_body(ch: Chooser, variant: int) -> BodySpec:
    """The test app's login: the body names the user and role (no password)."""
    user = pick_or(
        ch,
        ("alice", "bob", "mallory", "", "a" * 300),
        lambda: gen_json(ch),
        lambda: ch.text(None, 10),
    )
    role = pick_or(
        ch,
        ("user", "admin", "auditor", "", "\ud800", "\u2603"),
        lambda: gen_json(ch),
        lambda: ch.text(None, 10),
    )
    cookie = pick_or(ch, (True, False, None), lambda: gen_json(ch))
    value = {"user_id": user, "role": role, "cookie": cookie}
    if ch.chance(15):
        value.pop(ch.pick(tuple(value)))
    return BodySpec("login", value=value, variant=variant)


def gen_login_request(ch: Chooser) -> RequestSpec:
    """A well-formed HTTP login (random user, role and mode): the start of a flow."""
    return RequestSpec(
        websocket=False,
        method="POST",
        path="/auth/login",
        path_text="",
        authorization=(),
        cookies=(),
        raw_cookie=None,
        cookie_separator="; ",
        csrf=None,
        content_type=b"application/json",
        content_length="auto",
        chunked=False,
        body=gen_login_body(ch, ch.pick((0, 1, 2, 4, 5))),  # spellings json.loads reads
        chunks=1,
        user_agent=b"fuzz/1.0",
        client=("127.0.0.1", 5000),
        origin=None,
        query=b"",
        advance=0,
    )


def gen_body(ch: Chooser) -> BodySpec:
    kind = ch.pick(
        (
            *("empty", "refresh", "refresh", "refresh", "login", "login"),
            *("json", "text", "bytes", "deep", "big", "duplicate"),
        )
    )
    variant = ch.integer(0, 9)
    if kind in ("refresh", "duplicate"):
        shape = ch.pick(SHAPES)
        extra = {ch.pick(CLAIM_KEYS): gen_json(ch)} if ch.chance(20) else None
        return BodySpec(
            kind, gen_token_ref(ch, REFRESH_SOURCES), shape, gen_json(ch), extra, variant=variant
        )
    if kind == "login":
        return gen_login_body(ch, variant)
    if kind == "json":
        return BodySpec(kind, value=gen_json(ch), variant=variant)
    if kind == "text":
        return BodySpec(kind, raw=ch.text(None, 100).encode("utf-8", "surrogatepass"))
    if kind == "bytes":
        return BodySpec(kind, raw=ch.binary(100))
    if kind == "deep":
        depth = ch.pick((10, 1000, 4000, 100_000))
        return BodySpec(kind, raw=b"[" * depth if ch.chance(50) else b'{"a":' * depth)
    if kind == "big":
        return BodySpec(kind, value={"refresh_token": "x" * ch.pick((8100, 8200, 20000))})
    return BodySpec("empty")


def _gen_cookies(
    ch: Chooser, access_sources: Sequence[str]
) -> tuple[list[tuple[str, TokenRef | None, str]], bytes | None]:
    """A browser's session cookies (mostly), or random ones, or raw bytes."""
    cookies: list[tuple[str, TokenRef | None, str]] = []
    mode = ch.integer(0, 3)
    if mode == 0:
        return cookies, None
    if mode == 1:  # what a logged-in browser sends, give or take
        if ch.chance(85):
            cookies.append((HTTP_CONFIG.access_cookie_name, gen_token_ref(ch, access_sources), ""))
        if ch.chance(80):
            literal = pick_or(ch, ("{csrf}", "{csrf}", "{csrf}", ""), lambda: _latin1(ch, 12))
            cookies.append((HTTP_CONFIG.csrf_cookie_name, None, literal))
        if ch.chance(50):
            cookies.append(
                (HTTP_CONFIG.refresh_cookie_name, gen_token_ref(ch, REFRESH_SOURCES), "")
            )
        return cookies, None
    for _ in range(ch.integer(1, 4)):
        name = pick_or(
            ch,
            (
                HTTP_CONFIG.access_cookie_name,
                HTTP_CONFIG.csrf_cookie_name,
                HTTP_CONFIG.refresh_cookie_name,
                "jwtsess-access",
            ),
            lambda: ch.text(None, 8),
        )
        if ch.chance(40):
            cookies.append((name, None, _latin1(ch, 20)))
        else:
            sources = REFRESH_SOURCES if "refresh" in name else ACCESS_SOURCES
            cookies.append((name, gen_token_ref(ch, sources), ""))
    return cookies, ch.binary(80) if mode == 3 else None


def gen_request(ch: Chooser, access_sources: Sequence[str] = ACCESS_SOURCES) -> RequestSpec:
    websocket = ch.chance(8)
    natural: tuple[str, ...]
    if websocket:
        path, natural = ch.pick(WS_PATHS), ("GET",)
    else:
        path, natural = ch.pick(HTTP_ROUTES)
    method = ch.pick(natural) if ch.chance(80) else ch.pick(HTTP_METHODS)
    if ch.chance(2):
        method = ch.text(string.ascii_letters + "-_ ", 8) or "X"
    authorization: list[tuple[str, TokenRef | None, bytes]] = []
    for _ in range(ch.pick((1, 1, 1, 1, 2)) if ch.chance(50) else 0):
        scheme = ch.pick(("Bearer ", "Bearer ", "bearer ", "BEARER  ", "Bearer", "Basic ", "raw"))
        if scheme == "raw":
            authorization.append((scheme, None, ch.binary(60)))
        else:
            authorization.append((scheme, gen_token_ref(ch, access_sources), b""))
    cookies, raw_cookie = _gen_cookies(ch, access_sources)
    csrf: str | None = None
    if ch.chance(50):
        csrf = pick_or(ch, ("state", "state", "last", ""), lambda: _latin1(ch, 12))
    content_type: bytes | None = None
    if ch.chance(75):
        content_type = pick_or(ch, CONTENT_TYPES, lambda: ch.binary(30))
    content_length: str | None = "auto"
    if ch.chance(20):
        content_length = pick_or(ch, (None, None, *CONTENT_LENGTHS), lambda: _latin1(ch, 4))
    user_agent = pick_or(ch, (None, b"fuzz/1.0", b"u" * 400), lambda: ch.binary(40))
    client = None if ch.chance(5) else (ch.pick(("127.0.0.1", "::1", "10.0.0.7", "x" * 80)), 5000)
    origin = None
    if websocket and ch.chance(70):
        origin = ch.pick((b"https://testserver", b"http://testserver", b"https://evil", b""))
    return RequestSpec(
        websocket=websocket,
        method=method,
        path=path,
        path_text=ch.text(None, 12) if "{random}" in path else "",
        authorization=tuple(authorization),
        cookies=tuple(cookies),
        raw_cookie=raw_cookie,
        cookie_separator=ch.pick(COOKIE_SEPARATORS),
        csrf=csrf,
        content_type=content_type,
        content_length=content_length,
        chunked=ch.chance(10),
        body=gen_body(ch),
        chunks=ch.integer(1, 4),
        user_agent=user_agent,
        client=client,
        origin=origin,
        # ASCII only: servers hand over the raw query, and Starlette's own URL (its
        # slash redirect) fails on non-UTF-8 queries, which is not jwtsess's to fix.
        query=pick_or(ch, (b"", b"", b"access_token=x"), lambda: ch.text(ASCII_QUERY, 20).encode()),
        advance=ch.pick((0,) * 12 + (11, 600, 901, 8 * 24 * 3600)),
    )


def _header_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _body_bytes(body: BodySpec, state: ExampleState, foreign: Sequence[str]) -> bytes:
    if body.kind in ("refresh", "duplicate"):
        token: Any
        if body.shape == "token" and body.token is not None:
            token = resolve_token(body.token, state, foreign)
        elif body.shape == "string":
            token = resolve_token(body.token, state, foreign) + " " if body.token else ""
        elif body.shape == "json":
            token = body.value
        else:
            token = None
        value: dict[str, Any] = {"refresh_token": token}
        if body.extra is not None:
            value.update(body.extra)
        encoded = json_bytes(value, body.variant)
        if body.kind == "duplicate":  # the first spelling is garbage, the last wins in json
            encoded = b'{"refresh_token":"garbage",' + encoded.lstrip()[1:]
        if body.variant == 9:
            encoded = encoded.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
        return encoded
    if body.kind in ("login", "json", "big"):
        return json_bytes(body.value, body.variant)
    return body.raw


def build_request(
    spec: RequestSpec, state: ExampleState, foreign: Sequence[str]
) -> tuple[Scope, list[Message], str, bytes]:
    """The ASGI scope and messages for ``spec``; also the path and the body, for reports."""
    path = spec.path.replace("{sid}", state.sid).replace("{other_sid}", state.other_sid)
    path = path.replace("{random}", spec.path_text)
    headers: list[tuple[bytes, bytes]] = [(b"host", b"testserver")]
    for scheme, ref, raw in spec.authorization:
        header = raw if ref is None else _header_bytes(scheme + resolve_token(ref, state, foreign))
        headers.append((b"authorization", header))
    if spec.cookies or spec.raw_cookie is not None:
        pairs = []
        for name, ref, literal in spec.cookies:
            if ref is not None:
                value = resolve_token(ref, state, foreign)
            elif literal == "{csrf}":
                value = state.last_csrf or state.csrf
            else:
                value = literal
            pairs.append(f"{name}={value}")
        cookie = _header_bytes(spec.cookie_separator.join(pairs))
        if spec.raw_cookie is not None:
            cookie = spec.raw_cookie + b"; " + cookie
        headers.append((b"cookie", cookie))
    if spec.csrf is not None:
        csrf = {"state": state.csrf, "last": state.last_csrf or state.csrf}.get(
            spec.csrf, spec.csrf
        )
        headers.append((HTTP_CONFIG.csrf_header.encode("latin-1"), _header_bytes(csrf)))
    if spec.user_agent is not None:
        headers.append((b"user-agent", spec.user_agent))
    if spec.websocket:
        headers += [(b"connection", b"upgrade"), (b"sec-websocket-version", b"13")]
        if spec.origin is not None:
            headers.append((b"origin", spec.origin))
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "wss",
            "server": ("testserver", 443),
            "client": spec.client,
            "root_path": "",
            "path": path,
            "raw_path": path.encode("utf-8", "surrogatepass"),
            "query_string": spec.query,
            "headers": headers,
            "subprotocols": [],
            "state": {},
        }
        return scope, [{"type": "websocket.connect"}], path, b""
    body = _body_bytes(spec.body, state, foreign)
    if spec.content_type is not None:
        headers.append((b"content-type", spec.content_type))
    if spec.content_length == "auto":
        if body or spec.method in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", str(len(body)).encode()))
    elif spec.content_length is not None:
        headers.append((b"content-length", _header_bytes(spec.content_length)))
    if spec.chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    size = max(1, -(-len(body) // spec.chunks))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": spec.method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "root_path": "",
        "query_string": spec.query,
        "headers": headers,
        "client": spec.client,
        "server": ("testserver", 443),
        "state": {},
    }
    return scope, messages, path, body
