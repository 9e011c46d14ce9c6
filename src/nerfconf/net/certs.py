"""The host's TLS identity: a self-signed ECDSA certificate, made on first use and cached.

Peers do not use a CA: the client pins the certificate by its SHA-256
fingerprint, which travels in the join string. The certificate names one
fixed host, :data:`PEER_NAME`, that the client checks with ordinary host-name
verification, so the pin works whatever address the server is reached at.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nerfconf.net.errors import TransportError

#: the name every nerfconf certificate is issued to (and the client's SNI)
PEER_NAME = "nerfconf.peer"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALIDITY_DAYS = 3650


def config_dir() -> Path:
    """``$NERFCONF_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/nerfconf``, else ``~/.config/nerfconf``."""
    if os.environ.get("NERFCONF_CONFIG_DIR"):
        return Path(os.environ["NERFCONF_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nerfconf"


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class Identity:
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)


def generate_identity() -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PEER_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # back-dated a day so a peer whose clock is a little behind still accepts it
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(PEER_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Identity(cert, key)


def load_or_create_identity(directory: Path | None = None) -> Identity:
    """The cached identity in ``directory`` (default :func:`config_dir`), created if absent."""
    directory = Path(directory) if directory is not None else config_dir()
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise TransportError(
                f"the cached TLS identity in {directory} is unreadable ({exc}); delete "
                f"{cert_path} and {key_path} to make a new one (peers then need a new join string)"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TransportError(f"{key_path} does not hold an ECDSA key; delete it to make a new identity")
        expires = cert.not_valid_after_utc
        if expires > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1):
            return Identity(cert, key)
    identity = generate_identity()
    directory.mkdir(parents=True, exist_ok=True)
    key_bytes = identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The key is written owner-only from the start, never world-readable for a moment.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(identity.certificate.public_bytes(serialization.Encoding.PEM))
    return identity
