import numpy as np
import pytest

from nerfconf.types import FaceParams, ParamLayout


def test_vector_round_trip_with_and_without_translation():
    for layout in (ParamLayout(), ParamLayout(12, translation=True)):
        v = np.arange(layout.dims, dtype=float)
        p = FaceParams.from_vector(v, layout, t_capture=1.5, index=3)
        assert np.array_equal(p.to_vector(layout), v)
        assert len(layout.names()) == layout.dims


def test_wrong_shapes_are_named():
    layout = ParamLayout(4)
    with pytest.raises(ValueError, match="7 values"):
        FaceParams.from_vector(np.zeros(5), layout)
    p = FaceParams.from_vector(np.zeros(7), layout)
    with pytest.raises(ValueError, match="carries translation"):
        p.to_vector(ParamLayout(4, translation=True))
    with pytest.raises(ValueError, match="n_expression"):
        ParamLayout(0)
