"""Saving and loading avatar bundles: saves are all-or-nothing, bad fields are named."""

import errno
import json

import pytest
import torch

from nerfconf.avatar.bundle import BUNDLE_FILES, HELDOUT_TRACK, AvatarBundle, BundleError
from nerfconf.face.model import FaceModel

from .tiny_avatar import tiny_bundle


def _contents(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _with_extras(directory):
    """A saved bundle beside what enrollment and the evaluations leave in its directory."""
    tiny_bundle(seed=0).save(directory)
    (directory / ".work").mkdir()
    (directory / ".work" / "checkpoint.json").write_text('{"iteration": 7}')
    (directory / "notes.txt").write_text("mine")
    (directory / HELDOUT_TRACK).write_bytes(b"held-out track of the old avatar")
    return _contents(directory)


def test_a_save_that_fails_part_way_leaves_the_old_bundle_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "me"
    before = _with_extras(out)

    def disk_full(self, directory):  # the third writer: the weights and bundle.json are written by then
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FaceModel, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tiny_bundle(seed=1).save(out)
    assert _contents(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me"]  # no staging directory left behind
    loaded = AvatarBundle.load(out)
    assert torch.equal(loaded.field.encoding.tables, tiny_bundle(seed=0).field.encoding.tables.half().float())


def test_a_save_replaces_the_bundle_and_keeps_what_is_not_derived_from_it(tmp_path):
    out = tmp_path / "me"
    before = _with_extras(out)
    new = tiny_bundle(seed=1)
    new.save(out)
    after = _contents(out)
    assert after[".work/checkpoint.json"] == before[".work/checkpoint.json"]
    assert after["notes.txt"] == b"mine"
    assert HELDOUT_TRACK not in after  # it described the old avatar
    assert set(BUNDLE_FILES) <= set(after)
    assert after["avatar.safetensors"] != before["avatar.safetensors"]
    loaded = AvatarBundle.load(out)
    assert torch.equal(loaded.field.encoding.tables, new.field.encoding.tables.half().float())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me"]


def test_a_bundle_is_not_saved_over_a_file(tmp_path):
    (tmp_path / "me").write_text("a file")
    with pytest.raises(BundleError, match="is a file"):
        tiny_bundle().save(tmp_path / "me")
    assert (tmp_path / "me").read_text() == "a file"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("format", "1", "format field is '1', a str, not a whole number"),
    ("resolution", 1e9, "resolution must be a whole number of pixels in 16..4096, got 1000000000.0"),
    ("resolution", None, "got None"),
])
def test_bad_header_fields_are_named_with_what_was_given(tmp_path, field, value, message):
    tiny_bundle().save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    (tmp_path / "b" / "bundle.json").write_text(json.dumps({**meta, field: value}))
    with pytest.raises(BundleError, match=message.replace(".", r"\.")):
        AvatarBundle.load(tmp_path / "b")


def _field_changed(meta: dict, **changes) -> bytes:
    return json.dumps({**meta, "field": {**meta["field"], **changes}}).encode()


# Found by fuzz/fuzz_bundle.py: each of these escaped the loader as something other than a BundleError.
@pytest.mark.parametrize(("contents", "message"), [
    (lambda meta: b'{"kind": "\x95"}', "unreadable"),  # not UTF-8
    (lambda meta: b"[" * 100_000, "unreadable"),  # deeper than the JSON parser recurses
    (lambda meta: _field_changed(meta, min_resolution=9, max_resolution=4), "invalid field configuration"),
    (lambda meta: _field_changed(meta, n_expression=555_555_555_555_555_551, expression_scale=None),
     "invalid field configuration"),
    # ~10^15 parameters: refused by their shapes, before anything is allocated
    (lambda meta: _field_changed(meta, levels=1024, features=1024, log2_table=24, hidden=1024),
     "missing or of the wrong shape"),
])
def test_a_hostile_bundle_json_is_a_bundle_error(tmp_path, contents, message):
    tiny_bundle().save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    (tmp_path / "b" / "bundle.json").write_bytes(contents(meta))
    with pytest.raises(BundleError, match=message):
        AvatarBundle.load(tmp_path / "b")


@pytest.mark.parametrize("name", ["face_model.json", "codec.json"])
@pytest.mark.parametrize("contents", [b"0", b"\x95", b"[" * 100_000])
def test_a_hostile_face_model_or_codec_json_is_a_bundle_error(tmp_path, name, contents):
    tiny_bundle().save(tmp_path / "b")
    (tmp_path / "b" / name).write_bytes(contents)
    with pytest.raises(BundleError):
        AvatarBundle.load(tmp_path / "b")
