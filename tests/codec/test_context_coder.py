import numpy as np
import pytest

from nerfconf.codec.config import Reference
from nerfconf.codec.context_coder import ContextPriors
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.codec.entropy import CoderId
from nerfconf.codec.errors import MissingReferenceError
from nerfconf.codec.priors import fit_predictor, fit_priors

from .helpers import LAYOUT, config, smooth_levels


def coded_bytes(cfg, levels):
    enc, dec = ParamEncoder(cfg), ParamDecoder(cfg)
    for i, q in enumerate(levels):
        f = enc.encode_levels(q, i / 20)
        assert dec.decode(f.data).levels.tolist() == q.tolist()
    return enc.stats.bytes_total - enc.stats.bytes_header


def test_arithmetic_coder_beats_exp_golomb_on_smooth_motion():
    levels = smooth_levels(400, LAYOUT.dims, seed=7)
    eg = coded_bytes(config(CoderId.EXP_GOLOMB), levels)
    ac_plain = coded_bytes(config(CoderId.ARITHMETIC), levels)
    ac_fitted = coded_bytes(config(CoderId.ARITHMETIC, fitted=True), levels)
    assert ac_plain < 0.9 * eg
    assert ac_fitted < 0.95 * ac_plain  # the fitted predictor and priors carry real information


def test_predictor_recovers_momentum():
    rng = np.random.default_rng(0)
    x = np.zeros(3000)
    v = 0.0
    for t in range(1, len(x)):
        v = 0.75 * v + rng.normal()
        x[t] = x[t - 1] + v
    momentum, pullback, centre = fit_predictor((x - x.min())[:, None])
    assert abs(momentum[0] - 0.75 * 256) < 15
    assert abs(pullback[0]) < 10


def test_priors_json_round_trip_and_validation():
    priors = fit_priors(smooth_levels(100, LAYOUT.dims), 20, 8)
    assert ContextPriors.from_json(priors.to_json()) == priors
    with pytest.raises(ValueError, match="model"):
        ContextPriors.from_json(priors.to_json().replace("scale-octave-1", "other"))
    with pytest.raises(ValueError, match="not a context-priors"):
        ContextPriors.from_json("[]")
    with pytest.raises(ValueError, match="predictor weights"):
        ContextPriors(priors.counts, priors.scales, momentum=(999,) * LAYOUT.dims)


def test_different_priors_are_an_incompatible_configuration():
    a = config(fitted=True)
    b = config(fitted=False)
    assert a.tag != b.tag


@pytest.mark.parametrize("reference", list(Reference))
def test_fitted_model_survives_loss_in_anchor_mode(reference):
    cfg = config(CoderId.ARITHMETIC, reference, fitted=True)
    enc, dec = ParamEncoder(cfg), ParamDecoder(cfg)
    ok = 0
    for i, q in enumerate(smooth_levels(40, LAYOUT.dims, seed=3)):
        f = enc.encode_levels(q, i / 20)
        if i % 7 == 3:
            continue
        try:
            assert dec.decode(f.data).levels.tolist() == q.tolist()
            ok += 1
            enc.acknowledge(f.seq)
        except MissingReferenceError:
            assert reference == Reference.PREV
    lost = len([i for i in range(40) if i % 7 == 3])
    if reference == Reference.ANCHOR:
        assert ok == 40 - lost
    else:
        assert ok < 40 - lost  # prev mode loses the rest of each GOP after a loss
