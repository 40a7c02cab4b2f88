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
        text = [c for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)]
        # text columns are Arrow-backed (no Python string per cell): same values
        # (an absent export's empty table keeps the schema's plain dtypes)
        stored = [got[table][c].dtype.storage for c in text]
        assert stored == (["pyarrow"] * len(text) if len(df) else stored)
        same = got[table].astype({c: df[c].dtype for c in text})
        pd.testing.assert_frame_equal(same, df, check_exact=True)
        for col in df.columns:
            if isinstance(df[col].dtype, pd.Int64Dtype):  # codes under the mask too
                np.testing.assert_array_equal(got[table][col].array._data, df[col].array._data)


@pytest.mark.parametrize("as_codes", [True, False])
def test_codes_in_and_count_per_child_match_isin_and_groupby(as_codes):
    from helpers.panel import features as F

    raw = pd.Series(["b", None, "a", "c", "b", "d", "b"], dtype="string")
    idx_raw = pd.Index(["a", "b", "e"])
    if as_codes:
        order = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}
        keys = pd.Series([None if pd.isna(v) else order[v] for v in raw], dtype="Int64")
        idx = pd.Index([order[v] for v in idx_raw], dtype="Int64")
    else:
        keys, idx = raw, idx_raw
    np.testing.assert_array_equal(F.codes_in(keys, idx), keys.isin(idx).fillna(False))
    mask = pd.Series([True, True, True, True, False, True, True])
    counts = F.count_per_child(idx, keys, mask)
    assert counts.tolist() == [1.0, 2.0, 0.0] and counts.index.equals(idx)
