"""The same tiny city written by two vendors (synth.dialect default and vendor_b) reaches the
same mart; every planted defect is rejected, blanked or dropped exactly where the generator's
truth says, and nothing else is lost."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from helpers.config import load_config
from helpers.exports import read_sheets, scan_exports
from helpers.ingest.stage import ingest_all
from helpers.paths import paths
from helpers.schema import load_schemas
from helpers.synth.export import EXPORTS
from helpers.synth.stage import generate_city

DIALECTS = ("default", "vendor_b")
PLANTED_UNKNOWN = "不明区分77"  # the generator's unknown-code defect


@pytest.fixture(scope="module")
def cities(tmp_path_factory) -> dict[str, dict]:
    out = {}
    for dialect in DIALECTS:
        data = tmp_path_factory.mktemp(dialect) / "data"
        cfg = load_config(
            profile="tiny",
            overrides={"run": {"data_dir": str(data)}, "synth": {"dialect": dialect}},
        )
        P = paths(cfg)
        generate_city(cfg, P.raw)
        report = ingest_all(cfg, P.raw, P.mart)
        out[dialect] = {"cfg": cfg, "P": P, "report": report}
    return out


# the tables whose exports the dialects write (the code-less identity sources have their own
# truth, _truth/identity_links.csv, and tests under tests/link)
DIALECT_TABLES = sorted(EXPORTS)


def _lines(P, kind: str) -> pd.DataFrame:
    folder = P.rejects_dir if kind == "rejects" else P.marts.warnings_dir
    return pd.concat(
        [pd.read_csv(folder / f"{t}.csv", dtype={"source_row": int}) for t in DIALECT_TABLES],
        ignore_index=True,
    )


@pytest.mark.parametrize("dialect", DIALECTS)
def test_defects_are_exactly_the_rejects_warnings_and_dropped_copies(cities, dialect):
    P, report = cities[dialect]["P"], cities[dialect]["report"]
    truth = pd.read_csv(P.truth_defects, dtype={"source_row": int})
    assert len(truth) > 0
    for kind, actions in (
        ("rejects", {"reject_row", "drop_duplicate"}),
        ("warnings", {"blank_cell"}),
    ):
        got = _lines(P, kind).groupby(["file", "source_row"])["reason"].agg(set)
        want = (
            truth[truth["action"].isin(actions)].groupby(["file", "source_row"])["reason"].agg(set)
        )
        assert want.index.difference(got.index).empty, (kind, want.index.difference(got.index)[:10])
        assert got.index.difference(want.index).empty, (kind, got.index.difference(want.index)[:10])
        assert all(want[k] <= got[k] for k in want.index), kind
    for table, t in report["tables"].items():
        assert t["rows_in"] == t["rows_out"] + t["rows_rejected"] + t["duplicates_dropped"], table
        if table not in DIALECT_TABLES:
            continue
        planted = truth[truth["table"] == table]
        assert t["duplicates_dropped"] == int((planted["action"] == "drop_duplicate").sum())
        # rows rejected <= rows planted as defects that reject a row
        assert (
            t["rows_rejected"]
            <= planted.loc[planted["action"] == "reject_row", ["file", "source_row"]]
            .drop_duplicates()
            .shape[0]
        )


@pytest.mark.parametrize("dialect", DIALECTS)
def test_no_value_listed_in_a_schema_is_unmapped(cities, dialect):
    report = cities[dialect]["report"]
    unmapped = {
        (t, u["field"], u["value"])
        for t, tr in report["tables"].items()
        for u in tr["unmapped_values"]
    }
    assert unmapped, "the generator plants unknown codes: they must be listed"
    assert {v for _t, _f, v in unmapped} == {PLANTED_UNKNOWN}


def test_both_vendors_give_the_same_mart(cities):
    a, b = cities["default"], cities["vendor_b"]
    assert set(a["report"]["tables"]) == set(b["report"]["tables"]) == set(load_schemas())
    for table in a["report"]["tables"]:
        left = pd.read_parquet(a["P"].mart_table(table))
        right = pd.read_parquet(b["P"].mart_table(table))
        pd.testing.assert_frame_equal(left, right, obj=table)
        assert (
            a["report"]["tables"][table]["rows_rejected"]
            == b["report"]["tables"][table]["rows_rejected"]
        ), table


def test_the_second_vendor_writes_differently(cities):
    """vendor_b really exercises what the first vendor never writes."""
    P, report = cities["vendor_b"]["P"], cities["vendor_b"]["report"]
    schemas = load_schemas()
    scan = scan_exports(P.raw, schemas)
    default_names = {p.name for p in scan_exports(cities["default"]["P"].raw, schemas).all_files}
    assert len(default_names - {p.name for p in scan.all_files}) >= 5  # other file names
    sheets = {p.name: read_sheets(p) for p in scan.all_files}
    assert any(len(s) > 1 for s in sheets.values()), "a workbook with several sheets"
    encodings = {s[0].encoding for s in sheets.values()}
    assert {"cp932", "utf-8", "utf-8-sig", "xlsx"} <= encodings
    text = "".join("".join(sh.grid.ravel().astype(str)) for s in sheets.values() for sh in s)
    for spelling in (
        "未届の",
        "該当",
        "非該当",
        "1ヶ月児健康診査",
        "（疑い）",
        "円",
        "9999/12/31",
        "0000/00/00",
        "99999999",
        "合計",
    ):
        assert spelling in text, spelling
    assert re.search(r"[平令昭]\d\d\.\d\d\.\d\d", text)  # one-kanji era dates
    files = [f for t in report["tables"].values() for f in t["files"]]
    assert sum(bool(f["title_rows_skipped"]) for f in files) >= 3
    assert sum(bool(f["footer_rows_skipped"]) for f in files) >= 3
    assert report["tables"]["household_history"]["open_end_sentinels"]["end_date"] > 0
    cc = read_sheets(next(p for p in scan.all_files if p.name.startswith("要対協")))[0]
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d 10:30:00", str(c)) for c in cc.grid.ravel())


def test_generator_truth_does_not_depend_on_the_dialect(cities):
    a, b = cities["default"]["P"], cities["vendor_b"]["P"]
    for name in ("truth_probabilities", "truth_population"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(getattr(a, name)), pd.read_parquet(getattr(b, name))
        )
    da = pd.read_csv(a.truth_defects)
    db = pd.read_csv(b.truth_defects)
    assert da[["table", "column", "reason", "action"]].equals(
        db[["table", "column", "reason", "action"]]
    )


def test_raw_folder_is_not_touched_by_ingest(cities):
    P = cities["vendor_b"]["P"]
    assert not list(Path(P.raw).glob(".mart*"))


def test_the_identifier_scan_reads_the_second_vendors_titled_and_split_exports(cities):
    """check-reports must know the names in every export, whatever its layout."""
    from helpers.exports import read_columns
    from helpers.reports.scan import load_pii_index, normalise_text

    P = cities["vendor_b"]["P"]
    residents = next(P.raw.glob("住民記録一覧*.csv"))  # a title line and a totals line
    names = read_columns(residents, ["漢字氏名"])["漢字氏名"].dropna()
    assert len(names) == cities["vendor_b"]["report"]["tables"]["residents"]["rows_in"]
    index = load_pii_index(P.raw)
    name = normalise_text(names.iloc[0])
    assert index.find_strings(name), "a resident's name from a titled export is not indexed"
    code = read_columns(next(P.raw.glob("保育所等入所*.xlsx")), ["宛名番号"])["宛名番号"].iloc[-1]
    assert index.find_codes(f" {code} ")  # the second sheet of a workbook is read too
