"""Routes that render their errors in an adapter's own envelope instead of problem+json."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]
_HANDLERS_KEY = "starlette.exception_handlers"


def enveloped_route(handlers: dict[Any, Handler]) -> type[APIRoute]:
    """An APIRoute class whose exceptions go to `handlers` (by exception class).

    Starlette's request handler looks its exception handlers up in the scope. Swapping them
    there (rather than catching in the endpoint) keeps the order that matters: the exception
    first unwinds the dependencies, so the unit of work rolls back, and only then is rendered.
    """

    class EnvelopedRoute(APIRoute):
        async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
            previous = scope.get(_HANDLERS_KEY)
            scope[_HANDLERS_KEY] = (handlers, {})
            try:
                await super().handle(scope, receive, send)
            finally:
                if previous is None:
                    scope.pop(_HANDLERS_KEY, None)
                else:
                    scope[_HANDLERS_KEY] = previous

    return EnvelopedRoute
