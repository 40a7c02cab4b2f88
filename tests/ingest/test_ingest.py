"""Ingest end to end on tiny hand-made exports: readers, headers, every reject reason,
whole-file errors, masking in the mart, reruns, the correspondence table, quality figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml

from helpers import MimamoriError
from helpers.config import load_config
from helpers.ingest.masking import pseudonym
from helpers.ingest.stage import (
    REASONS,
    REJECT_COLUMNS,
    ingest_all,
    main,
    mart_dtypes,
    read_export,
    validate_table,
)
from helpers.paths import paths
from helpers.schema import load_schema, load_schemas

CORPUS = Path(__file__).parent / "corpus"

RES_HEADER = "宛名番号,氏名,氏名カナ,生年月日,性別,国籍,住所,小学校区,転入日,転出日,死亡日"
RESIDENTS = [
    "10000001,山田太郎,ヤマダタロウ,H27.4.1,男,日本,東京都千代田区丸の内1-1,E01,,,",
    '10000002,鈴木花子,スズキハナコ,令和2年5月3日,2,1,"大阪府大阪市\n北区梅田2-2",E02,R3.4.1,,',
    "１０００００03,佐藤次郎,サトウジロウ,2016/07/15,男性,外国籍,京都府京都市左京区3-3,E01,,,",
    "10000004,田中一郎,タナカイチロウ,5020115,1,日本人,札幌市中央区4-4,E03,,2023-03-31,",
    "10000005,伊藤恵子,イトウケイコ,S50.6.6,女,日本,福岡市博多区5-5,,,,",
    "10000006,高橋直樹,タカハシナオキ,昭和45年1月7日,男,日本,福岡市博多区5-5,E03,,,",
]
HC_HEADER = "宛名番号,健診種別,受診日,体重,身長,育児協力者,育てにくさ,母親の喫煙本数,判定"
HEALTH = [
    "10000001,3歳児健診,H30.4.10,14.2,95.1,有,無,0,1",
    "10000002,1歳6か月,R3.11.5,10.1,80,,,,異常なし",
    "10000003,4か月,2016/11/20,6.5,62,はい,いいえ,２,正常",
]
REG_HEADER = ["宛名番号", "年度", "学籍番号", "学校コード", "学年", "特別支援学級"]
REGISTER = [
    ["10000001", 2023, "123456", "E01", 3, "無"],
    ["10000003", 2023, "123457", "E01", 1, None],
]
ATT_HEADER = "学籍番号,学校コード,年度,欠席日数"
ATTENDANCE = ["123456,E01,2023,5", "123457,E01,2023,0"]
HH_HEADER = "宛名番号,世帯番号,続柄,異動日,世帯離脱日"
HOUSEHOLD = [
    "10000001,900001,長男,H27.4.1,",
    "10000004,900001,世帯主,2000/01/01,",
    "10000005,900002,01,S50.6.6,",
]
PII_STRINGS = [
    "山田太郎",
    "ヤマダタロウ",
    "丸の内",
    "梅田",
    "鈴木花子",
    "10000001",
    "10000002",
    "10000003",
    "123456",
    "900001",
]


def write_csv(
    path: Path, header: str, rows: list[str], encoding: str = "cp932", eol: str = "\r\n"
) -> Path:
    text = eol.join([header, *rows]) + eol
    data = text.encode(encoding)
    path.write_bytes(data)
    return path


def write_xlsx(path: Path, header: list, rows: list[list]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def make_city(raw: Path) -> Path:
    """A tiny clean city: CP932, UTF-8-with-BOM, plain UTF-8 and an .xlsx export."""
    raw.mkdir(parents=True, exist_ok=True)
    write_csv(raw / "住民記録_20240401.csv", RES_HEADER, RESIDENTS, "cp932")
    write_csv(raw / "乳幼児健診_20240401.csv", HC_HEADER, HEALTH, "utf-8-sig", eol="\n")
    write_xlsx(raw / "学齢簿_2023.xlsx", REG_HEADER, REGISTER)
    write_csv(raw / "出欠_2023.csv", ATT_HEADER, ATTENDANCE, "cp932")
    write_csv(raw / "世帯異動履歴.csv", HH_HEADER, HOUSEHOLD, "utf-8")
    return raw


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("MIMAMORI_KEY", raising=False)


@pytest.fixture
def city(tmp_path) -> dict:
    data = tmp_path / "data"
    raw = make_city(data / "raw")
    cfg = load_config(overrides={"run": {"data_dir": str(data), "synthetic": True}})
    return {"cfg": cfg, "data": data, "raw": raw, "mart": data / "mart"}


def rejects(mart: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(mart / "_rejects" / f"{table}.csv", dtype=str, keep_default_na=False)


# ----------------------------------------------------------------------------- clean city
def test_clean_city_reaches_the_mart_with_contract_dtypes(city):
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    schemas = load_schemas()
    for table in (
        "residents",
        "health_checkups",
        "school_register",
        "school_attendance",
        "household_history",
    ):
        t = report["tables"][table]
        assert t["rows_rejected"] == 0 and t["duplicates_dropped"] == 0, (table, t["reasons"])
        assert t["rows_in"] == t["rows_out"]
        df = pd.read_parquet(city["mart"] / f"{table}.parquet")
        assert list(df.columns) == [f.name for f in schemas[table].mart_fields]
        assert {c: str(d) for c, d in df.dtypes.items()} == {
            c: ("string" if d == "string" else d) for c, d in mart_dtypes(schemas[table]).items()
        }
        assert (rejects(city["mart"], table).columns.tolist()) == REJECT_COLUMNS
    assert report["key_source"] == "demo" and report["synthetic"] is True
    assert "allowances" in report["missing_tables"]  # optional table absent: reported, not fatal
    files = {f["file"]: f["encoding"] for t in report["tables"].values() for f in t["files"]}
    assert files["住民記録_20240401.csv"] == "cp932"
    assert files["乳幼児健診_20240401.csv"] == "utf-8-sig"
    assert files["世帯異動履歴.csv"] == "utf-8"
    assert files["学齢簿_2023.xlsx"] == "xlsx"
    audit = (city["data"] / "audit.log").read_text(encoding="utf-8").strip().splitlines()
    assert json.loads(audit[-1])["stage"] == "ingest"


def test_values_are_normalised_not_guessed(city):
    ingest_all(city["cfg"], city["raw"], city["mart"])
    res = pd.read_parquet(city["mart"] / "residents.parquet")
    key = b"mimamori-demo-key: synthetic data only, not secret"
    by = res.set_index("resident_code")
    third = by.loc[pseudonym("10000003", key, "resident")]  # full-width digits in the code
    assert third["sex"] == "male" and third["nationality"] == "foreign"
    fourth = by.loc[pseudonym("10000004", key, "resident")]  # 7-digit era code 5020115
    assert fourth["birth_date"] == pd.Timestamp("2020-01-01")
    assert fourth["move_out_date"] == pd.Timestamp("2023-03-01")
    hc = pd.read_parquet(city["mart"] / "health_checkups.parquet")
    assert sorted(hc["checkup_type"]) == ["m4", "y1m6", "y3"]
    cig = hc.set_index("checkup_type")["q_mother_cigarettes"]
    assert cig["y3"] == 0 and pd.isna(cig["y1m6"]) and cig["m4"] == 2  # 0 stays 0, blank stays null
    assert hc.set_index("checkup_type")["q_cooperation"].isna()["y1m6"]
    hh = pd.read_parquet(city["mart"] / "household_history.parquet")
    assert sorted(hh["relationship"]) == ["child", "head", "head"]


def test_no_raw_identifier_or_name_reaches_the_mart(city):
    ingest_all(city["cfg"], city["raw"], city["mart"])
    blobs = [(city["mart"] / "_ingest_report.json").read_text(encoding="utf-8")]
    for p in city["mart"].glob("*.parquet"):
        df = pd.read_parquet(p)
        blobs.append(" ".join(df.astype(str).to_numpy().ravel()) + " ".join(df.columns))
    text = "\n".join(blobs)
    for s in PII_STRINGS:
        assert s not in text, s
    res = pd.read_parquet(city["mart"] / "residents.parquet")
    assert res["resident_code"].str.fullmatch(r"[0-9a-f]{16}").all()


def test_pseudonyms_join_across_tables_and_birth_month_rule(city):
    ingest_all(city["cfg"], city["raw"], city["mart"])
    res = pd.read_parquet(city["mart"] / "residents.parquet")
    hc = pd.read_parquet(city["mart"] / "health_checkups.parquet")
    reg = pd.read_parquet(city["mart"] / "school_register.parquet")
    att = pd.read_parquet(city["mart"] / "school_attendance.parquet")
    hh = pd.read_parquet(city["mart"] / "household_history.parquet")
    assert set(hc["resident_code"]) <= set(res["resident_code"])
    assert set(reg["resident_code"]) <= set(res["resident_code"])
    assert set(hh["resident_code"]) <= set(res["resident_code"])
    assert set(att["student_id"]) == set(reg["student_id"])
    key = b"mimamori-demo-key: synthetic data only, not secret"
    born_april_first = res.set_index("resident_code").loc[
        pseudonym("10000001", key, "resident"), "birth_date"
    ]
    assert born_april_first == pd.Timestamp("2015-03-01")  # H27.4.1 → 2015-03-01
    assert (res["birth_date"].dt.day == 1).all()
    assert (hc["checkup_date"].dt.day == 1).all()


def test_same_key_same_pseudonyms_other_key_different(city, tmp_path, monkeypatch):
    ingest_all(city["cfg"], city["raw"], city["mart"])
    a = pd.read_parquet(city["mart"] / "residents.parquet")["resident_code"]
    ingest_all(city["cfg"], city["raw"], tmp_path / "mart2")
    b = pd.read_parquet(tmp_path / "mart2" / "residents.parquet")["resident_code"]
    assert a.tolist() == b.tolist()
    monkeypatch.setenv("MIMAMORI_KEY", "a-completely-different-secret-key-of-40b")
    report = ingest_all(city["cfg"], city["raw"], tmp_path / "mart3")
    c = pd.read_parquet(tmp_path / "mart3" / "residents.parquet")["resident_code"]
    assert report["key_source"] == "env"
    assert set(a).isdisjoint(set(c))


def test_rerun_skips_when_nothing_changed_and_redoes_when_an_input_changes(city):
    first = ingest_all(city["cfg"], city["raw"], city["mart"])
    second = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert second["skipped"] is True and second["skipped_reruns"] == 1
    assert second["fingerprint"] == first["fingerprint"]
    write_csv(
        city["raw"] / "出欠_2023.csv", ATT_HEADER, [*ATTENDANCE, "123456,E01,2022,9"], "cp932"
    )
    third = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert third["skipped"] is False
    assert third["tables"]["school_attendance"]["rows_out"] == 3


def test_correspondence_only_when_asked_and_only_in_private(city):
    ingest_all(city["cfg"], city["raw"], city["mart"])
    assert not (city["data"] / "private").exists()
    report = ingest_all(city["cfg"], city["raw"], city["mart"], write_correspondence=True)
    assert report["correspondence_written"] is True
    corr = pd.read_parquet(paths(city["cfg"]).correspondence)
    assert not list(city["mart"].rglob("correspondence*"))
    res = pd.read_parquet(city["mart"] / "residents.parquet")
    back = corr[corr["domain"] == "resident"].set_index("pseudonym")["code"]
    assert sorted(back[res["resident_code"]]) == sorted(
        ["10000001", "10000002", "10000003", "10000004", "10000005", "10000006"]
    )


def test_cli_main_uses_options(city, capsys):
    rc = main(city["cfg"], ["--raw-dir", str(city["raw"]), "--mart-dir", str(city["data"] / "m")])
    assert rc == 0
    assert (city["data"] / "m" / "residents.parquet").exists()
    assert "rows in" in capsys.readouterr().out


# ----------------------------------------------------------------------------- row rejects
BAD_RESIDENTS = {
    # source_row: (line, reason)   (header = row 1, first record = row 2)
    2: ("10000001,山田太郎,ヤマダタロウ,H27.4.1,男,日本,東京都,E01,,,", None),
    3: ("10000002,鈴木花子,スズキハナコ,令和5年2月30日,女,日本,大阪,E01,,,", "invalid_date"),
    4: ("10000003,a,b,R5.2.30,女,日本,c,E01,,,", "invalid_date"),
    5: ("10000004,a,b,R05/02/30,女,日本,c,E01,,,", "invalid_date"),
    6: ("10000005,a,b,平成32年1月1日,女,日本,c,E01,,,", "invalid_date"),
    7: ("10000006,a,b,H32.1.1,女,日本,c,E01,,,", "invalid_date"),
    8: ("10000007,a,b,4320101,女,日本,c,E01,,,", "invalid_date"),
    9: ("10000008,a,b,令和1年4月1日,女,日本,c,E01,,,", "invalid_date"),
    10: ("10000009,a,b,2023/02/29,女,日本,c,E01,,,", "invalid_date"),
    11: ("10000010,a,b,20230230,女,日本,c,E01,,,", "invalid_date"),
    12: ("10000011,a,b,昨日,女,日本,c,E01,,,", "invalid_date"),
    13: ("1000001X,a,b,2015/01/01,女,日本,c,E01,,,", "invalid_code"),
    14: ("1234,a,b,2015/01/01,女,日本,c,E01,,,", "invalid_code"),
    15: (",a,b,2015/01/01,女,日本,c,E01,,,", "missing_required"),
    16: ("10000012,a,b,,女,日本,c,E01,,,", "missing_required"),
    17: ("10000013,a,b,2015/01/01,X,日本,c,E01,,,", "unknown_enum"),
    18: ("10000014,a,b,2015/01/01,女,火星,c,E01,,,", "unknown_enum"),
    19: ("10000015,a,b,2015/01/01,女,日本,c,e-01,,,", None),  # optional: cell blanked, row kept
    20: ("10000016,a,b,2015/01/01,女,日本,c,E01,2016/01/01,,", None),
    21: ("10000016,a,b,2015/01/01,女,日本,c,E01,2016/01/01,,", "duplicate_exact"),
    22: ("10000017,a,b,2015/01/01,女,日本,c,E01,,,", "duplicate_conflict"),
    23: ("10000017,a,b,2015/01/02,女,日本,c,E01,,,", "duplicate_conflict"),
    24: ("10000018,a,b,2015/01/01,女,日本,c,E01,,,", None),
}


def test_every_row_reject_reason_for_residents(city):
    write_csv(
        city["raw"] / "住民記録_20240401.csv", RES_HEADER, [v[0] for v in BAD_RESIDENTS.values()]
    )
    write_csv(city["raw"] / "乳幼児健診_20240401.csv", HC_HEADER, [HEALTH[0]], "utf-8-sig")
    write_xlsx(city["raw"] / "学齢簿_2023.xlsx", REG_HEADER, [REGISTER[0]])
    write_csv(city["raw"] / "出欠_2023.csv", ATT_HEADER, [ATTENDANCE[0]])
    write_csv(city["raw"] / "世帯異動履歴.csv", HH_HEADER, [HOUSEHOLD[0]])
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    rej = rejects(city["mart"], "residents")
    got = rej.groupby("source_row")["reason"].agg(lambda s: sorted(set(s))).to_dict()
    want = {str(r): [reason] for r, (_line, reason) in BAD_RESIDENTS.items() if reason}
    assert got == want
    assert set(rej["reason"]) <= set(REASONS)
    t = report["tables"]["residents"]
    assert t["rows_in"] == len(BAD_RESIDENTS)
    assert t["duplicates_dropped"] == 1
    assert t["rows_rejected"] == len(want) - 1
    assert t["rows_out"] == 4
    assert t["reasons"]["invalid_date"] == 10
    # a bad optional cell is not a reason to lose the row: blanked, listed as a cell warning
    assert t["cell_warnings"] == {"invalid_code": 1}
    warn = pd.read_csv(city["mart"] / "_warnings" / "residents.csv", dtype=str)
    assert warn[["source_row", "column", "value", "reason"]].values.tolist() == [
        ["19", "school_district", "e-01", "invalid_code"]
    ]
    res = pd.read_parquet(city["mart"] / "residents.parquet")
    assert res["school_district"].isna().sum() == 1
    # the rejects name file, row, column, the raw value and a reason the analyst can act on
    row3 = rej[rej["source_row"] == "3"].iloc[0]
    assert (row3["file"], row3["column"], row3["value"]) == (
        "住民記録_20240401.csv",
        "birth_date",
        "令和5年2月30日",
    )
    assert "no such calendar day" in row3["detail"]
    assert "after the end of its era" in rej[rej["source_row"] == "6"].iloc[0]["detail"]
    assert "row 20" in rej[rej["source_row"] == "21"].iloc[0]["detail"]
    assert "birth_date" in rej[rej["source_row"] == "22"].iloc[0]["detail"]


def test_measurements_codes_and_orphans_in_linked_tables(city):
    write_csv(
        city["raw"] / "乳幼児健診_20240401.csv",
        HC_HEADER,
        [
            "10000001,3歳児健診,H30.4.10,14.2,95,有,無,0,1",  # 2 ok
            "10000002,1歳6か月,R3.11.5,-3,80,,,,1",  # 3 negative weight
            "10000003,4か月,R3.11.5,6,620,,,,1",  # 4 absurd height
            "10000001,1か月,R3.11.5,abc,50,,,,1",  # 5 not a number
            "10000001,4か月,R3.11.5,6.5,62,たぶん,,,1",  # 6 bool not yes/no
            "10000001,5歳児健診,R3.11.5,6.5,62,,,,1",  # 7 unknown checkup
            "99999999,1か月,R3.11.5,4.0,50,,,,1",  # 8 orphan resident
            "10000002,1か月,R3.11.5,4.0,50,,,1.5,1",  # 9 cigarettes not whole
            "10000002,3歳,R3.11.5,1,50,,,81,1",  # 10 cigarettes > 80
        ],
        "utf-8-sig",
    )
    write_csv(
        city["raw"] / "出欠_2023.csv",
        ATT_HEADER,
        ["123456,E01,2023,5", "123457,E01,2023,251", "999999,E01,2023,3", "123457,E01,2022,-1"],
    )
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    # a bad required field or key rejects the row ...
    hc = rejects(city["mart"], "health_checkups").set_index("source_row")
    assert hc["reason"].to_dict() == {"7": "unknown_enum", "8": "orphan_key"}
    # ... a bad optional field blanks the cell and keeps the row
    hw = pd.read_csv(city["mart"] / "_warnings" / "health_checkups.csv", dtype=str)
    hw = hw.set_index("source_row")
    assert hw["reason"].to_dict() == {
        "3": "out_of_range",
        "4": "out_of_range",
        "5": "invalid_number",
        "6": "unknown_enum",
        "9": "invalid_number",
        "10": "out_of_range",
    }
    assert hw.loc["3", "column"] == "weight_kg" and "below minimum 1" in hw.loc["3", "detail"]
    assert hw.loc["4", "column"] == "height_cm" and "above maximum 130" in hw.loc["4", "detail"]
    att = rejects(city["mart"], "school_attendance").set_index("source_row")
    assert att["reason"].to_dict() == {"4": "orphan_key"}
    aw = pd.read_csv(city["mart"] / "_warnings" / "school_attendance.csv", dtype=str)
    assert aw.set_index("source_row")["reason"].to_dict() == {
        "3": "out_of_range",
        "5": "out_of_range",
    }
    assert report["tables"]["school_attendance"]["references"]["student_id"]["orphans"] == 1
    t = report["tables"]["health_checkups"]
    assert t["rows_out"] == 7
    assert t["rows_in"] == t["rows_out"] + t["rows_rejected"] + t["duplicates_dropped"]
    assert t["cell_warnings"] == {"out_of_range": 3, "invalid_number": 2, "unknown_enum": 1}
    chk = pd.read_parquet(city["mart"] / "health_checkups.parquet")
    assert chk["weight_kg"].isna().sum() == 2 and chk["height_cm"].isna().sum() == 1


def test_a_rejected_resident_row_does_not_orphan_that_persons_records(city):
    lines = list(RESIDENTS)
    lines[0] = lines[0].replace("H27.4.1", "H27.2.30")
    write_csv(city["raw"] / "住民記録_20240401.csv", RES_HEADER, lines)
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert report["tables"]["residents"]["reasons"] == {"invalid_date": 1}
    assert report["tables"]["health_checkups"]["rows_rejected"] == 0


# ----------------------------------------------------------------------------- readers
def test_embedded_line_breaks_count_as_one_row(city):
    lines = [
        RESIDENTS[0],
        '10000002,"鈴木\n花子",ス,R2.5.3,女,日本,"大阪\r\n北区\n梅田",E01,,,',
        "10000003,x,y,R2.2.30,男,日本,z,E01,,,",
    ]
    write_csv(city["raw"] / "住民記録_20240401.csv", RES_HEADER, lines)
    ingest_all(city["cfg"], city["raw"], city["mart"])
    rej = rejects(city["mart"], "residents")
    assert rej["source_row"].tolist() == ["4"]


def test_mixed_line_endings_and_bom(city):
    text = (
        "\ufeff"
        + RES_HEADER
        + "\r\n"
        + RESIDENTS[0]
        + "\n"
        + RESIDENTS[2]
        + "\r"
        + RESIDENTS[3]
        + "\r\n"
        + "10000009,x,y,R2.2.30,男,日本,z,E01,,,\n"
    )
    (city["raw"] / "住民記録_20240401.csv").write_bytes(text.encode("utf-8"))
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    t = report["tables"]["residents"]
    assert t["files"][0]["encoding"] == "utf-8-sig"
    assert t["rows_in"] == 4 and t["rows_out"] == 3
    assert rejects(city["mart"], "residents")["source_row"].tolist() == ["5"]


def test_blank_lines_are_not_records_but_are_counted(city):
    text = RES_HEADER + "\r\n" + RESIDENTS[0] + "\r\n\r\n,,,,,,,,,,\r\n" + RESIDENTS[2] + "\r\n"
    (city["raw"] / "住民記録_20240401.csv").write_bytes(text.encode("cp932"))
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    f = report["tables"]["residents"]["files"][0]
    assert f["blank_rows_skipped"] == 2 and f["rows"] == 2


def test_headers_aliases_unknown_extra_missing_optional_and_header_map(city):
    schema = load_schema("residents")
    p = write_csv(
        city["raw"] / "residents.csv",
        "住民コード,性別,国籍,生年月日,謎の列,ＦＯＯ",
        ["10000001,1,1,2015-04-02,x,y"],
        "utf-8",
    )
    df = read_export(p, schema)
    assert df.attrs["unknown_headers"] == ["謎の列", "ＦＯＯ"]
    assert "address" in df.attrs["missing_optional_columns"]
    assert df["address"].isna().all() and df.loc[0, "resident_code"] == "10000001"
    assert df.loc[0, "source_row"] == 2
    p2 = write_csv(
        city["raw"] / "residents2.csv",
        "個人番号,性別,国籍,生年月日",
        ["10000001,1,1,2015-04-02"],
        "utf-8",
    )
    with pytest.raises(
        MimamoriError, match=r"residents2\.csv: missing required column.*resident_code"
    ):
        read_export(p2, schema)
    df2 = read_export(p2, schema, header_map={"個人番号": "resident_code"})
    assert df2.loc[0, "resident_code"] == "10000001"
    with pytest.raises(MimamoriError, match="unknown field"):
        read_export(p2, schema, header_map={"個人番号": "no_such_field"})


def test_two_columns_for_one_field_is_a_file_error(city):
    p = write_csv(
        city["raw"] / "residents.csv",
        "宛名番号,住民コード,性別,国籍,生年月日",
        ["10000001,10000001,1,1,2015-04-02"],
        "utf-8",
    )
    with pytest.raises(MimamoriError, match=r"both map to field 'resident_code'"):
        read_export(p, load_schema("residents"))


def test_header_matching_two_fields_is_a_file_error(tmp_path):
    from helpers.schema import parse_schema

    raw = yaml.safe_load(
        (Path(__file__).parents[2] / "data_schema" / "residents.yaml").read_text(encoding="utf-8")
    )
    raw["fields"][1]["aliases"] = ["住民コード"]  # name now also claims the resident code header
    schema = parse_schema(raw)
    p = write_csv(
        tmp_path / "residents.csv",
        "住民コード,性別,国籍,生年月日",
        ["10000001,1,1,2015-04-02"],
        "utf-8",
    )
    with pytest.raises(MimamoriError, match=r"matches several fields \['name', 'resident_code'\]"):
        read_export(p, schema)


def test_xlsx_cells_are_read_as_text(tmp_path):
    p = write_xlsx(
        tmp_path / "学齢簿.xlsx",
        REG_HEADER,
        [
            ["0010000001", 2023.0, 123456, "E01", 3, True],
            [10000002, 2023, "０１２３４５", "E01", 1, None],
        ],
    )
    df = read_export(p, load_schema("school_register"))
    assert df["resident_code"].tolist() == ["0010000001", "10000002"]
    assert df["fiscal_year"].tolist() == ["2023", "2023"]
    assert df["student_id"].tolist() == ["123456", "０１２３４５"]
    assert df["special_needs_class"].tolist() == ["true", ""]
    assert df["source_row"].tolist() == [2, 3]


def test_xlsx_date_cells_rich_text_and_gaps(tmp_path):
    import datetime as dt

    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["宛名番号", "生年月日", "性別", "国籍", "転入日"])
    ws.append(["10000001", dt.datetime(2015, 4, 1), "男", "日本", dt.date(2020, 8, 17)])
    ws.append([])  # an empty row keeps Excel's numbering for the next record
    ws.append(
        ["10000002", "R2.5.3", CellRichText(["女", TextBlock(InlineFont(b=True), "性")]), 2, None]
    )
    ws["B2"].number_format = "yyyy/mm/dd"
    ws["E2"].number_format = '[$-ja-JP]ggge"年"m"月"d"日"'
    p = tmp_path / "residents.xlsx"
    wb.save(p)
    df = read_export(p, load_schema("residents"))
    assert df["birth_date"].tolist() == ["2015-04-01", "R2.5.3"]
    assert df["move_in_date"].tolist() == ["2020-08-17", ""]
    assert df["sex"].tolist() == ["男", "女性"]
    assert df["source_row"].tolist() == [2, 4]
    assert df.attrs["blank_rows"] == 0


def test_file_without_a_header_row_does_not_echo_codes(city):
    write_csv(city["raw"] / "住民記録_20240401.csv", RESIDENTS[0], RESIDENTS[1:])
    with pytest.raises(MimamoriError, match="missing required column") as err:
        ingest_all(city["cfg"], city["raw"], city["mart"])
    assert "10000001" not in str(err.value)


# ----------------------------------------------------------------------------- whole-file errors
CORPUS_CASES = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CORPUS_CASES, ids=[c["file"] for c in CORPUS_CASES])
def test_corpus_file_errors(city, case):
    """Each corpus file replaces the city's export of its table and must stop ingest clearly."""
    src = CORPUS / case["file"]
    for old in city["raw"].iterdir():
        if old.is_file() and any(old.name.startswith(p) for p in case.get("replaces", [])):
            old.unlink()
    shutil.copy(src, city["raw"] / case["as"])
    cfg = city["cfg"]
    if case.get("encoding"):
        cfg = cfg.with_overrides({"ingest": {"encoding": {case["table"]: case["encoding"]}}})
    with pytest.raises(MimamoriError) as err:
        ingest_all(cfg, city["raw"], city["mart"])
    msg = str(err.value)
    assert case["as"] in msg
    for part in case["error"]:
        assert part in msg, msg
    assert not (city["mart"] / "_ingest_report.json").exists()


def test_missing_required_table_stops_but_optional_is_reported(city):
    (city["raw"] / "世帯異動履歴.csv").unlink()
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert "household_history" in report["missing_tables"]
    (city["raw"] / "住民記録_20240401.csv").unlink()
    with pytest.raises(MimamoriError, match="no export for required table residents"):
        ingest_all(city["cfg"], city["raw"], city["mart"], force=True)


def test_configured_encoding_override(city):
    write_csv(city["raw"] / "住民記録_20240401.csv", RES_HEADER, RESIDENTS, "utf-8")
    cfg = city["cfg"]
    cfg = cfg.with_overrides({"ingest": {"encoding": {"residents": "utf-8"}}})
    report = ingest_all(cfg, city["raw"], city["mart"])
    assert report["tables"]["residents"]["files"][0]["encoding"] == "utf-8"


def test_real_data_without_a_key_refuses_to_run(city):
    real = city["cfg"].with_overrides({"run": {"synthetic": False}})
    with pytest.raises(MimamoriError, match="MIMAMORI_KEY"):
        ingest_all(real, city["raw"], city["mart"])


# ----------------------------------------------------------------------------- validation unit
def test_validate_table_counts_reconcile_on_a_frame():
    schema = load_schema("vaccinations")
    raw = pd.DataFrame(
        {
            "resident_code": ["10000001", "10000001", "10000001", "10000002", "10000002", ""],
            "vaccine": ["Hib", "ヒブ", "MR", "BCG", "BCG", "Hib"],
            "dose": ["1", "1", "1", "1", "1", "1"],
            "vaccination_date": ["R2.1.1", "2020-01-01", "R2.1.1", "R2.1.1", "R2.2.1", "R2.1.1"],
        },
        dtype="string",
    )
    raw["source_file"] = "v.csv"
    raw["source_row"] = range(2, 8)
    res = validate_table(raw, schema)
    assert res.rows_in == 6
    assert res.duplicates_dropped == 1  # Hib/ヒブ and two date spellings are the same record
    assert res.rows_rejected == 3  # BCG key conflict (2 rows) + blank code
    assert len(res.valid) == 2
    assert res.rows_in == len(res.valid) + res.rows_rejected + res.duplicates_dropped


@pytest.mark.slow
def test_ingest_is_fast_on_a_large_table(tmp_path):
    """~150k vaccination rows read, validated and masked in a few seconds."""
    n = 150_000
    rng = np.random.default_rng(1)
    codes = (10_000_000 + rng.integers(0, 60_000, n)).astype(str)
    vacc = rng.choice(["Hib", "小児用肺炎球菌", "四種混合", "BCG", "MR"], n)
    dose = np.arange(n) // 60_000 + 1
    days = rng.integers(0, 2000, n)
    dates = (pd.Timestamp("2017-04-01") + pd.to_timedelta(days, "D")).strftime("%Y/%m/%d")
    df = pd.DataFrame({"宛名番号": codes, "ワクチン種類": vacc, "接種回数": dose, "接種日": dates})
    df = df.drop_duplicates(["宛名番号", "ワクチン種類", "接種回数"])
    raw = tmp_path / "raw"
    raw.mkdir()
    df.to_csv(raw / "予防接種.csv", index=False, encoding="cp932")
    write_csv(
        raw / "住民記録.csv",
        RES_HEADER,
        [f"{c},a,b,2015/01/01,男,日本,c,E01,,," for c in np.unique(codes)],
    )
    cfg = load_config(overrides={"run": {"data_dir": str(tmp_path), "synthetic": True}})
    report = ingest_all(cfg, raw, tmp_path / "mart")  # speed: `make bench`, not a test
    assert report["tables"]["vaccinations"]["rows_out"] == len(df)


# ----------------------------------------------------------------------------- quality figures
def test_quality_figures_from_the_mart(city):
    from helpers.ingest import quality

    lines = [*HEALTH, "10000001,1か月,H27.5.1,-1,50,,,,1"]
    write_csv(city["raw"] / "乳幼児健診_20240401.csv", HC_HEADER, lines, "utf-8-sig")
    write_csv(city["raw"] / "出欠_2023.csv", ATT_HEADER, [*ATTENDANCE, "123458,E01,2023,"])
    write_xlsx(
        city["raw"] / "学齢簿_2023.xlsx",
        REG_HEADER,
        [*REGISTER, ["10000006", 2023, "123458", "E01", 2, None]],
    )
    ingest_all(city["cfg"], city["raw"], city["mart"])
    report = quality.load_report(city["mart"])
    schemas = load_schemas()
    mart = quality.load_mart(city["mart"], list(schemas))
    summary = quality.table_summary(report).set_index("table")
    assert summary.loc["health_checkups", "rows_rejected"] == 0  # a bad weight blanks the cell
    assert summary.loc["health_checkups", "cells_blanked"] == 1
    cells = quality.cell_warning_counts(report)
    assert cells.query("table == 'health_checkups'")[
        ["column", "reason", "cells"]
    ].values.tolist() == [["weight_kg", "out_of_range", 1]]
    miss = quality.missingness(mart, schemas).set_index(["table", "column"])
    assert miss.loc[("health_checkups", "q_mother_cigarettes"), "zero"] == 1
    assert miss.loc[("health_checkups", "q_mother_cigarettes"), "blank_unknown"] == 2
    assert miss.loc[("residents", "move_out_date"), "blank_none"] == 5
    assert miss.loc[("school_attendance", "absence_days"), "blank_unknown"] == 1
    cov = quality.date_coverage(mart, schemas, [2017, 2018, 2019, 2020, 2021, 2022, 2023])
    assert (
        cov.set_index(["table", "column"]).loc[("health_checkups", "checkup_date"), "FY2018"] == 1
    )
    movers = quality.in_mover_share(mart["residents"], [2020, 2021]).set_index("fiscal_year")
    assert movers.loc[2021, "in_movers"] == 1 and movers.loc[2020, "in_movers"] == 0
    link = quality.linkage_rate(report).set_index("table")
    assert link.loc["school_attendance", "linkage_rate"] == 1.0  # via the school register
    assert link.loc["health_checkups", "linked"] == 4
    assert quality.fiscal_year(
        pd.Series(pd.to_datetime(["2023-03-31", "2023-04-01"]))
    ).tolist() == [2022, 2023]
    ms = quality.masking_summary(report)
    assert {"weight_kg", "height_cm", "absence_days"} <= set(ms["column"])
