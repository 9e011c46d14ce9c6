"""Certificate pinning on top of aioquic's ordinary verification.

aioquic (pinned at 1.7.2) has no hook for custom certificate checks. The
client's TLS context is switched to :class:`PinnedContext` right after the
connection starts, before the server's certificate can arrive, and so is every
context the connection makes afterwards (a Retry or a version negotiation makes
aioquic start over with a fresh one). It checks the
certificate's SHA-256 against the pin the moment the certificate is read,
then makes that certificate the only trust anchor, so aioquic's normal
``CERT_REQUIRED`` checks (validity dates, host name, signature chain) still
run on it. Verification is never switched off.
"""

from __future__ import annotations

from collections.abc import Callable

from aioquic import tls
from aioquic.quic.connection import QuicConnection
from cryptography.hazmat.primitives import serialization

from nerfconf.net.certs import fingerprint

# The private names this relies on; an aioquic upgrade that drops them fails here, loudly.
if (not hasattr(tls.Context, "_set_peer_certificate") or "_cadata" not in tls.Context.__init__.__code__.co_names
        or "tls" not in QuicConnection._initialize.__code__.co_names):
    raise ImportError("this aioquic version lacks the TLS internals nerfconf.net.tls_pin relies on")


class PinnedContext(tls.Context):
    pin: str = ""
    on_mismatch: Callable[[str], None] | None = None

    def _set_peer_certificate(self, certificate: tls.Certificate) -> None:
        super()._set_peer_certificate(certificate)
        assert self._peer_certificate is not None
        seen = fingerprint(self._peer_certificate)
        if seen != self.pin:
            message = (
                f"the server's certificate has sha256 {seen}, but the join string pins {self.pin}: "
                "wrong or outdated join string, or someone is intercepting the connection"
            )
            if self.on_mismatch is not None:
                self.on_mismatch(message)
            raise tls.AlertBadCertificate(message)
        self._cadata = self._peer_certificate.public_bytes(serialization.Encoding.PEM)


def pin_connection(quic: QuicConnection, pin: str, on_mismatch: Callable[[str], None]) -> None:
    """Pins a connecting client's TLS context now, and every one it makes later (after a Retry)."""
    initialize = quic._initialize

    def initialize_pinned(peer_cid: bytes) -> None:
        initialize(peer_cid)
        pin_context(quic.tls, pin, on_mismatch)

    quic._initialize = initialize_pinned  # type: ignore[method-assign]
    pin_context(quic.tls, pin, on_mismatch)


def pin_context(context: tls.Context, pin: str, on_mismatch: Callable[[str], None]) -> None:
    """Turns a client's fresh aioquic TLS context into a :class:`PinnedContext`."""
    if context.__class__ is not tls.Context:
        raise TypeError(f"expected a plain aioquic TLS context, got {type(context).__name__}")
    context.__class__ = PinnedContext
    assert isinstance(context, PinnedContext)
    context.pin = pin
    context.on_mismatch = on_mismatch
