"""Coverage-guided fuzzing of the avatar bundle loader (``AvatarBundle.load``): a
bundle may come from a peer, so its bundle.json and the JSON header of its
avatar.safetensors are attacker-controlled.

    make fuzz            # or: python fuzz/fuzz_bundle.py -max_total_time=600

The first byte of an input picks the file (0: bundle.json, 1: the
safetensors header, behind a correct length prefix and before the real tensor
data, 2: codec.json, 3: face_model.json, modulo 4); the rest is its contents.
The one allowed failure is BundleError.

Set-up happens once: a bundle with the smallest field that loads (so a
valid input costs milliseconds, not the sample's half second) is saved to a
temporary directory, and its files are the seed inputs. Each input rewrites
only the file it fuzzes, and puts back any other that the last input changed.
"""

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["nerfconf"]):
    from nerfconf.avatar.bundle import AvatarBundle, BundleError

import torch  # noqa: E402 - after the instrumented imports, which must come first

SAMPLE = Path(__file__).resolve().parents[1] / "avatars" / "sample"
WORK = Path(tempfile.mkdtemp(prefix="nerfconf-fuzz-bundle-"))
META, WEIGHTS = WORK / "bundle.json", WORK / "avatar.safetensors"


def _tiny_bundle() -> None:
    from nerfconf.avatar.fields.field import BlendshapeField, FieldConfig  # noqa: PLC0415

    sample = AvatarBundle.load(SAMPLE)
    config = FieldConfig(n_expression=sample.field.config.n_expression, levels=1, features=1, log2_table=4,
                         min_resolution=2, max_resolution=4, hidden=1, geo_features=1, density_hidden=1,
                         sh_degree=0)
    tiny = AvatarBundle(BlendshapeField(config), torch.zeros(2, 2, 2, dtype=torch.bool), sample.face_model,
                        sample.codec, 16, sample.focal, {})
    tiny.save(WORK)


_tiny_bundle()
_weights = WEIGHTS.read_bytes()
_header_len = int.from_bytes(_weights[:8], "little")
TENSOR_DATA = _weights[8 + _header_len :]
#: what each input byte 0 picks: the file, and what a valid input holds (the seed)
FILES = [META, WEIGHTS, WORK / "codec.json", WORK / "face_model.json"]
GOOD = {path: path.read_bytes() for path in FILES}
SEEDS = [GOOD[META], _weights[8 : 8 + _header_len], GOOD[FILES[2]], GOOD[FILES[3]]]
_damaged: set[Path] = set()


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    which = data[0] % len(FILES)
    for path in _damaged - {FILES[which]}:
        path.write_bytes(GOOD[path])
    _damaged.intersection_update({FILES[which]})
    payload = data[1:]
    if FILES[which] == WEIGHTS:
        payload = len(payload).to_bytes(8, "little") + payload + TENSOR_DATA
    FILES[which].write_bytes(payload)
    _damaged.add(FILES[which])
    try:
        AvatarBundle.load(WORK)
    except BundleError:
        pass


def _seed_inputs() -> str:
    seeds = WORK / "seeds"
    seeds.mkdir()
    for i, seed in enumerate(SEEDS):
        (seeds / str(i)).write_bytes(bytes((i,)) + seed)
    return "-seed_inputs=" + ",".join(str(seeds / str(i)) for i in range(len(SEEDS)))


if __name__ == "__main__":
    atheris.Setup([*sys.argv, _seed_inputs()], TestOneInput)
    atheris.Fuzz()
