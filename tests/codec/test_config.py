import json
import re

import pytest

from nerfconf.codec.config import CodecConfig
from nerfconf.codec.frame import FORMAT_VERSION

from .helpers import config


def test_a_format_of_the_wrong_type_is_named_as_such():
    text = config(fitted=True).to_json()
    obj = json.loads(text)
    quoted = repr(str(FORMAT_VERSION))
    with pytest.raises(ValueError, match=re.escape(f"format field is {quoted}, a str, not a whole number (this "
                                                   f"version reads format {FORMAT_VERSION})")):
        CodecConfig.from_json(json.dumps({**obj, "format": str(FORMAT_VERSION)}))
    with pytest.raises(ValueError, match=f"codec format 99, this version reads {FORMAT_VERSION}"):
        CodecConfig.from_json(json.dumps({**obj, "format": 99}))
    assert CodecConfig.from_json(text).tag == config(fitted=True).tag
