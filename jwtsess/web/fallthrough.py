"""The route-order trap, removed: a path under the auth ``Mount`` that is not ours falls through.

``Mount("/auth", auth_routes(...))`` (or ``app.mount("/auth", ...)``) claims every
path under ``/auth``; an app's own ``/auth/login`` declared *after* the mount
would never be reached and answer 404. The auth router's not-found handler
therefore looks for another route of the app that matches the full path and
hands the request to it; only when there is none is the answer a 404.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketClose


async def fall_through(scope: Scope, receive: Receive, send: Send) -> None:
    """The auth router's ``default``: the app's later routes, else 404 (405 for a wrong method)."""
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", ())
    outer = {**scope, "root_path": scope.get("app_root_path", "")}
    partial = None
    for route in routes:
        if isinstance(route, Mount) and getattr(route.app, "default", None) is fall_through:
            continue  # the auth mount itself
        match, child = route.matches(outer)
        if match == Match.FULL:
            await route.handle({**outer, **child}, receive, send)
            return
        if match == Match.PARTIAL and partial is None:
            partial = (route, child)
    if partial is not None:
        route, child = partial
        await route.handle({**outer, **child}, receive, send)
        return
    if scope["type"] == "websocket":
        await WebSocketClose()(scope, receive, send)
        return
    raise HTTPException(status_code=404)
