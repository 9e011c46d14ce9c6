"""Opening calls: ``listen`` on the hosting side, ``connect`` with a join string on the other."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from aioquic.asyncio import connect as quic_connect
from aioquic.quic.configuration import QuicConfiguration

from nerfconf.net.admission import AdmissionLimits, AdmissionPolicy
from nerfconf.net.certs import PEER_NAME, load_or_create_identity
from nerfconf.net.config import TransportConfig
from nerfconf.net.connection import ALPN, Connection, NerfProtocol
from nerfconf.net.errors import ConnectionClosedError, TransportError
from nerfconf.net.guarded_server import GuardedQuicServer, serve_guarded
from nerfconf.net.join import JoinInfo, check_token, new_token

log = logging.getLogger(__name__)

#: DATAGRAM frames we accept (type + length + payload); ours are at most ~1155 B
MAX_DATAGRAM_FRAME = 1300
#: per-stream and per-connection flow-control windows: a hostile peer can make us buffer no more
MAX_STREAM_DATA = 64 * 1024
MAX_DATA = 256 * 1024
#: seconds a closing client waits for the peer to confirm
CLOSE_TIMEOUT = 1.0


def _quic_configuration(config: TransportConfig, *, is_client: bool) -> QuicConfiguration:
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        idle_timeout=config.idle_timeout,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME,
        max_stream_data=MAX_STREAM_DATA,
        max_data=MAX_DATA,
        congestion_control_algorithm=config.congestion_control,
    )


class Server:
    """A listening endpoint; peers that showed the room token come out of :meth:`accept`.

    At most ``AdmissionLimits.max_peers`` of them at a time (see :mod:`nerfconf.net.admission`):
    more are refused as busy, so none waits in a queue the application does not read.
    """

    def __init__(self, join_info: JoinInfo, quic_server: GuardedQuicServer) -> None:
        self.join_info = join_info
        self._quic_server = quic_server
        self._accepted: asyncio.Queue[Connection] = asyncio.Queue()
        #: the last refusals, newest last (wrong token, wrong fingerprint, timeouts, busy)
        self.refusals: deque[str] = deque(maxlen=32)

    def _on_open(self, protocol: NerfProtocol) -> None:
        self._accepted.put_nowait(Connection(protocol))

    def _on_refused(self, reason: str) -> None:
        self.refusals.append(reason)

    async def accept(self) -> Connection:
        return await self._accepted.get()

    @property
    def connections(self) -> int:
        """Connection objects the endpoint holds now: in the handshake, open, or closing."""
        return len(set(self._quic_server._protocols.values()))

    @property
    def admission(self) -> AdmissionPolicy:
        """The admission policy's counts (half-open, peers, per source) and limits."""
        return self._quic_server.policy

    @property
    def refused_connections(self) -> int:
        """Validated Initials turned away before a connection was made (half-open or per-source caps)."""
        return self._quic_server.refused_connections


@asynccontextmanager
async def listen(
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    config: TransportConfig | None = None,
    *,
    advertise_host: str | None = None,
    limits: AdmissionLimits | None = None,
) -> AsyncIterator[Server]:
    """Listens for peers on UDP ``host:port`` (0: any free port); ``server.join_info`` is what they need.

    ``token`` is the room token (a fresh random one when None). The join
    string names ``advertise_host`` (default: ``host``), the address peers reach.
    ``limits`` bound what strangers can make the server hold (default ``AdmissionLimits()``:
    one peer at a time).
    """
    config = config or TransportConfig()
    token = check_token(token) if token is not None else new_token()
    if advertise_host is None and host in ("0.0.0.0", "::", ""):
        raise TransportError("listening on every address: pass advertise_host, the address peers should dial")
    identity = load_or_create_identity(config.identity_dir)
    qc = _quic_configuration(config, is_client=False)
    qc.certificate = identity.certificate
    qc.private_key = identity.private_key
    holder: list[Server] = []
    factory = partial(
        NerfProtocol,
        config=config,
        token=token,
        on_open=lambda p: holder[0]._on_open(p),
        on_refused=lambda r: holder[0]._on_refused(r),
    )
    try:
        quic_server = await serve_guarded(host, port, policy=AdmissionPolicy(limits), configuration=qc,
                                          create_protocol=factory)
    except OSError as exc:
        raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    bound_port = quic_server._transport.get_extra_info("sockname")[1]
    adv = advertise_host or host
    server = Server(JoinInfo(f"[{adv}]" if ":" in adv else adv, bound_port, identity.fingerprint, token),
                    quic_server)
    holder.append(server)
    try:
        yield server
    finally:
        quic_server.close()


@asynccontextmanager
async def connect(join: JoinInfo | str, config: TransportConfig | None = None) -> AsyncIterator[Connection]:
    """Connects to the server a join string names, checks its certificate pin, shows the room token.

    Raises FingerprintMismatchError, AuthenticationError (wrong token) or
    TransportError (no answer within ``config.handshake_timeout``).
    """
    config = config or TransportConfig()
    join = JoinInfo.parse(join) if isinstance(join, str) else join
    qc = _quic_configuration(config, is_client=True)
    qc.server_name = PEER_NAME
    qc.verify_mode = ssl.CERT_REQUIRED
    factory = partial(NerfProtocol, config=config, token=join.token, pin=join.fingerprint)
    try:
        manager = quic_connect(join.connect_host, join.port, configuration=qc, create_protocol=factory,
                               wait_connected=False)
        protocol = await manager.__aenter__()
    except OSError as exc:
        raise TransportError(f"cannot reach {join.host}:{join.port}: {exc.strerror or exc}") from exc
    assert isinstance(protocol, NerfProtocol)
    connection = Connection(protocol)
    try:
        protocol.transmit()
        try:
            await asyncio.wait_for(protocol.wait_open(), config.handshake_timeout)
        except TimeoutError:
            raise TransportError(
                f"no answer from {join.host}:{join.port} within {config.handshake_timeout:g} s"
            ) from None
        except ConnectionClosedError as exc:
            raise TransportError(f"connection to {join.host}:{join.port} failed: {exc.reason}") from None
        yield connection
    finally:
        await connection.close()
        try:
            # aioquic waits out the closing period (3 PTOs), which grows long on a slow, lossy link
            await asyncio.wait_for(manager.__aexit__(None, None, None), CLOSE_TIMEOUT)
        except TimeoutError:
            protocol._transport.close()
