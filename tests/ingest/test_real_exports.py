"""Exports written by other vendors (issue: real exports on the first try): register
vocabularies, value maps, bad cells versus bad rows, sentinels and formats, files that must not
lose rows silently, honest linkage, private files, a crash-safe and change-aware mart."""

from __future__ import annotations

import json
import os
import stat

import openpyxl
import pandas as pd
import pytest
import yaml

from helpers import MimamoriError
from helpers.exports import exports_manifest, write_manifest
from helpers.ingest import quality
from helpers.ingest.stage import ingest_all, main
from helpers.paths import paths
from helpers.schema import load_schemas

from .test_ingest import (
    HC_HEADER,
    HEALTH,
    HH_HEADER,
    RES_HEADER,
    RESIDENTS,
    make_city,
    rejects,
    write_csv,
)

CONS_HEADER = "相談番号,宛名番号,受付日,相談種別,相談経路,関係機関,YC判定,相談内容"
AL_HEADER = "宛名番号,手当種別,認定日,資格喪失日,月額"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("MIMAMORI_KEY", raising=False)


@pytest.fixture
def city(tmp_path) -> dict:
    from helpers.config import load_config

    data = tmp_path / "data"
    raw = make_city(data / "raw")
    cfg = load_config(overrides={"run": {"data_dir": str(data), "synthetic": True}})
    return {"cfg": cfg, "data": data, "raw": raw, "mart": data / "mart"}


def table(city, name) -> pd.DataFrame:
    return pd.read_parquet(city["mart"] / f"{name}.parquet")


def unmapped(report, table_name) -> set[str]:
    return {u["value"] for u in report["tables"][table_name]["unmapped_values"]}


# ----------------------------------------------------------------------------- vocabularies
def test_register_relationships_are_codes_not_unknown(city):
    rows = [
        "10000001,900001,妻の子,H27.4.1,",
        "10000004,900001,世帯主,2000/01/01,",
        "10000002,900001,未届の妻,2001/01/01,",
        "10000003,900001,子の妻,2001/01/01,",
        "10000005,900002,未届の夫,S50.6.6,",
        "10000006,900002,子の夫,2001/01/01,",
    ]
    write_csv(city["raw"] / "世帯異動履歴.csv", HH_HEADER, rows)
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert report["tables"]["household_history"]["rows_rejected"] == 0
    assert not unmapped(report, "household_history")
    rel = table(city, "household_history")["relationship"].tolist()
    assert rel == ["child", "head", "spouse", "child_in_law", "spouse", "child_in_law"]


def test_nationality_as_resident_type_or_country(city):
    lines = [
        r.replace(",日本,", ",日本人住民,").replace(",外国籍,", ",外国人住民,") for r in RESIDENTS
    ]
    lines[0] = lines[0].replace(",日本人住民,", ",ベトナム,")
    lines[3] = lines[3].replace(",日本人,", ",中国,")
    write_csv(city["raw"] / "住民記録_20240401.csv", RES_HEADER, lines)
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert report["tables"]["residents"]["rows_rejected"] == 0
    res = table(city, "residents")
    assert res["nationality"].tolist() == [
        "foreign",
        "japanese",
        "foreign",
        "foreign",
        "japanese",
        "japanese",
    ]


def test_yc_determination_written_as_gaitou_keeps_the_label(city):
    rows = [
        "1000001,10000001,R5.4.10,ヤングケアラー,学校,,該当,x",
        "1000002,10000002,R5.4.10,ヤングケアラー（疑い）,学校,,非該当,y",
        "1000003,10000003,R5.4.10,身体的虐待(疑い),警察,,,z",
    ]
    write_csv(city["raw"] / "相談記録_2024.csv", CONS_HEADER, rows, "utf-8-sig")
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert report["tables"]["consultations"]["rows_rejected"] == 0
    cons = table(city, "consultations")
    assert cons["young_carer_determined"].tolist()[:2] == [True, False]
    assert cons["consultation_type"].tolist() == ["young_carer", "young_carer", "physical_abuse"]


@pytest.mark.parametrize(
    "spelling, code",
    [
        ("1歳6ヶ月児健診", "y1m6"),
        ("1歳6カ月児健康診査", "y1m6"),
        ("3歳児健康診査", "y3"),
        ("１ヵ月児健診", "m1"),
        ("3〜4か月児健診", "m4"),
        ("1歳半健診", "y1m6"),
    ],
)
def test_checkup_names_in_their_common_spellings(city, spelling, code):
    write_csv(
        city["raw"] / "乳幼児健診_20240401.csv",
        HC_HEADER,
        [f"10000001,{spelling},H30.4.10,14.2,95.1,有,無,0,1"],
        "utf-8-sig",
    )
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert report["tables"]["health_checkups"]["rows_rejected"] == 0
    assert table(city, "health_checkups")["checkup_type"].tolist() == [code]


def test_every_schema_spelling_reaches_its_code():
    """No value listed in data_schema/ may be unknown_enum (and none fits two codes)."""
    from helpers.ingest.validate import parse_field

    for schema in load_schemas().values():
        for f in schema.fields:
            if f.type != "enum":
                continue
            spellings = [(s, v.code) for v in f.values for s in (v.code, v.label, *v.aliases)]
            parsed = parse_field(pd.Series([s for s, _ in spellings]), f)
            assert parsed.reason.isna().all(), (schema.table, f.name, parsed.unmapped)
            assert parsed.typed.tolist() == [c for _, c in spellings], (schema.table, f.name)


# ----------------------------------------------------------------------------- value maps
def test_value_map_absorbs_a_vendors_codes_and_wins_over_the_schema(city):
    rows = [
        "10000001,900001,K,H27.4.1,",
        "10000004,900001,01,2000/01/01,",
        "10000005,900002,01,S50.6.6,",
    ]
    write_csv(city["raw"] / "世帯異動履歴.csv", HH_HEADER, rows)
    cfg = city["cfg"].with_overrides(
        {
            "ingest": {
                "value_map": {
                    "household_history.relationship": {"K": "child", "01": "spouse"},
                    "health_checkups.q_cooperation": {"要": "true"},
                }
            }
        }
    )
    ingest_all(cfg, city["raw"], city["mart"])
    # '01' is the schema's alias of head; this vendor's 01 means spouse
    assert table(city, "household_history")["relationship"].tolist() == [
        "child",
        "spouse",
        "spouse",
    ]


@pytest.mark.parametrize(
    "value_map, words",
    [
        ({"household_history.nope": {"x": "child"}}, "not a table.field"),
        ({"residents.birth_date": {"x": "y"}}, "value maps are for enum"),
        ({"household_history.relationship": {"x": "cousin"}}, "not a code of relationship"),
        ({"consultations.young_carer_determined": {"x": "maybe"}}, "not yes/no"),
    ],
)
def test_a_wrong_value_map_is_a_clear_error(city, value_map, words):
    cfg = city["cfg"].with_overrides({"ingest": {"value_map": value_map}})
    with pytest.raises(MimamoriError, match=words) as err:
        ingest_all(cfg, city["raw"], city["mart"])
    assert "config/ingest.yaml" in str(err.value)


def test_unmapped_values_are_listed_and_a_starter_map_is_written(city, capsys):
    rows = [
        "10000001,900001,長男,H27.4.1,",
        "10000004,900001,世帯ぬし,2000/01/01,",
        "10000005,900002,世帯ぬし,S50.6.6,",
        "10000006,900002,世帯主（本人）,2001/1/1,",
    ]
    write_csv(city["raw"] / "世帯異動履歴.csv", HH_HEADER, rows)
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    listed = quality.unmapped_values(report)
    assert listed[["table", "field", "value", "rows"]].values.tolist() == [
        ["household_history", "relationship", "世帯ぬし", 2],
        ["household_history", "relationship", "世帯主(本人)", 1],
    ]  # width-folded
    assert set(listed["action"]) == {"row rejected"}  # relationship is required
    out = city["data"] / "suggested.yaml"
    assert main(city["cfg"], ["--suggest-map", str(out)]) == 0
    assert "2 unmapped value(s)" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    suggested = yaml.safe_load(text)["value_map"]["household_history.relationship"]
    assert suggested == {"世帯ぬし": "", "世帯主(本人)": "head"}  # a guess: shares 世帯主
    assert "codes: head, spouse" in text and "fill in" in text


# ----------------------------------------------------------------------------- cells vs rows
def test_bad_optional_cell_is_blanked_bad_required_cell_rejects_the_row(city):
    rows = [
        '10000001,1,H27.4.1,,"10,000円"',
        "10000002,2,H27.4.1,9999/12/31,abc円",
        "10000003,2,平31.04.31,,1000",
    ]
    write_csv(city["raw"] / "手当_2024.csv", AL_HEADER, rows)
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    t = report["tables"]["allowances"]
    assert t["rows_rejected"] == 1 and t["reasons"] == {"invalid_date": 1}  # start date required
    assert t["cell_warnings"] == {"invalid_number": 1}
    al = table(city, "allowances")
    assert al["monthly_amount"].tolist()[0] == 10000 and pd.isna(al["monthly_amount"].iloc[1])
    assert t["rows_in"] == t["rows_out"] + t["rows_rejected"] + t["duplicates_dropped"]


@pytest.mark.parametrize("sentinel", ["9999/12/31", "0000/00/00", "99999999", "9999-99-99", "－"])
def test_open_end_sentinels_mean_still_open(city, sentinel):
    rows = [f"10000001,900001,長男,H27.4.1,{sentinel}", "10000004,900001,世帯主,2000/01/01,"]
    write_csv(city["raw"] / "世帯異動履歴.csv", HH_HEADER, rows)
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    t = report["tables"]["household_history"]
    assert t["rows_rejected"] == 0 and t["open_end_sentinels"] == {"end_date": 1}
    assert table(city, "household_history")["end_date"].isna().all()


def test_a_sentinel_in_a_date_that_is_not_an_end_date_is_an_error(city):
    lines = [RESIDENTS[0].replace("H27.4.1", "99999999"), *RESIDENTS[1:]]
    write_csv(city["raw"] / "住民記録_20240401.csv", RES_HEADER, lines)
    ingest_all(city["cfg"], city["raw"], city["mart"])
    rej = rejects(city["mart"], "residents")
    assert rej["detail"].str.contains("open-end sentinel").any()


# ----------------------------------------------------------------------------- file shapes
def test_title_and_totals_lines_are_skipped_and_reported(city):
    text = (
        "住民記録一覧　令和6年3月31日現在\r\n\r\n"
        + RES_HEADER
        + "\r\n"
        + "\r\n".join(RESIDENTS)
        + "\r\n合計,6件\r\n"
    )
    (city["raw"] / "住民記録_20240401.csv").write_bytes(text.encode("cp932"))
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    f = report["tables"]["residents"]["files"][0]
    assert [r[1] for r in f["title_rows_skipped"]] == [1]
    assert [r[1] for r in f["footer_rows_skipped"]] == [10]
    assert report["tables"]["residents"]["rows_in"] == 6
    assert report["tables"]["residents"]["rows_rejected"] == 0


def test_title_lines_configured_when_the_header_cannot_be_found(city):
    # a renamed header: the header row cannot be recognised, skip_rows says where it is
    header = RES_HEADER.replace("宛名番号", "住民番号")
    text = "住民記録\r\n作成日 2024/04/01\r\n" + header + "\r\n" + "\r\n".join(RESIDENTS) + "\r\n"
    (city["raw"] / "住民記録_20240401.csv").write_bytes(text.encode("cp932"))
    cfg = city["cfg"].with_overrides(
        {
            "ingest": {
                "skip_rows": {"residents": 2},
                "header_map": {"residents": {"住民番号": "resident_code"}},
            }
        }
    )
    report = ingest_all(cfg, city["raw"], city["mart"])
    assert report["tables"]["residents"]["rows_out"] == 6


def test_missing_header_message_does_not_blame_the_encoding(city):
    text = "\r\n".join(["帳票名: 住民記録", *RESIDENTS]) + "\r\n"
    (city["raw"] / "住民記録_20240401.csv").write_bytes(text.encode("cp932"))
    with pytest.raises(MimamoriError) as err:
        ingest_all(city["cfg"], city["raw"], city["mart"])
    msg = str(err.value)
    assert "missing required column" in msg and "ingest.skip_rows.residents" in msg
    assert "encoding" not in msg


def test_a_file_cut_inside_a_quoted_memo_is_an_error_naming_the_record(city):
    rows = [
        f'{1000000 + i},10000001,R5.4.10,ヤングケアラー,学校,,該当,"メモ{i}\n2行目"'
        for i in range(1, 6)
    ]
    text = CONS_HEADER + "\n" + "\n".join(rows) + "\n"
    cut = text[: text.index("メモ4") + 2]  # cut inside record 4's quoted memo
    (city["raw"] / "相談記録_2024.csv").write_bytes(cut.encode("utf-8"))
    with pytest.raises(MimamoriError) as err:
        ingest_all(city["cfg"], city["raw"], city["mart"])
    msg = str(err.value)
    assert "相談記録_2024.csv" in msg and "row 5" in msg and "last complete record is row 4" in msg
    assert "truncated" in msg
    assert not city["mart"].exists()


def test_a_file_cut_mid_record_without_quotes_is_an_error(city):
    text = RES_HEADER + "\r\n" + "\r\n".join(RESIDENTS[:3]) + "\r\n" + RESIDENTS[3][:20]
    (city["raw"] / "住民記録_20240401.csv").write_bytes(text.encode("cp932"))
    with pytest.raises(MimamoriError, match=r"row 5 has .*cut off mid-record.* row 4"):
        ingest_all(city["cfg"], city["raw"], city["mart"])


def test_every_sheet_of_a_workbook_is_read(city):
    wb = openpyxl.Workbook()
    header = ["宛名番号", "年度", "学籍番号", "学校コード", "学年", "特別支援学級"]
    ws = wb.active
    ws.title = "2023年度"
    ws.append(["学齢簿 2023年度"])  # a title line on the first sheet
    ws.append(header)
    ws.append(["10000001", 2023, "123456", "E01", 3, "無"])
    ws2 = wb.create_sheet("2022年度")
    ws2.append(header)
    ws2.append(["10000003", 2022, "123457", "E01", 1, None])
    ws2.append(["10000003", 2023, "123457", "E01", 2, "有"])
    wb.create_sheet("空")  # an empty sheet is not a table
    wb.save(city["raw"] / "学齢簿_2023.xlsx")
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    t = report["tables"]["school_register"]
    assert t["rows_in"] == 3 and t["rows_out"] == 3
    assert t["files"][0]["sheets"] == ["学齢簿_2023.xlsx#2023年度", "学齢簿_2023.xlsx#2022年度"]


def test_sheets_that_disagree_are_an_error(city):
    wb = openpyxl.Workbook()
    wb.active.append(["宛名番号", "年度", "学籍番号", "学校コード", "学年"])
    wb.active.append(["10000001", 2023, "123456", "E01", 3])
    other = wb.create_sheet("集計")
    other.append(["宛名番号", "年度", "学籍番号", "学校コード", "学年", "特別支援学級"])
    other.append(["10000003", 2023, "123457", "E01", 1, "有"])
    wb.save(city["raw"] / "学齢簿_2023.xlsx")
    with pytest.raises(MimamoriError, match="hold different columns"):
        ingest_all(city["cfg"], city["raw"], city["mart"])


def test_an_xlsx_date_time_cell_keeps_its_date(city):
    import datetime as dt

    wb = openpyxl.Workbook()
    wb.active.append(["世帯番号", "保護開始日", "保護廃止日"])
    wb.active.append(["900001", dt.datetime(2021, 6, 30, 18, 45), None])
    wb.save(city["raw"] / "生活保護_2024.xlsx")
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert report["tables"]["public_assistance"]["rows_rejected"] == 0
    assert table(city, "public_assistance")["start_date"].tolist() == [pd.Timestamp("2021-06-01")]


def test_broken_links_and_unmatched_files_are_listed(city):
    (city["raw"] / "手当_2024.csv").symlink_to(city["raw"] / "gone.csv")
    (city["raw"] / "memo.txt").write_text("not an export")
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    assert report["broken_links"] == ["手当_2024.csv"]
    assert report["unmatched_files"] == ["memo.txt"]
    notes = quality.file_notes(report)
    assert {"not read: broken link", "not read: fits no table's file pattern"} <= set(notes["note"])


# ----------------------------------------------------------------------------- linkage
def test_linkage_rate_is_counted_before_orphans_are_rejected(city):
    lines = [*HEALTH, "99999999,1か月,R3.11.5,4.0,50,,,,1"]
    write_csv(city["raw"] / "乳幼児健診_20240401.csv", HC_HEADER, lines, "utf-8-sig")
    report = ingest_all(city["cfg"], city["raw"], city["mart"])
    link = quality.linkage_rate(report).set_index("table").loc["health_checkups"]
    assert (link["records"], link["linked"], link["not_found"]) == (4, 3, 1)
    assert link["linkage_rate"] == pytest.approx(0.75)
    assert report["tables"]["health_checkups"]["reasons"] == {"orphan_key": 1}


# ----------------------------------------------------------------------------- private data
def test_correspondence_to_reidentified_list_end_to_end(city, monkeypatch, tmp_path):
    """ingest --write-correspondence -> review reidentify, with no hand-made fixture."""
    from helpers.review.stage import reidentify

    monkeypatch.setenv("MIMAMORI_KEY", "0123456789abcdef0123456789abcdef-city")
    cfg = city["cfg"].with_overrides({"run": {"synthetic": False}})
    assert main(cfg, ["--write-correspondence"]) == 0
    P = paths(cfg)
    res = pd.read_parquet(P.mart_table("residents"))
    listing = pd.DataFrame({"child_id": res["resident_code"], "rank": range(len(res))})
    back = reidentify(listing, pd.read_parquet(P.correspondence))
    assert sorted(back["resident_code"]) == [f"1000000{i}" for i in range(1, 7)]
    assert stat.S_IMODE(os.stat(P.private).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(P.correspondence).st_mode) == 0o600
    assert not list(P.mart.rglob("correspondence*"))


# ----------------------------------------------------------------------------- crash safety
def test_a_failed_run_leaves_the_old_mart_whole(city, monkeypatch):
    from helpers.ingest import stage

    first = ingest_all(city["cfg"], city["raw"], city["mart"])
    before = {p.name: p.read_bytes() for p in city["mart"].rglob("*") if p.is_file()}
    write_csv(
        city["raw"] / "出欠_2023.csv", "学籍番号,学校コード,年度,欠席日数", ["123456,E01,2023,7"]
    )
    calls = {"n": 0}
    real = stage.finish_table

    def dies_on_the_third_table(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "finish_table", dies_on_the_third_table)
    with pytest.raises(KeyboardInterrupt) as err:
        ingest_all(city["cfg"], city["raw"], city["mart"])
    assert getattr(err.value, "outputs_clean", False)  # the CLI may say nothing was kept
    after = {p.name: p.read_bytes() for p in city["mart"].rglob("*") if p.is_file()}
    assert after == before
    assert not list(city["data"].glob(".mart*"))
    assert (
        json.loads((city["mart"] / "_ingest_report.json").read_text())["fingerprint"]
        == first["fingerprint"]
    )


def test_leftovers_of_a_killed_swap_are_recovered(city):
    from helpers.ingest.stage import recover_mart

    ingest_all(city["cfg"], city["raw"], city["mart"])
    old = city["data"] / ".mart.old-4242"
    city["mart"].rename(old)  # killed between the two renames: the old mart set aside
    (city["data"] / ".mart.new-4242").mkdir()
    recover_mart(city["mart"])
    assert (city["mart"] / "_ingest_report.json").exists()
    assert not list(city["data"].glob(".mart.*"))


def test_interrupt_message_only_when_nothing_was_kept(capsys, monkeypatch):
    from helpers import __main__ as cli

    def interrupted(cfg, argv, clean):
        exc = KeyboardInterrupt()
        if clean:
            exc.outputs_clean = True
        raise exc

    for clean, words in ((True, "no partial output was kept"), (False, "may be incomplete")):
        monkeypatch.setattr(
            "helpers.ingest.stage.main", lambda cfg, argv, c=clean: interrupted(cfg, argv, c)
        )
        assert cli.main(["ingest"]) == 130
        err = capsys.readouterr().err
        assert words in err
        if not clean:
            assert "no partial output was kept" not in err


# ----------------------------------------------------------------------------- manifest
def test_manifest_changes_exactly_when_the_exports_do(city):
    schemas = load_schemas()
    path = city["data"] / "manifest.json"
    assert write_manifest(city["raw"], schemas, path) is True
    mtime = path.stat().st_mtime_ns
    assert write_manifest(city["raw"], schemas, path) is False  # nothing changed
    target = city["raw"] / "出欠_2023.csv"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same content
    assert write_manifest(city["raw"], schemas, path) is False
    assert path.stat().st_mtime_ns == mtime
    # back-dated: same size, other content, modification time set back to an old date
    data = target.read_bytes()
    target.write_bytes(data.replace(b"2023,5", b"2023,6"))
    os.utime(target, (1_000_000_000, 1_000_000_000))
    assert write_manifest(city["raw"], schemas, path) is True
    (city["raw"] / "手当_2024.csv").write_bytes(AL_HEADER.encode("cp932") + b"\r\n")  # added
    assert write_manifest(city["raw"], schemas, path) is True
    (city["raw"] / "手当_2024.csv").unlink()  # removed
    assert write_manifest(city["raw"], schemas, path) is True
    names = [e["file"] for e in exports_manifest(city["raw"], schemas)["exports"]]
    assert "出欠_2023.csv" in names and "手当_2024.csv" not in names


def test_ingest_writes_the_manifest_before_the_mart(city):
    P = paths(city["cfg"])
    ingest_all(city["cfg"], P.raw, P.mart)
    assert P.exports_manifest.exists()
    assert P.exports_manifest.stat().st_mtime_ns <= P.ingest_report.stat().st_mtime_ns
