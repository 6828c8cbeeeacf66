"""HTTP: the properties every answer must have, and the HTTP target."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import Scope

from jwtsess import (
    AccessClaims,
)

from .core import HTTP_CODE_STATUS, Chooser, PropertyFailure, _short, exception_summary, origin
from .http_app import HTTP_CONFIG, HttpEnv, HttpResult, call_asgi
from .http_requests import (
    ACCESS_SOURCES,
    FLOW_SOURCES,
    PROTECTED_PATHS,
    ExampleState,
    build_request,
    gen_login_request,
    gen_request,
    resolve_token,
)
from .mutations import MutationContext


def _describe(scope: Scope, body: bytes, result: HttpResult) -> str:
    return (
        f"request: {scope['type']} {scope.get('method', '')} {scope['path']!r} "
        f"headers={_short(scope['headers'], 1500)} body={_short(body, 400)}; "
        f"answer: status={result.status} headers={_short(result.headers, 600)} "
        f"body={_short(result.body, 400)} messages={_short(result.messages[:3], 300)}"
    )


def _set_cookies(result: HttpResult) -> list[tuple[str, str, bool]]:
    """(name, value, is_deletion) for every Set-Cookie, in order."""
    cookies = []
    for raw in result.header_list(b"set-cookie"):
        first, *attributes = raw.decode("latin-1").split(";")
        name, _, value = first.strip().partition("=")
        deletion = any(a.strip().lower() == "max-age=0" for a in attributes)
        cookies.append((name, value.strip('"'), deletion))
    return cookies


def check_http_answer(
    env: HttpEnv,
    scope: Scope,
    body: bytes,
    result: HttpResult,
    accepted: Sequence[AccessClaims],
    issued_before: int,
) -> str:
    """Every property of one HTTP or websocket answer; returns an outcome label."""
    where = _describe(scope, body, result)
    if result.error is not None:
        raise PropertyFailure(
            "the app raised",
            f"{exception_summary(result.error, 6)}; {where}",
            signature=f"the app raised {origin(result.error)}",
        ) from result.error
    for claims in accepted:
        genuine = env.issued.get(claims.jti)
        if genuine is None or genuine != claims:
            raise PropertyFailure(
                "the verifier accepted claims the issuer never signed", f"{claims!r}; {where}"
            )
    path = scope["path"]
    protected = path in PROTECTED_PATHS or path.startswith("/auth/sessions/")
    if scope["type"] == "websocket":
        return _check_websocket(result, accepted, protected, path, where)
    status = result.status
    if status is None:
        raise PropertyFailure("no HTTP answer", where)
    if status >= 500 and status != 503:
        raise PropertyFailure(f"HTTP {status}", where)
    if b"Traceback" in result.body or b'File "' in result.body:
        raise PropertyFailure("a traceback in the answer", where)
    code = ""
    content_type = result.header(b"content-type") or b""
    if status >= 400:
        if scope["method"] == "HEAD" and not result.body:
            code = "head"
        elif status in (404, 405) and content_type.startswith(b"text/plain"):
            code = "starlette"  # the router's own answer for no such route / method
        else:
            code = _check_error_body(result, status, where)
    elif 200 <= status < 300 and protected and not accepted:
        raise PropertyFailure("a protected route answered 2xx without a verified token", where)
    if status == 200 and path == "/auth/refresh":
        try:
            answer = json.loads(result.body)
        except ValueError:
            answer = None
        sid = answer.get("session_id") if isinstance(answer, dict) else None
        first_seen = env.sids.get(sid) if isinstance(sid, str) else None
        if first_seen is None or first_seen > issued_before:
            raise PropertyFailure("a refresh succeeded for a session nobody opened", where)
    last: dict[str, bool] = {}
    for name, _, deletion in _set_cookies(result):
        last[name] = deletion
    fresh = {name for name, value, deletion in _set_cookies(result) if value and not deletion}
    for name in fresh:
        if last.get(name):
            raise PropertyFailure("an answer sets a fresh cookie, then deletes it", where)
    return f"{status} {code}".strip()


def _check_error_body(result: HttpResult, status: int, where: str) -> str:
    try:
        answer = json.loads(result.body)
    except ValueError:
        raise PropertyFailure("an error answer is not JSON", where) from None
    if not isinstance(answer, dict) or set(answer) != {"error", "detail"}:
        raise PropertyFailure('an error answer is not {"error", "detail"}', where)
    code, detail = answer["error"], answer["detail"]
    if not isinstance(detail, str) or not detail:
        raise PropertyFailure("an error detail is not a string", where)
    if code not in HTTP_CODE_STATUS or status not in HTTP_CODE_STATUS[code]:
        raise PropertyFailure("an undocumented error code or status", where)
    if "no-store" not in (result.header(b"cache-control") or b"").decode("latin-1"):
        raise PropertyFailure("an error answer without Cache-Control: no-store", where)
    if status == 401:
        challenge = result.header(b"www-authenticate") or b""
        # RFC 6750 section 3, or RFC 9449 section 7.1 when the request used the DPoP scheme.
        if not challenge.startswith(
            (
                f'Bearer realm="{HTTP_CONFIG.realm}"'.encode(),
                f'DPoP realm="{HTTP_CONFIG.realm}"'.encode(),
            )
        ):
            raise PropertyFailure("a 401 without a Bearer or DPoP challenge", where)
    return str(code)


def _check_websocket(
    result: HttpResult, accepted: Sequence[AccessClaims], protected: bool, path: str, where: str
) -> str:
    if not result.messages:
        raise PropertyFailure("the websocket got no answer", where)
    first = result.messages[0]
    if first["type"] == "websocket.accept":
        if protected and not accepted:
            raise PropertyFailure("a guarded websocket accepted without a verified token", where)
        if path == "/ws/admin" and not any(c.role == "admin" for c in accepted):
            raise PropertyFailure("the admin websocket accepted a non-admin", where)
        return "ws accept"
    if first["type"] != "websocket.close":
        raise PropertyFailure("the websocket's first message is neither accept nor close", where)
    code, reason = first.get("code", 1000), first.get("reason") or ""
    if code not in (1008, 1013) or reason not in HTTP_CODE_STATUS:
        raise PropertyFailure("an undocumented websocket close", where)
    return f"ws {code} {reason}"


def _learn(state: ExampleState, result: HttpResult, presented_refresh: str | None) -> None:
    """Remember the tokens and CSRF value an answer handed out, as a client would."""
    try:
        answer = json.loads(result.body) if result.body else None
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        if isinstance(answer.get("access_token"), str):
            state.last_access = answer["access_token"]
        if isinstance(answer.get("refresh_token"), str):
            state.old_refresh = presented_refresh or state.refresh
            state.last_refresh = answer["refresh_token"]
    for name, value, deletion in _set_cookies(result):
        if deletion or not value:
            continue
        if name == HTTP_CONFIG.access_cookie_name:
            state.last_access = value
        elif name == HTTP_CONFIG.refresh_cookie_name:
            state.old_refresh = presented_refresh or state.refresh
            state.last_refresh = value
        elif name == HTTP_CONFIG.csrf_cookie_name:
            state.last_csrf = value


async def http_example(env: HttpEnv, ch: Chooser, outcomes: list[str] | None = None) -> list[str]:
    """Two direct logins, then 1-3 fuzzed requests (each may use what the last returned).

    Returns one outcome per request, also appended to ``outcomes`` as they come.
    """
    web = env.web
    role = ch.pick(("user", "admin", "auditor"))
    main = await web.login(ch.pick(("alice", "bob")), role)
    other = await web.login(ch.pick(("bob", "carol")), ch.pick(("user", "admin")))
    state = ExampleState(
        access=main.access_token,
        refresh=main.refresh_token,
        sid=main.session_id,
        other_access=other.access_token,
        other_sid=other.session_id,
        csrf=ch.pick(("csrf-value-123", "", "\u00e9t\u00e9")),
        context=MutationContext(corpus=(main.access_token, other.access_token, main.refresh_token)),
    )
    if outcomes is None:
        outcomes = []
    # A quarter of the examples are flows: log in over HTTP, then use what came back.
    flow = ch.chance(25)
    for i in range(ch.integer(2, 3) if flow else ch.integer(1, 3)):
        if flow and i == 0:
            spec = gen_login_request(ch)
        else:
            spec = gen_request(ch, FLOW_SOURCES if flow else ACCESS_SOURCES)
        web.clock.advance(spec.advance)
        scope, messages, _, body = build_request(spec, state, env.foreign)
        env.recorder.accepted.clear()
        issued_before = len(env.issued)
        result = await call_asgi(web.app, scope, messages)
        accepted = list(env.recorder.accepted)
        outcomes.append(check_http_answer(env, scope, body, result, accepted, issued_before))
        presented = None
        if spec.body.token is not None:
            presented = resolve_token(spec.body.token, state, env.foreign)
        _learn(state, result, presented)
    env.examples += 1
    return outcomes
