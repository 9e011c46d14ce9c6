"""Each module timed alone, for the left column of the paper's Table 1.

Every module runs on the demo's real inputs, one frame at a time as in a call,
after a warm-up, and the median is taken. Transport alone is the one-way
latency of a short clean call through the emulator at RTT 20 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.capture.video import read_frames
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.face.extract import Extractor
from nerfconf.pipeline.probe import ModuleLatency
from nerfconf.types import FaceParams


@dataclass(frozen=True)
class LatencyBench:
    """``nerfconf eval latency``: the paper's Table 1 on this machine."""

    #: median ms a frame of each module timed alone (extract, encode, decode, generate, transport)
    alone_ms: dict[str, float]
    #: the same modules inside a running loopback call (the demo)
    in_system: list[ModuleLatency]
    #: the renderer the call's receiver used
    renderer: str
    #: render resolution asked for; None: the avatar's own
    resolution: int | None


def _median_ms(fn: Callable[[int], object], n: int, warmup: int = 3) -> float:
    for i in range(min(warmup, n)):
        fn(i)
    ms = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        ms.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ms))


def modules_alone(bundle: AvatarBundle, clip: str | Path, *, frames: int = 60,
                  render: Callable[[FaceParams], object] | None = None) -> dict[str, float]:
    """Median ms per frame of extract, encode, decode and (when given) generate."""
    images = [f.image for f, _ in zip(read_frames(clip), range(frames))]
    if not images:
        raise ValueError(f"{clip}: no frames")
    out: dict[str, float] = {}
    params: list[FaceParams] = []
    layout = bundle.codec.layout
    with Extractor(bundle.face_model) as extractor:
        from nerfconf.types import Frame  # noqa: PLC0415

        def extract(i: int) -> None:
            r = extractor.process(Frame(images[i % len(images)], time.monotonic(), i))
            if len(params) < len(images):
                v = r.params.to_vector(extractor.layout)[: layout.dims]
                params.append(FaceParams.from_vector(v, layout, face_found=r.params.face_found,
                                                     t_capture=i / 20.0, index=i))

        out["extract"] = _median_ms(extract, len(images), warmup=0)
    encoder = ParamEncoder(bundle.codec)
    coded = []
    out["encode"] = _median_ms(lambda i: coded.append(encoder.encode(params[i])), len(params), warmup=0)
    decoder = ParamDecoder(bundle.codec)
    out["decode"] = _median_ms(lambda i: decoder.decode(coded[i].data), len(coded), warmup=0)
    if render is not None:
        faces = [p for p in params if p.face_found] or params
        out["generate"] = _median_ms(lambda i: render(faces[i % len(faces)]), min(len(faces), frames))
    return out


def transport_alone_ms(seconds: float = 10.0) -> float:
    """Median one-way latency of coded frames over QUIC through the emulator at RTT 20 ms, clean."""
    from nerfconf.bench.transport import bench_transport  # noqa: PLC0415

    (run,) = bench_transport(seconds=seconds, conditions=["clean"], modes=["datagram"]).runs
    if run.client_to_server is None or run.server_to_client is None:
        raise RuntimeError(f"the loopback call for the transport timing did not come up: {run.error}")
    return float(np.median([run.client_to_server.latency_ms_p50, run.server_to_client.latency_ms_p50]))


def latency_table_data(bundle_dir: str | Path, *, seconds: float = 20.0, resolution: int | None = None,
                       out: Path = Path("latency_out"), progress: bool = False) -> LatencyBench:
    """Table 1: every module alone, then the same modules inside a running loopback call (the demo)."""
    from nerfconf.avatar.rendering.fast import Renderer  # noqa: PLC0415
    from nerfconf.pipeline.demo import DemoSettings, run_demo  # noqa: PLC0415
    from nerfconf.pipeline.demo_clip import DEMO_CLIP  # noqa: PLC0415

    say = print if progress else (lambda *_, **__: None)
    bundle_dir = Path(bundle_dir)
    bundle = AvatarBundle.load(bundle_dir)
    say("timing each module alone: extract, encode, decode, generate ...", flush=True)
    renderer = Renderer(bundle, resolution)
    renderer.prewarm()
    alone = modules_alone(bundle, bundle_dir / DEMO_CLIP, render=renderer.render)
    del renderer
    say("timing the transport alone: a 10 s clean call at RTT 20 ms ...", flush=True)
    alone["transport"] = transport_alone_ms()
    say(f"the modules inside a running call (up to {seconds:g} s) ...", flush=True)
    demo = run_demo(DemoSettings(avatar=bundle_dir, seconds=seconds, resolution=resolution, out=out,
                                 progress=progress))
    return LatencyBench(alone, demo.latencies, demo.stats["renderer"], demo.stats["settings"]["resolution"])
