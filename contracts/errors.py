"""Why a message could not be turned into a typed model.

Every error names its *reason*, a short stable word that travels in the
dead-letter headers and that `rally dlq` groups by.
"""

from __future__ import annotations


class ContractError(Exception):
    """Root of everything contracts/ raises."""

    reason: str = "invalid"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MalformedMessage(ContractError):
    """The bytes are not a JSON object."""

    reason = "malformed"


class InvalidMessage(ContractError):
    """JSON, but it does not match the contract; `errors` says which field and why."""

    reason = "invalid"

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class UnknownMessageType(ContractError):
    """No contract has this type name."""

    reason = "unknown_type"


class UnsupportedVersion(ContractError):
    """A known type in a version this code cannot read (newer than it knows)."""

    reason = "unknown_version"


class MessageTooLarge(ContractError):
    """Over the size limit, refused before publish and on receipt."""

    reason = "too_large"
