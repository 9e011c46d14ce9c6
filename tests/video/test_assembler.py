from nerfconf.net.messages import VideoCodec
from nerfconf.video.assembler import AssembledFrame, FrameAssembler, FramesLost
from nerfconf.video.packets import MAX_FRAGMENT_DATA, EncodedVideo, packetize


def _payloads(frame_no: int, n_bytes: int = 2500, key: bool = False) -> list[bytes]:
    data = bytes((frame_no + i) % 256 for i in range(n_bytes))
    return packetize(EncodedVideo(data, frame_no, key, VideoCodec.H264, 50 * frame_no))


def _frames(outputs):
    return [o.frame_no for o in outputs if isinstance(o, AssembledFrame)]


def test_fragments_in_any_order_make_each_frame_once_in_order():
    a = FrameAssembler()
    p0, p1 = _payloads(0, key=True), _payloads(1)
    out = []
    for payload in (p1[2], p0[1], p1[0], p0[2], p1[1], p0[0], p0[0]):
        out += a.push(payload, 0.0)
    assert _frames(out) == [0, 1]
    assert out[0].data == bytes(i % 256 for i in range(2500))
    assert a.stats.late == 1  # the repeat came after frame 0 was given out


def test_an_incomplete_frame_is_given_up_at_its_deadline_not_before():
    a = FrameAssembler(timeout=0.2)
    p = _payloads(0, key=True)
    assert a.push(p[0], 1.0) == [] and a.push(p[1], 1.05) == []
    assert a.poll(1.19) == []
    assert a.next_deadline() == 1.2
    lost = a.poll(1.2)
    assert lost == [FramesLost(0, 0)] and a.stats.lost == 1
    assert a.push(p[2], 1.3) == [] and a.stats.late == 1  # too late to matter


def test_a_missing_frame_waits_for_its_deadline_then_the_next_comes_out():
    a = FrameAssembler(timeout=0.2)
    assert _frames(a.push(_payloads(0, 100)[0], 0.0)) == [0]
    out = a.push(_payloads(2, 100)[0], 0.1)  # frame 1 never came: frame 2 waits for it
    assert out == []
    out = a.poll(0.31)
    assert out[0] == FramesLost(1, 1) and _frames(out) == [2]


def test_a_complete_keyframe_ends_the_wait_for_what_came_before_it():
    a = FrameAssembler(timeout=5.0)
    a.push(_payloads(0, key=True)[0], 0.0)
    out = []
    for payload in _payloads(3, key=True):
        out += a.push(payload, 0.1)
    assert out[0] == FramesLost(0, 2) and _frames(out) == [3]


def test_frame_numbers_wrap_around():
    a = FrameAssembler()
    out = []
    for n in (65534, 65535, 0, 1):
        out += a.push(_payloads(n % 65536, 100)[0], 0.0)
    assert _frames(out) == [65534, 65535, 65536, 65537]


def test_a_fragment_that_contradicts_its_frame_drops_the_frame():
    a = FrameAssembler(timeout=0.2)
    good = _payloads(0, key=True)
    a.push(good[0], 0.0)
    bad = bytearray(good[1])
    bad[3] = 5  # another fragment count
    a.push(bytes(bad), 0.0)
    assert a.stats.malformed == 1
    out = a.push(good[2], 0.0)
    assert _frames(out) == []  # the frame was dropped; its remaining fragment starts it anew
    assert a.poll(0.3)[0] == FramesLost(0, 0)


def test_memory_is_bounded_whatever_the_peer_sends():
    a = FrameAssembler(timeout=60.0, max_pending=8)
    for n in range(1, 500):  # frame 0 never completes; each later one lacks its last fragment
        for payload in _payloads(n, 3 * MAX_FRAGMENT_DATA)[:-1]:
            a.push(payload, 0.0)
        assert len(a._pending) <= 8
    assert a.stats.overflow > 0 and a.stats.frames == 0
    a.push(b"\x00" * 5, 0.0)
    assert a.stats.malformed == 1
