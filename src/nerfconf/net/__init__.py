"""Transport: QUIC streams and datagrams between peers, and a user-space network emulator.

The public surface::

    async with listen("127.0.0.1", 0, token, TransportConfig()) as server:
        print(server.join_info)            # nerfconf://127.0.0.1:PORT#sha256=...&token=...
        conn = await server.accept()
    async with connect(join, TransportConfig()) as conn:
        conn.attach_encoder(encoder)       # peer feedback -> acknowledge / request_iframe
        conn.send_frame(encoded_frame, deadline)
        received = await conn.recv_frame()
        conn.send_feedback(Feedback(acks=(seq,)))
"""

from nerfconf.net.config import ReceivedFrame, TransportConfig, TransportStats
from nerfconf.net.connection import Connection
from nerfconf.net.endpoints import Server, connect, listen
from nerfconf.net.errors import (
    AuthenticationError,
    ConnectionClosedError,
    FingerprintMismatchError,
    JoinStringError,
    ProtocolError,
    ServerBusyError,
    TransportError,
)
from nerfconf.net.join import JoinInfo, new_token
from nerfconf.net.messages import Feedback

__all__ = [
    "AuthenticationError",
    "Connection",
    "ConnectionClosedError",
    "Feedback",
    "FingerprintMismatchError",
    "JoinInfo",
    "JoinStringError",
    "ProtocolError",
    "ReceivedFrame",
    "Server",
    "ServerBusyError",
    "TransportConfig",
    "TransportError",
    "TransportStats",
    "connect",
    "listen",
    "new_token",
]
