"""Which handler takes which message type, and what a handler receives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from contracts import Envelope, Message

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class Incoming(Generic[M]):
    """A validated message as a handler sees it. The delivery itself stays in the runtime."""

    envelope: Envelope[M]
    attempt: int = 1
    user_id: str | None = None  # broker-validated publisher user
    queue: str = ""
    redelivered: bool = False
    headers: Mapping[str, Any] = field(default_factory=dict)
    # who the message acts for, as the broker vouched for it (the runtime's identity check
    # fills these; never an envelope field or a header a sender could write): the broker user,
    # or the first sender of a copy a service user re-published. None: anonymous.
    principal: str | None = None
    service: bool = False  # the principal is a service user: it may act for anyone

    @property
    def payload(self) -> M:
        return self.envelope.payload

    @property
    def message_id(self) -> str:
        return str(self.envelope.id)


Handler = Callable[[Incoming[Any]], Awaitable[None]]
# a batch handler answers, per failed item, the exception it failed with; the rest are acked
BatchHandler = Callable[[Sequence[Incoming[Any]]], Awaitable[Mapping[int, BaseException] | None]]
H = TypeVar("H", bound=Handler)


class Router:
    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}

    def on(self, *types: type[Message]) -> Callable[[H], H]:
        def decorate(handler: H) -> H:
            for message_type in types:
                self.add(message_type, handler)
            return handler

        return decorate

    def add(self, message_type: type[Message], handler: Handler) -> None:
        name = message_type.type_name()
        if name in self._routes:
            raise ValueError(f"{name} already has a handler")
        self._routes[name] = handler

    def get(self, type_name: str) -> Handler | None:
        return self._routes.get(type_name)

    @property
    def types(self) -> Sequence[str]:
        return tuple(self._routes)
