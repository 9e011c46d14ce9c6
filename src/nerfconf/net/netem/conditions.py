"""Named network conditions for the transport benchmark (RTT 20 ms base, the paper's setting)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nerfconf.net.netem.link import GilbertElliott, LinkSpec
from nerfconf.net.netem.traces import load_alphartc, load_mahimahi

#: one-way propagation delay: RTT 20 ms
BASE_DELAY_MS = 10.0
ALPHARTC_TRACE = "alphartc/4G_500kbps.json"
MAHIMAHI_TRACE = "mahimahi/TMobile-UMTS-driving.up"


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    #: builds (client -> server, server -> client) specs; traces are read from the traces folder
    make: Callable[[Path], tuple[LinkSpec, LinkSpec]]


def _same(spec: LinkSpec) -> Callable[[Path], tuple[LinkSpec, LinkSpec]]:
    return lambda _traces: (spec, spec)


def _alphartc(traces: Path) -> tuple[LinkSpec, LinkSpec]:
    spec = LinkSpec(delay_ms=BASE_DELAY_MS, alphartc=load_alphartc(traces / ALPHARTC_TRACE))
    return spec, spec


def _mahimahi(traces: Path) -> tuple[LinkSpec, LinkSpec]:
    # only an uplink trace exists; the downlink replays it too
    spec = LinkSpec(delay_ms=BASE_DELAY_MS, mahimahi=load_mahimahi(traces / MAHIMAHI_TRACE))
    return spec, spec


GE = GilbertElliott(p_good_bad=0.02, p_bad_good=0.3)

CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("clean", "RTT 20 ms, no loss", _same(LinkSpec(delay_ms=BASE_DELAY_MS))),
    Condition("loss2", "RTT 20 ms, 2 % random loss each way", _same(LinkSpec(delay_ms=BASE_DELAY_MS, loss=0.02))),
    Condition("loss5", "RTT 20 ms, 5 % random loss each way", _same(LinkSpec(delay_ms=BASE_DELAY_MS, loss=0.05))),
    Condition("loss10", "RTT 20 ms, 10 % random loss each way", _same(LinkSpec(delay_ms=BASE_DELAY_MS, loss=0.10))),
    Condition("loss15", "RTT 20 ms, 15 % random loss each way", _same(LinkSpec(delay_ms=BASE_DELAY_MS, loss=0.15))),
    Condition("gilbert", f"RTT 20 ms, Gilbert-Elliott bursts (p_gb {GE.p_good_bad}, p_bg {GE.p_bad_good}, "
              f"mean loss {100 * GE.mean_loss:.1f} %, mean burst {1 / GE.p_bad_good:.1f} packets)",
              _same(LinkSpec(delay_ms=BASE_DELAY_MS, gilbert=GE))),
    Condition("cap50k", "RTT 20 ms, 50 kbps each way, 10 kB drop-tail queue",
              _same(LinkSpec(delay_ms=BASE_DELAY_MS, rate_kbps=50.0, queue_bytes=10_000))),
    Condition("alphartc", f"AlphaRTC {ALPHARTC_TRACE} both ways, + 10 ms each way", _alphartc),
    Condition("mahimahi", f"Mahimahi {MAHIMAHI_TRACE} both ways, + 10 ms each way", _mahimahi),
)}
