"""名寄せ on tiny fixtures: standardisation, blocking, the model, one-to-one assignment with
twins, thresholds, the clerical round trip, bad inputs."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.config import LinkSettings, load_config
from helpers.link import clerical
from helpers.link.assign import assign
from helpers.link.model import blocking_rules, db_api
from helpers.link.stage import link_table, registry_frame
from helpers.link.standardise import address_parts, fold_kana, fold_kanji, split_name
from helpers.schema import parse_schema

SCHEMA = parse_schema(
    {
        "table": "t",
        "primary_key": [],
        "link_by": {"name": "nm", "name_kana": "kn", "birth_date": "bd", "sex": "sx"},
        "fields": [
            {
                "name": n,
                "title": n,
                "type": ty,
                "missing": "unknown",
                "pii": True,
                "masking": "drop",
            }
            for n, ty in (("nm", "string"), ("kn", "string"), ("bd", "date"), ("sx", "string"))
        ],
    }
)


def test_kana_and_kanji_folding() -> None:
    assert fold_kana("ユーキ") == fold_kana("ユウキ") == fold_kana("ﾕｰｷ") == fold_kana("ゆうき")
    assert fold_kana("コージ") == fold_kana("コウジ")
    assert fold_kana("ヴィクトル") == fold_kana("ビクトル")
    assert fold_kana("シヨウタ") == fold_kana("ショウタ")
    assert fold_kana("サトウ　ハナ") == fold_kana("サトウハナ")
    assert fold_kanji("髙橋　翔太") == fold_kanji("高橋 翔太") == "高橋翔太"
    assert fold_kanji("渡邊") == fold_kanji("渡邉") == fold_kanji("渡辺")
    assert fold_kanji("齋藤") == fold_kanji("斎藤") and fold_kanji("山﨑") == "山崎"
    assert fold_kana("タナカ") != fold_kana("タカナ")


def test_names_split_and_addresses() -> None:
    assert split_name("ナカムラ　タカシ") == ("ナカムラ", "タカシ")
    assert split_name("カトウタクヤ", frozenset({"カトオ"})) == ("カトオ", "タクヤ")
    assert split_name("カトウタクヤ") == (None, None)
    want = ("松原4", "松原4-27")
    for a in (
        "みまもり市松原4丁目27番22号　コーポ緑301",
        "松原4-27-22",
        "松原４丁目２７番地２２",
        "みまもり市松原4-27-22 メゾン桜101",
    ):
        assert address_parts(a) == want, a
    assert address_parts("松原4丁目28番1号") != want


def test_blocking_rules_skip_absent_columns_and_swap_both_ways() -> None:
    rules = blocking_rules(
        [["birth_date"], ["birth_swap"], ["address_block", "sex"]], {"birth_date", "sex"}
    )
    assert len(rules) == 3  # birth date, swap in both directions; address rule left out


def test_engine_setting_is_checked() -> None:
    with pytest.raises(MimamoriError, match="key 'link.engine'"):
        load_config(overrides={"link": {"engine": "oracle"}})
    with pytest.raises(MimamoriError, match="engine"):
        db_api(dataclasses.replace(LinkSettings(), engine="oracle"))  # type: ignore[arg-type]


def _registry() -> pd.DataFrame:
    rows = [
        ("100000001", "佐藤　陽翔", "サトウ　ハルト", "2012-05-03", "male"),
        ("100000002", "佐藤　蓮", "サトウ　レン", "2012-05-03", "male"),  # twin
        ("100000003", "鈴木　結衣", "スズキ　ユイ", "2011-01-20", "female"),
        ("100000004", "髙橋　葵", "タカハシ　アオイ", "2013-11-09", "female"),
        ("100000005", "田中　湊", "タナカ　ミナト", "2012-07-15", "male"),
    ]
    rng = np.random.default_rng(0)
    fam = ["イトウ", "ヤマダ", "コバヤシ", "ヨシダ", "ヤマモト", "ナカムラ", "マツモト", "イノウエ"]
    giv = ["ケンタ", "ユウマ", "ソウタ", "ヒナ", "メイ", "リン", "アヤ", "マコト", "ナオキ"]
    for i in range(400):
        d = pd.Timestamp("2009-01-01") + pd.Timedelta(days=int(rng.integers(0, 2500)))
        f, g = fam[i % len(fam)], giv[int(rng.integers(0, len(giv)))]
        rows.append(
            (
                str(200000000 + i),
                f"家{i}　名{i % 9}",
                f"{f}　{g}",
                d.date().isoformat(),
                "male" if rng.random() < 0.5 else "female",
            )
        )
    df = pd.DataFrame(rows, columns=["resident_code", "name", "name_kana", "birth_date", "sex"])
    df["birth_date"] = pd.to_datetime(df["birth_date"])
    df["address"] = None
    return df


def _source(registry: pd.DataFrame) -> pd.DataFrame:
    """Each registry child once, spelt a little differently, plus the twins and a stranger."""
    src = registry.iloc[5:].copy()
    src["name_kana"] = src["name_kana"].str.replace("　", " ")
    extra = pd.DataFrame(
        {
            "name": [
                "佐藤　陽翔",
                "佐藤 蓮",
                "鈴木　結衣",
                "高橋　葵",
                "田中　湊",
                "山田　太郎",
                "鈴木　結衣",
            ],
            "name_kana": [
                "ｻﾄｳ ﾊﾙﾄ",
                "サトウ　レン",
                "スズキ　ユイ",
                "タカハシアオイ",
                "タナカ　ミナト",
                "ヤマダ　タロウ",
                "スズキ　ユイ",
            ],
            "birth_date": pd.to_datetime(
                [
                    "2012-05-03",
                    "2012-05-03",
                    "2011-01-20",
                    "2013-11-09",
                    "2012-07-15",
                    "2012-02-02",
                    None,
                ]
            ),
            "sex": ["male", "male", "female", "female", "male", "male", "female"],
        }
    )
    src = pd.concat([src[extra.columns], extra], ignore_index=True)
    out = src.rename(columns={"name": "nm", "name_kana": "kn", "birth_date": "bd", "sex": "sx"})
    out["source_file"], out["source_row"] = "f.csv", np.arange(len(out)) + 2
    return out


@pytest.fixture(scope="module")
def linked() -> dict:
    cfg = load_config(overrides={"link": {"u_max_pairs": 20000}})
    reg = _registry()
    registry, surnames = registry_frame(reg)
    src = _source(reg)
    out = link_table(
        cfg, SCHEMA, src, registry, surnames, "fp", pd.DataFrame(columns=clerical.DECISION_COLUMNS)
    )
    out["src"], out["cfg"] = src, cfg
    return out


def _code_of(linked: dict, row: int) -> object:
    rid = linked["std"]["record_id"].iloc[row]
    return linked["result"].loc[rid, "resident_code"]


def test_twins_resolved_by_given_name_never_crossed(linked: dict) -> None:
    n = len(linked["src"])
    assert _code_of(linked, n - 7) == "100000001"  # half-width kana ｻﾄｳ ﾊﾙﾄ
    assert _code_of(linked, n - 6) == "100000002"  # the twin brother, same birth date


def test_variants_link_and_strangers_and_blank_birth_do_not(linked: dict) -> None:
    n = len(linked["src"])
    assert _code_of(linked, n - 4) == "100000004"  # 高/髙, no space in kana
    assert pd.isna(_code_of(linked, n - 2))  # not in the registry
    assert linked["pre"].iloc[n - 1] == "no_birth_date"  # unmatched with a reason, kept
    res = linked["result"]
    auto = res[res["decision"] == "auto"]
    assert auto.index.is_unique  # a record is one child at most
    truth = linked["src"].iloc[: n - 7]
    got = [_code_of(linked, i) for i in range(len(truth))]
    right = np.mean(
        [g == c for g, c in zip(got, _registry()["resident_code"].iloc[5:], strict=True)]
    )
    assert right > 0.97


def _pairs(weights: list[tuple[str, str, float, int, int]]) -> pd.DataFrame:
    df = pd.DataFrame(
        weights,
        columns=["record_id", "resident_code", "match_weight", "gamma_given_kana", "gamma_sex"],
    )
    df["match_probability"] = 1 / (1 + 2.0 ** (-df["match_weight"]))
    return df


def test_thresholds_margin_and_twin_rule() -> None:
    link = load_config().link
    none = pd.DataFrame(columns=clerical.DECISION_COLUMNS)
    pairs = _pairs(
        [
            ("a", "1", 20, 3, 1),
            ("b", "2", 3, 3, 1),
            ("c", "3", -5, 0, 0),
            ("d", "4", 15, 3, 1),
            ("d", "5", 14, 3, 1),  # twins alike: ambiguous
            ("e", "6", 15, 3, 1),
            ("e", "7", 13, 1, 1),
        ]
    )  # twin told by given name
    res = assign(pairs, pd.Index(["a", "b", "c", "d", "e", "f"]), link, none).set_index("record_id")
    assert res.loc["a", "decision"] == "auto" and res.loc["a", "resident_code"] == "1"
    assert res.loc["b", "reason"] == "clerical_pending" and res.loc["b", "pending"] == ["2"]
    assert res.loc["c", "reason"] == "below_threshold" and pd.isna(res.loc["c", "resident_code"])
    assert res.loc["d", "reason"] == "ambiguous" and sorted(res.loc["d", "pending"]) == ["4", "5"]
    assert res.loc["e", "resident_code"] == "6"
    assert res.loc["f", "reason"] == "no_candidate"
    # the same pairs in another order give the same result (never decided by order)
    again = assign(pairs.iloc[::-1], pd.Index(["a", "b", "c", "d", "e", "f"]), link, none)
    pd.testing.assert_frame_equal(again.set_index("record_id"), res)


def _pending() -> pd.DataFrame:
    rows = [("t", "rec1", "100", 0.8), ("t", "rec2", "200", 0.7), ("t", "rec2", "201", 0.6)]
    df = pd.DataFrame(rows, columns=["table", "record_id", "resident_code", "match_probability"])
    df["pair_id"] = [clerical.pair_id(*r[:3]) for r in rows]
    for c in clerical.SHOWN:
        df[c] = "x"
    return df


def _fill(book, answers: dict[int, str]) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(book)
    ws = wb.worksheets[0]
    col = [c.value for c in ws[1]].index(clerical.JUDGE) + 1
    for row, answer in answers.items():
        ws.cell(row=row, column=col, value=answer)
    wb.save(book)


def test_clerical_round_trip_and_decided_pairs_not_asked_again(tmp_path) -> None:
    book, man, dec = tmp_path / "r.xlsx", tmp_path / "p.parquet", tmp_path / "d.parquet"
    clerical.write_workbook(_pending(), book, man)
    assert oct(os.stat(book).st_mode & 0o777) == "0o600"
    _fill(book, {2: "同一", 3: "別人"})
    decided = clerical.collect(book, man, dec, "fp")
    assert sorted(decided["decision"]) == ["different", "same"]
    assert oct(os.stat(dec).st_mode & 0o777) == "0o600"
    link = load_config().link
    pairs = _pairs([("rec1", "100", 3, 3, 1), ("rec2", "200", 2, 3, 1), ("rec2", "201", 1.5, 3, 1)])
    res = assign(pairs, pd.Index(["rec1", "rec2"]), link, decided).set_index("record_id")
    assert res.loc["rec1", "decision"] == "clerical" and res.loc["rec1", "resident_code"] == "100"
    assert res.loc["rec2", "pending"] == ["201"]  # 200 was judged 別人: only 201 asked again
    # rerun: a new workbook with only the undecided pair; the decisions are still on file
    clerical.write_workbook(_pending().iloc[[2]], book, man)
    assert len(clerical.collect(book, man, dec, "fp")) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({2: ("ペアID", "zzz")}, "not a pair"),
        ({2: (clerical.JUDGE, "多分")}, "is not 同一 or 別人"),
        ({3: ("宛名番号", "999")}, "changed"),
    ],
)
def test_clerical_workbook_rejected_by_cell(tmp_path, change, message) -> None:
    from openpyxl import load_workbook

    book, man = tmp_path / "r.xlsx", tmp_path / "p.parquet"
    clerical.write_workbook(_pending(), book, man)
    wb = load_workbook(book)
    ws = wb.worksheets[0]
    head = [c.value for c in ws[1]]
    for row, (col, value) in change.items():
        ws.cell(row=row, column=head.index(col) + 1, value=value)
    wb.save(book)
    with pytest.raises(MimamoriError, match=message):
        clerical.read_workbook(book, man, "fp", "2024-04-01")


def test_clerical_missing_row_and_other_key_refused(tmp_path) -> None:
    from openpyxl import load_workbook

    book, man, dec = tmp_path / "r.xlsx", tmp_path / "p.parquet", tmp_path / "d.parquet"
    clerical.write_workbook(_pending(), book, man)
    wb = load_workbook(book)
    wb.worksheets[0].delete_rows(3)
    wb.save(book)
    with pytest.raises(MimamoriError, match="missing"):
        clerical.read_workbook(book, man, "fp", "2024-04-01")
    old = pd.DataFrame(
        [["t", "r", "1", "same", "2024-01-01", "otherkey"]], columns=clerical.DECISION_COLUMNS
    )
    clerical.save_decisions(old, dec)
    with pytest.raises(MimamoriError, match="different pseudonym key"):
        clerical.load_decisions(dec, "fp")


def test_source_without_any_identity_is_an_error() -> None:
    from helpers.link.stage import _check_fields

    blank = pd.DataFrame(
        {"nm": [None, None], "kn": [None, None], "bd": [pd.NaT, pd.NaT], "sx": [None, None]}
    )
    with pytest.raises(MimamoriError, match="none of its link_by fields"):
        _check_fields(blank, SCHEMA, ["f.csv"])


def test_spark_engine_runs_the_same_settings() -> None:
    pytest.importorskip(
        "pyspark",
        reason="pyspark is not installed: the Spark engine "
        "(config/link.yaml engine: spark) is not tested here",
    )
    import shutil

    if not shutil.which("java"):
        pytest.skip("Java is not installed: the Spark engine cannot start")
    cfg = load_config(overrides={"link": {"engine": "spark", "u_max_pairs": 20000}})
    reg = _registry()
    registry, surnames = registry_frame(reg)
    out = link_table(
        cfg,
        SCHEMA,
        _source(reg),
        registry,
        surnames,
        "fp",
        pd.DataFrame(columns=clerical.DECISION_COLUMNS),
    )
    assert (out["result"]["decision"] == "auto").mean() > 0.9
