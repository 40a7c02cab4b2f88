"""load_encoded_mart reads the mart with key codes exactly as encode_keys(load_mart(...))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.panel import stage as P
from helpers.paths import paths

from .test_panel import make_fixture_mart
from .test_robustness import _write


@pytest.mark.parametrize("drop", [(), ("long_term_care", "school_guidance")])
def test_arrow_encoding_equals_pandas_encoding(tmp_path, drop):
    cfg = _write(tmp_path, make_fixture_mart(), drop=drop)
    mart_dir = paths(cfg).mart
    want, want_dec = P.encode_keys(P.load_mart(mart_dir))
    got, got_dec = P.load_encoded_mart(mart_dir)
    assert list(got) == list(want) and list(got_dec) == list(want_dec)
    for key, decoder in want_dec.items():
        assert got_dec[key].equals(decoder) and got_dec[key].dtype == decoder.dtype
    for table, df in want.items():
        pd.testing.assert_frame_equal(got[table], df, check_exact=True)
        for col in df.columns:
            if isinstance(df[col].dtype, pd.Int64Dtype):  # codes under the mask too
                np.testing.assert_array_equal(got[table][col].array._data, df[col].array._data)
