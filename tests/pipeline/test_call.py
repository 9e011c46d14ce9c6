"""Two peers of ``nerfconf call`` in one event loop, over real QUIC on loopback."""

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from nerfconf.pipeline.call import CallSettings, run_call
from nerfconf.pipeline.receiver import PeerMismatchError
from nerfconf.pipeline.render_worker import RenderWorker

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"
CLIP = SAMPLE / "demo_clip.mp4"


async def _pair(listener: CallSettings, joiner: dict, worker):
    join: asyncio.Future = asyncio.get_running_loop().create_future()
    host = asyncio.create_task(run_call(listener, on_join=join.set_result, worker=worker))
    joined = CallSettings(join=await asyncio.wait_for(join, 30), **joiner)
    guest = asyncio.create_task(run_call(joined))
    return await asyncio.gather(host, guest, return_exceptions=True)


def test_a_receiver_with_another_persons_bundle_gets_a_clear_error(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(SAMPLE, other, ignore=shutil.ignore_patterns("*.mp4", "*.png", ".work"))
    codec = json.loads((other / "codec.json").read_text())
    codec["bits"] = [min(10, b + 1) for b in codec["bits"]]  # another person's codec settings
    (other / "codec.json").write_text(json.dumps(codec))
    listener = CallSettings(peer=other, listen=("127.0.0.1", 0), seconds=8, window=False, resolution=16)
    with RenderWorker(other, resolution=16) as worker:
        host, guest = asyncio.run(_pair(listener, {"own": SAMPLE, "video": CLIP, "seconds": 8}, worker))
    assert isinstance(host, PeerMismatchError)
    assert "--avatar-peer" in str(host)
    assert not isinstance(guest, BaseException) or "closed" in str(guest).lower()


def test_settings_name_what_is_missing():
    with pytest.raises(ValueError, match="--listen or --connect"):
        CallSettings(own=SAMPLE, video=CLIP)
    with pytest.raises(ValueError, match="--video PATH or --camera N"):
        CallSettings(own=SAMPLE, listen=("127.0.0.1", 0))
    with pytest.raises(ValueError, match="--avatar-self"):
        CallSettings(listen=("127.0.0.1", 0))


def test_listening_on_every_address_needs_the_address_to_advertise():
    with pytest.raises(ValueError, match=r"--listen 0\.0\.0\.0:5000 takes calls on every address.*add --advertise HOST"):
        CallSettings(peer=SAMPLE, listen=("0.0.0.0", 5000))
    with pytest.raises(ValueError, match="add --advertise HOST"):
        CallSettings(peer=SAMPLE, listen=("::", 5000))
    with pytest.raises(ValueError, match="it goes with --listen"):
        CallSettings(peer=SAMPLE, join="nerfconf://x", advertise="127.0.0.1")


def test_the_join_string_names_the_advertised_address():
    class Joined(Exception):
        pass

    def stop(join: str) -> None:
        raise Joined(join)

    settings = CallSettings(peer=SAMPLE, listen=("0.0.0.0", 0), advertise="127.0.0.1", window=False)
    with pytest.raises(Joined) as got:
        asyncio.run(run_call(settings, on_join=stop))
    assert str(got.value).startswith("nerfconf://127.0.0.1:")
