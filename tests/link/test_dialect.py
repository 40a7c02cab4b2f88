"""The two code-less exports written by the second vendor (synth.dialect vendor_b: other
headers, date styles, sex spellings and encodings) are read, linked and masked into the same
linkage as the first vendor's."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers.config import load_config
from helpers.ingest.stage import ingest_all
from helpers.paths import paths
from helpers.synth.identity import DIALECTS, FILES
from helpers.synth.stage import generate_city

LINKED = ("school_guidance", "learning_support")


@pytest.fixture(scope="module")
def cities(tmp_path_factory) -> dict[str, dict]:
    out = {}
    for dialect in DIALECTS:
        data = tmp_path_factory.mktemp(f"link_{dialect}") / "data"
        cfg = load_config(
            profile="tiny",
            overrides={"run": {"data_dir": str(data)}, "synth": {"dialect": dialect}},
        )
        P = paths(cfg)
        generate_city(cfg, P.raw)
        ingest_all(cfg, P.raw, P.mart)
        out[dialect] = {"cfg": cfg, "P": P}
    return out


def _export(P, table: str) -> bytes:
    (path,) = P.raw.glob(FILES[table].format(stamp="*"))
    return path.read_bytes()


def test_second_vendor_writes_its_own_way(cities):
    a, b = cities["default"]["P"], cities["vendor_b"]["P"]
    school_a, school_b = _export(a, "school_guidance"), _export(b, "school_guidance")
    assert school_a.startswith(b"\xef\xbb\xbf") and not school_b.startswith(b"\xef\xbb\xbf")
    head_b = school_b.decode("utf-8").splitlines()[0]
    assert "漢字氏名" in head_b and "カナ氏名" in head_b and "保護者名" in head_b
    assert "年" in school_b.decode("utf-8").splitlines()[1]  # 平成22年7月8日
    roster_a, roster_b = _export(a, "learning_support"), _export(b, "learning_support")
    with pytest.raises(UnicodeDecodeError):
        roster_a.decode("utf-8")  # Shift_JIS
    text_b = roster_b.decode("utf-8-sig")
    assert "児童氏名" in text_b.splitlines()[0] and "参加開始日" in text_b.splitlines()[0]
    assert "男性" in text_b or "女性" in text_b


def test_second_vendor_links_the_same(cities):
    reports = {
        d: json.loads(c["P"].linkage_report.read_text(encoding="utf-8"))["tables"]
        for d, c in cities.items()
    }
    for table in LINKED:
        a, b = reports["default"][table], reports["vendor_b"][table]
        for key in ("rows", "records", "auto", "clerical", "unmatched"):
            assert a[key] == b[key], (table, key)
        assert b["truth"]["auto_precision"] >= 0.99, table
        assert b["truth"]["twins_cross_linked"] == 0, table
    for table in LINKED:
        pd.testing.assert_frame_equal(
            pd.read_parquet(cities["default"]["P"].mart_table(table)),
            pd.read_parquet(cities["vendor_b"]["P"].mart_table(table)),
            obj=table,
        )
