"""The real encoders and decoders through PyAV, on the sample's real demo clip."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from nerfconf.capture.video import read_frames
from nerfconf.evaluate.metrics import psnr
from nerfconf.net.messages import VideoCodec
from nerfconf.video.decoder import VideoDecodeError, VideoDecoder
from nerfconf.video.encoder import EncoderConfig, VideoEncoder, available_codecs

CLIP = Path(__file__).resolve().parents[2] / "avatars" / "sample" / "demo_clip.mp4"
CODECS = sorted(available_codecs())


@pytest.fixture(scope="module")
def pictures():
    return [f.image for f in read_frames(CLIP, stop=40, size=128)]


def test_this_pyav_has_both_codecs():
    assert set(CODECS) == {VideoCodec.H264, VideoCodec.AV1}


@pytest.mark.parametrize("codec", CODECS)
def test_frames_round_trip_one_in_one_out_with_keyframes_on_request(codec, pictures):
    enc = VideoEncoder(EncoderConfig(codec, 128, 20, 64))
    dec = VideoDecoder(codec)
    coded = []
    for i, image in enumerate(pictures[:20]):
        out = enc.encode(image, 50 * i, keyframe=i == 12)
        assert out is not None, "a low-delay encoder gives each frame back at once"
        coded.append(out)
        decoded = dec.decode(out[0])
        assert decoded is not None and decoded.shape == (128, 128, 3)
        assert psnr(decoded, image) > 27
    assert [i for i, (_, key) in enumerate(coded) if key] == [0, 12]
    # a decoder that missed everything before the requested keyframe starts there
    fresh = VideoDecoder(codec)
    assert psnr(fresh.decode(coded[12][0]), pictures[12]) > 27
    enc.close()


def test_h264_follows_a_new_target_up_to_its_peak_without_a_keyframe(pictures):
    enc = VideoEncoder(EncoderConfig(VideoCodec.H264, 128, 20, 64, peak_kbps=64))
    high = [enc.encode(p, 50 * i)[0] for i, p in enumerate(pictures[:20])]
    assert enc.set_kbps(16)
    low = [enc.encode(p, 50 * (20 + i)) for i, p in enumerate(pictures[20:40])]
    assert not any(key for _, key in low)
    assert sum(len(d) for d, _ in low[5:]) < 0.6 * sum(len(d) for d in high[5:20])
    assert not enc.set_kbps(80)  # past the peak it was opened at: a new encoder
    assert not VideoEncoder(EncoderConfig(VideoCodec.AV1, 128, 20, 64)).set_kbps(16)


def test_a_picture_of_the_wrong_size_is_refused(pictures):
    with pytest.raises(ValueError, match="128x128"):
        VideoEncoder(EncoderConfig(VideoCodec.H264, 128, 20, 32)).encode(pictures[0][:64], 0)
    with pytest.raises(ValueError):
        EncoderConfig(VideoCodec.AV1, 128, 20, 32, intra_refresh_s=1.0)


@pytest.mark.parametrize("codec", CODECS)
def test_hostile_bytes_never_raise_anything_but_a_decode_error(codec, pictures):
    rng = np.random.default_rng(0)
    enc = VideoEncoder(EncoderConfig(codec, 128, 20, 64))
    real = enc.encode(pictures[0], 0)[0]
    dec = VideoDecoder(codec)
    for i in range(200):
        data = bytearray(real)
        for _ in range(int(rng.integers(1, 20))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        if i % 3 == 0:
            data = bytes(rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8))
        try:
            image = dec.decode(bytes(data))
        except VideoDecodeError:
            continue
        assert image is None or (image.ndim == 3 and max(image.shape[:2]) <= dec.max_size)


@pytest.mark.parametrize("codec", CODECS)
def test_a_picture_larger_than_the_bound_is_refused_before_it_is_decoded(codec, pictures):
    big = cv2.resize(pictures[0], (256, 256))
    data = VideoEncoder(EncoderConfig(codec, 256, 20, 64)).encode(big, 0)[0]
    with pytest.raises(VideoDecodeError):
        VideoDecoder(codec, max_size=128).decode(data)
    assert VideoDecoder(codec, max_size=256).decode(data).shape == (256, 256, 3)
