"""Errors the transport raises; each names what went wrong and what to do about it."""

from __future__ import annotations


class TransportError(Exception):
    """Base class of every error ``nerfconf.net`` raises on purpose."""


class JoinStringError(TransportError, ValueError):
    """A join string is not of the form ``nerfconf://host:port#sha256=HEX&token=TOKEN``."""


class FingerprintMismatchError(TransportError):
    """The server's certificate is not the one the join string pins."""


class AuthenticationError(TransportError):
    """The peer refused us (wrong room token), or we refused the peer."""


class ServerBusyError(TransportError):
    """The server cannot take this peer now (already in a call, or too many connections); try again later."""


class ProtocolError(TransportError):
    """The peer sent something this protocol does not allow; the connection is closed."""


class ConnectionClosedError(TransportError):
    """The connection is closed; ``reason`` says who closed it and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NetemError(ValueError):
    """A network-emulator setting or trace is invalid (or asks for a non-loopback address)."""
