"""User-space network emulator: a loopback UDP relay with delay, jitter, loss, rate caps and trace replay.

The kernel here has no netem, so impairments are applied in a relay between
peers. The decisions live in the pure :class:`LinkModel`; :class:`NetemRelay`
only moves packets at the times it computes.
"""

from nerfconf.net.netem.conditions import CONDITIONS, Condition
from nerfconf.net.netem.link import GilbertElliott, LinkModel, LinkSpec, LinkStats
from nerfconf.net.netem.relay import NetemRelay, RelayStats, check_loopback
from nerfconf.net.netem.traces import AlphaRtcTrace, MahimahiTrace, load_alphartc, load_mahimahi

__all__ = [
    "CONDITIONS",
    "AlphaRtcTrace",
    "Condition",
    "GilbertElliott",
    "LinkModel",
    "LinkSpec",
    "LinkStats",
    "MahimahiTrace",
    "NetemRelay",
    "RelayStats",
    "check_loopback",
    "load_alphartc",
    "load_mahimahi",
]
