"""The join string a host hands to a peer: where to connect, whom to trust, how to prove membership.

Format (one line, safe to paste into a chat)::

    nerfconf://HOST:PORT#sha256=HEX64&token=TOKEN

* ``HOST`` is an IPv4 address, a host name, or an IPv6 address in brackets;
* ``HEX64`` is the SHA-256 of the server certificate's DER encoding, 64 hex digits
  (colons allowed, case ignored): the client trusts exactly that certificate;
* ``TOKEN`` is the room token, 8..128 characters of ``[A-Za-z0-9_-]``.

The pin and token sit in the URL fragment so that nothing that logs URLs by
their path (proxies, shells' history of ``host:port``) is more likely to keep them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from nerfconf.net.errors import JoinStringError

SCHEME = "nerfconf"
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{8,128}")
_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+")
_JOIN_RE = re.compile(rf"{SCHEME}://(?P<host>[^#/]*?):(?P<port>\d{{1,5}})/?#(?P<fragment>.*)")


def join_host(host: str) -> str:
    """``host`` as a join string names it (an IPv6 address in brackets), or JoinStringError if it
    is neither a host name nor an address."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if not _HOST_RE.fullmatch(host):
        raise JoinStringError(f"not a host name or address: {host!r}")
    return host


def new_token() -> str:
    """A fresh room token: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def normalize_fingerprint(text: str) -> str:
    hex_digits = text.replace(":", "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", hex_digits):
        raise JoinStringError(f"a sha256 fingerprint is 64 hex digits, got {text!r}")
    return hex_digits


def check_token(token: str) -> str:
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        raise JoinStringError("a room token is 8..128 characters of letters, digits, '_' and '-'")
    return token


@dataclass(frozen=True)
class JoinInfo:
    host: str
    port: int
    #: SHA-256 of the server certificate (DER), 64 lowercase hex digits
    fingerprint: str
    token: str

    def __post_init__(self) -> None:
        if not _HOST_RE.fullmatch(self.host):
            raise JoinStringError(f"not a host name or address: {self.host!r}")
        if not 1 <= self.port <= 65535:
            raise JoinStringError(f"port must be 1..65535, got {self.port}")
        object.__setattr__(self, "fingerprint", normalize_fingerprint(self.fingerprint))
        check_token(self.token)

    @property
    def connect_host(self) -> str:
        """The host as a socket wants it (IPv6 without brackets)."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def __str__(self) -> str:
        return f"{SCHEME}://{self.host}:{self.port}#sha256={self.fingerprint}&token={self.token}"

    @classmethod
    def parse(cls, text: str) -> JoinInfo:
        if not isinstance(text, str):
            raise JoinStringError(f"a join string is text, not {type(text).__name__}")
        m = _JOIN_RE.fullmatch(text.strip())
        if m is None:
            raise JoinStringError(
                f"not a join string: {text!r}; expected {SCHEME}://HOST:PORT#sha256=HEX&token=TOKEN"
            )
        fields: dict[str, str] = {}
        for part in m["fragment"].split("&"):
            key, sep, value = part.partition("=")
            if not sep or key not in ("sha256", "token") or key in fields:
                raise JoinStringError(f"unexpected or repeated join-string field {part!r}")
            fields[key] = value
        missing = {"sha256", "token"} - fields.keys()
        if missing:
            raise JoinStringError(f"join string lacks {', '.join(sorted(missing))}")
        return cls(m["host"], int(m["port"]), fields["sha256"], fields["token"])
