"""Write the clean tables the way each department's system would, and plant known defects.

Vendors differ: headers are the schema title or an alias, enums arrive as label, code or a
numeric alias, dates as Western or Japanese-era text (令和5年4月1日, R05.04.01, 5050401), cells
carry full-width digits and spaces, free text has line breaks, amounts have thousands
separators. Each planted defect is listed in ``_truth/defects.csv`` with the spreadsheet row
(header = 1, or 2 below a title line; ``file#sheet`` in a workbook of several sheets) and what
ingest must do with it (``action``: reject_row, blank_cell or drop_duplicate), so ingest's
rejects and cell warnings can be checked row by row.

``synth.dialect`` chooses the vendor: ``default``, or ``vendor_b``, a second vendor writing the
same city (same seed, same records, same defects) with other column titles, the resident
register's own vocabularies (未届の妻, 国籍 as countries, 該当/非該当, 1歳6ヶ月児健康診査 ...),
one-kanji era dates (平31.04.30) and 8-digit dates, open-end sentinels (9999/12/31, 99999999,
0000/00/00), title and totals lines, a workbook spread over two sheets, an .xlsx date-time
column and other encodings. Ingest must read both into the same mart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers.io import atomic_path, save_workbook
from helpers.schema import Field, TableSchema
from helpers.synth.population import dates_of, rng_for, ymd

FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
EPOCH = np.datetime64("1970-01-01")
DEFECT_COLUMNS = ["file", "table", "source_row", "column", "defect", "reason", "action"]

# How each department's system writes its export.
EXPORTS: dict[str, dict] = {
    "residents": {
        "file": "住民記録_{stamp}.csv",
        "encoding": "cp932",
        "dates": "slash",
        "enum": {"sex": "alias", "nationality": "label"},
        "headers": {
            "resident_code": "住民コード",
            "name_kana": "カナ氏名",
            "move_in_date": "住定日",
        },
        "fullwidth": ["address", "resident_code"],
    },
    "household_history": {
        "file": "世帯異動履歴_{stamp}.csv",
        "encoding": "cp932",
        "dates": "dash",
        "enum": {"relationship": "kinship"},
        "headers": {"household_code": "世帯コード"},
    },
    "birth_status": {
        "file": "出生時の状況_{stamp}.csv",
        "encoding": "cp932",
        "bool": ("有", "無"),
        "fullwidth": ["birth_weight_g"],
    },
    "health_checkups": {
        "file": "乳幼児健診_{stamp}.csv",
        "encoding": "cp932",
        "dates": "era_kanji",
        "enum": {"checkup_type": "label", "result": "alias"},
        "bool": ("はい", "いいえ"),
        "headers": {"q_mother_cigarettes": "母喫煙本数"},
        "fullwidth": ["checkup_date"],
    },
    "vaccinations": {
        "file": "予防接種_{stamp}.csv",
        "encoding": "utf-8-sig",
        "dates": "era_short",
        "enum": {"vaccine": "label"},
        "headers": {"dose": "接種回数"},
    },
    "nursery_enrolment": {
        "file": "保育所等入所_{stamp}.csv",
        "encoding": "cp932",
        "dates": "slash",
        "enum": {"facility_type": "alias"},
    },
    "school_register": {
        "file": "学齢簿_{stamp}.csv",
        "encoding": "cp932",
        "dates": "slash",
        "bool": ("○", ""),
        "fullwidth": ["grade"],
    },
    "school_attendance": {
        "file": "出欠状況_{stamp}.csv",
        "encoding": "utf-8-sig",
        "headers": {"student_id": "児童生徒番号"},
    },
    "school_aid": {
        "file": "就学援助_{stamp}.csv",
        "encoding": "cp932",
        "dates": "era_code",
        "enum": {"aid_type": "label"},
    },
    "allowances": {
        "file": "手当_{stamp}.csv",
        "encoding": "cp932",
        "dates": "era_kanji",
        "enum": {"allowance_type": "alias"},
        "thousands": ["monthly_amount"],
        "headers": {"resident_code": "宛名番号", "start_date": "認定年月日"},
    },
    "public_assistance": {"file": "public_assistance_{stamp}.xlsx", "format": "xlsx"},
    "long_term_care": {
        "file": "介護保険_認定_{stamp}.csv",
        "encoding": "cp932",
        "dates": "era_code",
        "enum": {"care_level": "alias"},
        "headers": {"care_level": "要介護状態区分"},
    },
    "disability_handbooks": {
        "file": "障害者手帳_{stamp}.csv",
        "encoding": "cp932",
        "dates": "dash",
        "enum": {"handbook_type": "label", "grade": "label"},
    },
    "independence_support": {
        "file": "自立支援医療_{stamp}.csv",
        "encoding": "cp932",
        "dates": "era_kanji",
        "enum": {"kind": "label"},
    },
    "consultations": {
        "file": "相談記録_{stamp}.csv",
        "encoding": "utf-8-sig",
        "dates": "slash",
        "enum": {"consultation_type": "label", "referral_route": "alias"},
        "bool": ("有", "無"),
        "headers": {"consultation_id": "受付番号", "consultation_type": "主訴"},
    },
    "progress_records": {
        "file": "経過記録_{stamp}.csv",
        "encoding": "utf-8-sig",
        "dates": "dash",
        "enum": {"assessment": "label"},
    },
    "case_conference": {
        "file": "case_conference_{stamp}.xlsx",
        "format": "xlsx",
        "enum": {"level": "code"},
    },
}

# A second vendor writing the same city (see the module docstring).
VENDOR_B: dict[str, dict] = {
    "residents": {
        "file": "住民記録一覧_{stamp}.csv",
        "encoding": "utf-8-sig",
        "dates": "era_abbrev",
        "title": "住民記録一覧（{asof}現在）",
        "footer": True,
        "open_end": "0000/00/00",
        "enum": {"sex": "spell", "nationality": "country"},
        "spell": {"sex": {"male": "男性", "female": "女性"}},
        "headers": {
            "resident_code": "個人コード",
            "name": "漢字氏名",
            "name_kana": "フリガナ",
            "nationality": "国籍区分",
            "address": "現住所",
            "school_district": "校区",
            "move_in_date": "転入年月日",
            "move_out_date": "転出年月日",
            "death_date": "死亡年月日",
        },
        "fullwidth": ["address", "resident_code"],
    },
    "household_history": {
        "file": "世帯異動履歴_{stamp}.csv",
        "encoding": "cp932",
        "dates": "compact",
        "enum": {"relationship": "register"},
        "open_end": "99999999",
        "headers": {
            "relationship": "世帯主との続柄",
            "start_date": "世帯加入日",
            "end_date": "終了日",
        },
    },
    "birth_status": {
        "file": "出生時の状況_{stamp}.csv",
        "encoding": "utf-8",
        "bool": ("有り", "無し"),
        "headers": {
            "birth_weight_g": "出生時体重",
            "head_circumference_cm": "頭囲",
            "multiple_birth": "多胎児",
        },
        "fullwidth": ["birth_weight_g"],
    },
    "health_checkups": {
        "file": "乳幼児健診結果_{stamp}.csv",
        "encoding": "utf-8-sig",
        "dates": "era_abbrev",
        "title": "乳幼児健康診査 受診者一覧",
        "enum": {"checkup_type": "spell", "result": "spell"},
        "bool": ("○", "×"),
        "spell": {
            "checkup_type": {
                "m1": "1ヶ月児健康診査",
                "m4": "3～4ヶ月児健診",
                "y1m6": "1歳6ヶ月児健康診査",
                "y3": "3歳児健康診査",
            },
            "result": {
                "normal": "問題なし",
                "observe": "要観察",
                "refer": "要精検",
                "treat": "要治療",
            },
        },
        "headers": {
            "checkup_type": "健診区分",
            "checkup_date": "健診日",
            "q_cooperation": "育児協力者",
            "q_difficulty": "育てにくさ",
            "result": "健診結果",
        },
        "fullwidth": ["checkup_date"],
    },
    "vaccinations": {
        "file": "予防接種_{stamp}.csv",
        "encoding": "cp932",
        "dates": "slash",
        "enum": {"vaccine": "spell"},
        "spell": {
            "vaccine": {
                "hib": "ヒブ",
                "pcv": "小児肺炎球菌",
                "hepb": "HBV",
                "dpt_ipv": "4種混合",
                "bcg": "BCG",
                "mr": "MR混合",
                "varicella": "水ぼうそう",
                "je": "日脳",
            }
        },
        "headers": {"vaccine": "接種種類", "dose": "期別", "vaccination_date": "接種年月日"},
    },
    "nursery_enrolment": {
        "file": "保育所等入所_{stamp}.xlsx",
        "format": "xlsx",
        "sheets": 2,
        "enum": {"facility_type": "spell"},
        "open_end": "9999/12/31",
        "spell": {
            "facility_type": {
                "nursery": "認可保育所",
                "kindergarten": "幼稚園",
                "certified_centre": "幼保連携型認定こども園",
                "small_nursery": "小規模保育事業",
            }
        },
        "headers": {"start_date": "入園日", "end_date": "退園日"},
    },
    "school_register": {
        "file": "学齢簿_{stamp}.csv",
        "encoding": "utf-8",
        "title": "学齢簿",
        "bool": ("該当", ""),
        "fullwidth": ["grade"],
        "headers": {
            "student_id": "児童生徒番号",
            "school_code": "在籍校コード",
            "special_needs_class": "特別支援学級在籍",
        },
    },
    "school_attendance": {"file": "出欠状況_{stamp}.csv", "encoding": "cp932", "footer": True},
    "school_aid": {
        "file": "就学援助_{stamp}.csv",
        "encoding": "utf-8-sig",
        "dates": "era_kanji",
        "enum": {"aid_type": "spell"},
        "spell": {
            "aid_type": {"protected": "要保護児童生徒", "quasi_protected": "準要保護児童生徒"}
        },
        "headers": {"approved_date": "認定年月日"},
    },
    "allowances": {
        "file": "手当受給者_{stamp}.csv",
        "encoding": "utf-8-sig",
        "dates": "era_abbrev",
        "enum": {"allowance_type": "spell"},
        "yen": ["monthly_amount"],
        "footer": True,
        "open_end": "9999/12/31",
        "spell": {
            "allowance_type": {
                "child_allowance": "児童手当",
                "child_rearing": "児扶手",
                "special_child_rearing": "特児",
                "single_parent_medical": "ひとり親家庭等医療費助成",
            }
        },
        "headers": {"start_date": "資格取得日", "end_date": "喪失日", "monthly_amount": "支給月額"},
    },
    "public_assistance": {
        "file": "生活保護_{stamp}.csv",
        "encoding": "cp932",
        "dates": "era_code",
        "open_end": "9999999",
        "headers": {"household_code": "世帯コード", "start_date": "開始日", "end_date": "廃止日"},
    },
    "long_term_care": {
        "file": "介護保険_認定_{stamp}.csv",
        "encoding": "utf-8-sig",
        "dates": "era_abbrev",
        "enum": {"care_level": "spell"},
        "open_end": "0000/00/00",
        "spell": {
            "care_level": {
                "support_1": "要支援１",
                "support_2": "要支援２",
                "care_1": "要介護１",
                "care_2": "要介護２",
                "care_3": "要介護３",
                "care_4": "要介護４",
                "care_5": "要介護５",
            }
        },
        "headers": {"certified_date": "認定年月日", "loss_date": "資格喪失日"},
    },
    "disability_handbooks": {
        "file": "障害者手帳_{stamp}.csv",
        "encoding": "utf-8",
        "dates": "slash",
        "enum": {"handbook_type": "spell", "grade": "spell"},
        "open_end": "9999-99-99",
        "spell": {
            "handbook_type": {"physical": "身障手帳", "mental": "精神手帳", "rehab": "愛の手帳"},
            "grade": {
                "1": "一級",
                "2": "二級",
                "3": "三級",
                "4": "四級",
                "5": "五級",
                "6": "六級",
                "A": "Ａ判定",
                "B": "B判定",
            },
        },
        "headers": {"grade": "障害程度", "issue_date": "交付年月日", "end_date": "返還年月日"},
    },
    "independence_support": {
        "file": "自立支援医療_{stamp}.csv",
        "encoding": "utf-8-sig",
        "dates": "era_kanji",
        "enum": {"kind": "spell"},
        "open_end": "9999年12月31日",
        "spell": {
            "kind": {
                "mental_outpatient": "自立支援医療（精神通院）",
                "rehabilitation": "自立支援医療（更生医療）",
                "development": "自立支援医療（育成医療）",
            }
        },
        "headers": {"start_date": "開始日", "end_date": "終了日"},
    },
    "consultations": {
        "file": "相談受付簿_{stamp}.csv",
        "encoding": "cp932",
        "dates": "era_abbrev",
        "enum": {"consultation_type": "spell", "referral_route": "spell"},
        "bool": ("該当", "非該当"),
        "spell": {
            "consultation_type": {
                "physical_abuse": ["身体的虐待", "身体的虐待（疑い）"],
                "neglect": ["ネグレクト", "ネグレクト（疑い）"],
                "psychological_abuse": "心理的虐待",
                "sexual_abuse": "性的虐待",
                "young_carer": ["ヤングケアラー", "ヤングケアラー（疑い）"],
                "school_refusal": "不登校",
                "development": "発達相談",
                "parenting": "養育相談",
                "poverty": "生活困窮",
                "other": "その他",
            },
            "referral_route": {
                "school": "学校等",
                "nursery": "保育所",
                "health_centre": "保健センター",
                "police": "警察",
                "neighbour": "近隣知人",
                "family": "家族",
                "self": "児童本人",
                "medical": "病院",
                "other": "その他",
            },
        },
        "headers": {
            "consultation_id": "ケース番号",
            "received_date": "受付年月日",
            "young_carer_determined": "YC判定",
            "memo": "主訴内容",
        },
    },
    "progress_records": {
        "file": "経過記録_{stamp}.csv",
        "encoding": "utf-8",
        "dates": "compact",
        "enum": {"assessment": "spell"},
        "spell": {"assessment": {"good": "良好", "fair": "変化なし", "poor": "悪化"}},
        "headers": {"record_date": "記録年月日", "note": "経過"},
    },
    "case_conference": {
        "file": "要対協ケース_{stamp}.xlsx",
        "format": "xlsx",
        "title": "要保護児童対策地域協議会 ケース一覧",
        "time_of_day": True,
        "enum": {"level": "spell"},
        "open_end": "9999/12/31",
        "spell": {
            "level": {"protection": "要保護", "support": "要支援", "specified_pregnant": "特定妊婦"}
        },
        "headers": {"registered_date": "登録年月日"},
    },
}
DIALECTS = {"default": EXPORTS, "vendor_b": VENDOR_B}
# 国籍 as the register writes it for a foreign resident: the country (地域)
COUNTRIES = (
    "中国",
    "韓国",
    "ベトナム",
    "フィリピン",
    "ブラジル",
    "ネパール",
    "インドネシア",
    "米国",
    "タイ",
    "ペルー",
    "台湾",
    "ミャンマー",
)
SHEET_NAME = "データ{i}"

OUT_OF_RANGE = {
    "weight_kg": 400.0,
    "height_cm": 300.0,
    "birth_weight_g": 9999,
    "head_circumference_cm": 80.0,
    "gestational_weeks": 60,
    "q_mother_cigarettes": 120,
    "absence_days": -3,
    "monthly_amount": 900000,
    "grade": 12,
    "dose": 9,
}
IMPOSSIBLE = {
    "slash": ["2023/02/30", "2021/13/01"],
    "dash": ["2023-02-30", "2022-04-31"],
    "era_kanji": ["令和5年2月30日", "平成32年1月1日"],
    "era_short": ["R05.02.30", "H32.01.01"],
    "era_code": ["5050230", "4320101"],
    "xlsx": ["2023/02/30", "2022/04/31"],
    "era_abbrev": ["令05.02.30", "平32.01.01"],
    "compact": ["20230230", "20221301"],
}


# ---------------------------------------------------------------- value rendering
# (kanji, letter, 7-digit code, first day as yyyymmdd), newest first
_ERAS = (
    ("令和", "R", 5, 20190501),
    ("平成", "H", 4, 19890108),
    ("昭和", "S", 3, 19261225),
    ("大正", "T", 2, 19120730),
    ("明治", "M", 1, 18680101),
)


def _era_parts(ymd8: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Era kanji, letter, digit and era year of each yyyymmdd (明治 to 令和)."""
    kanji = np.full(len(ymd8), "明治", dtype=object)
    letter = np.full(len(ymd8), "M", dtype=object)
    digit = np.ones(len(ymd8), dtype=np.int64)
    start_year = np.full(len(ymd8), 1868, dtype=np.int64)
    for k, l_, d, start in reversed(_ERAS[:-1]):  # oldest first: later eras overwrite
        on = ymd8 >= start
        kanji[on], letter[on], digit[on], start_year[on] = k, l_, d, start // 10000
    return kanji, letter, digit, ymd8 // 10000 - start_year + 1


def format_dates(days: pd.Series, style: str) -> pd.Series:
    """Integer days (NA = blank) as text in one vendor style."""
    v = pd.array(days, dtype="Int64")
    out = pd.Series([None] * len(v), index=days.index, dtype=object)
    ok = ~pd.isna(v)
    if not ok.any():
        return out
    y, m, d = ymd(np.asarray(v[ok], dtype="int64"))
    ymd8 = y * 10000 + m * 100 + d
    txt8 = pd.Series(ymd8).astype(str)
    if style in ("slash", "dash"):
        sep = "/" if style == "slash" else "-"
        out[ok] = (txt8.str[:4] + sep + txt8.str[4:6] + sep + txt8.str[6:8]).to_numpy()
        return out
    if style == "compact":
        out[ok] = txt8.to_numpy()
        return out
    kanji, letter, digit, ey = _era_parts(ymd8)
    two = pd.Series(1_000_000 + ey * 10000 + m * 100 + d).astype(str)  # "1yymmdd"
    if style == "era_kanji":
        yy = pd.Series(ey).astype(str).where(ey != 1, "元")
        txt = (
            pd.Series(kanji)
            + yy
            + "年"
            + pd.Series(m).astype(str)
            + "月"
            + pd.Series(d).astype(str)
            + "日"
        )
    elif style == "era_short":
        txt = pd.Series(letter) + two.str[1:3] + "." + two.str[3:5] + "." + two.str[5:7]
    elif style == "era_abbrev":  # 平31.04.30: the era's first kanji
        txt = pd.Series(kanji).str[0] + two.str[1:3] + "." + two.str[3:5] + "." + two.str[5:7]
    elif style == "era_code":
        txt = pd.Series(digit * 1_000_000 + ey * 10_000 + m * 100 + d).astype(str)
    else:
        raise ValueError(style)
    out[ok] = txt.to_numpy()
    return out


def _choice_rng(spec: dict, field: Field) -> np.random.Generator:
    """The dialect's own stream per column: its spelling choices never shift the city's."""
    return rng_for(spec.get("_seed", 0), f"dialect:{spec.get('_table', '')}:{field.name}")


def _spell(field: Field, codes: pd.Series, spellings: dict, rng: np.random.Generator) -> pd.Series:
    """Explicit spellings per code; a list means the vendor writes any of them."""
    out = pd.Series(None, index=codes.index, dtype=object)
    pick = rng.random(len(codes))
    for code, spelling in spellings.items():
        hit = (codes == code).to_numpy()
        if isinstance(spelling, list):
            out[hit] = np.asarray(spelling, dtype=object)[(pick[hit] * len(spelling)).astype(int)]
        else:
            out[hit] = spelling
    missing = codes.notna() & out.isna()
    out[missing] = codes[missing].map(field.enum_labels())
    return out


def _kinship(
    codes: pd.Series, out: pd.Series, extra: pd.DataFrame, register: bool, rng: np.random.Generator
) -> pd.Series:
    """続柄 as registers write it: 長男/長女 (or 子), 夫/妻 (some 未届の夫/未届の妻), 父/母."""
    sex = extra["_sex"]
    male = (sex == "male").to_numpy()
    if register:
        kid = pd.Series("子", index=codes.index)
        unregistered = rng.random(len(codes)) < 0.1
        spouse = np.where(
            male, np.where(unregistered, "未届の夫", "夫"), np.where(unregistered, "未届の妻", "妻")
        )
    else:
        order = extra["_order"].clip(1, 3)
        kid = pd.Series(
            np.where(
                male,
                order.map({1: "長男", 2: "二男", 3: "三男"}),
                order.map({1: "長女", 2: "二女", 3: "三女"}),
            ),
            index=codes.index,
        )
        spouse = np.where(male, "夫", "妻")
    out = out.where(codes != "child", kid)
    out = out.where(codes != "spouse", spouse)
    return out.where(codes != "parent", np.where(male, "父", "母"))


def _enum_render(
    field: Field, codes: pd.Series, style: str, extra: pd.DataFrame | None, spec: dict | None = None
) -> pd.Series:
    spec = spec or {}
    labels = field.enum_labels()
    if style == "code":
        mapping = {v.code: v.code for v in field.values}
    elif style == "alias":
        mapping = {v.code: (v.aliases[0] if v.aliases else v.label) for v in field.values}
    else:
        mapping = labels
    out = codes.map(mapping)
    if style == "spell":
        out = _spell(
            field, codes, spec.get("spell", {}).get(field.name, {}), _choice_rng(spec, field)
        )
    elif style == "country":  # 日本 / the country of a foreign resident
        pick = _choice_rng(spec, field).integers(0, len(COUNTRIES), len(codes))
        out = out.where(
            codes != "foreign", pd.Series(np.asarray(COUNTRIES)[pick], index=codes.index)
        )
    elif style in ("kinship", "register") and extra is not None:
        out = _kinship(codes, out, extra, style == "register", _choice_rng(spec, field))
    return out.where(codes.notna(), None)


def _xlsx_dates(values: pd.Series, with_time: bool) -> pd.Series:
    d = dates_of(values)
    if with_time:  # a date-time cell (e.g. registered 10:30): ingest keeps the date
        d = d + pd.Timedelta(hours=10, minutes=30)
    return pd.Series(
        [x.to_pydatetime() if pd.notna(x) else None for x in d], index=values.index, dtype=object
    )


def render_column(
    field: Field,
    values: pd.Series,
    spec: dict,
    rng: np.random.Generator | None,
    extra: pd.DataFrame | None = None,
    xlsx: bool = False,
) -> pd.Series:
    """One column as the vendor writes it (strings for CSV, typed cells for xlsx)."""
    t = field.type
    if t == "date":
        out = (
            _xlsx_dates(values, bool(spec.get("time_of_day")))
            if xlsx
            else format_dates(values, spec.get("dates", "slash"))
        )
        if field.open_end and spec.get("open_end"):  # the vendor's "no end yet"
            out[pd.isna(pd.array(values, dtype="Int64"))] = spec["open_end"]
        if xlsx:
            return out
    elif t == "enum":
        out = _enum_render(
            field, values, spec.get("enum", {}).get(field.name, "label"), extra, spec
        )
    elif t == "bool":
        yes, no = spec.get("bool", ("有", "無"))
        v = pd.array(values, dtype="boolean")
        out = pd.Series(np.where(v.fillna(False), yes, no), index=values.index, dtype=object)
        out[pd.isna(v)] = None
        out[out == ""] = None
    elif t == "int":
        v = pd.array(values, dtype="Int64")
        if xlsx:
            return pd.Series(
                [None if pd.isna(x) else int(x) for x in v], index=values.index, dtype=object
            )
        if field.name in spec.get("thousands", []) or field.name in spec.get("yen", []):
            unit = "円" if field.name in spec.get("yen", []) else ""
            out = pd.Series(
                [None if pd.isna(x) else f"{int(x):,}{unit}" for x in v],
                index=values.index,
                dtype=object,
            )
        else:
            out = pd.Series(v, index=values.index).astype("string").astype(object)
            out[pd.isna(v)] = None
    elif t == "float":
        v = pd.to_numeric(values, errors="coerce")
        if xlsx:
            return pd.Series(
                [None if pd.isna(x) else float(x) for x in v], index=values.index, dtype=object
            )
        out = (
            pd.Series(np.round(v.to_numpy(dtype=float), 1), index=values.index)
            .astype(str)
            .astype(object)
        )
        out[v.isna().to_numpy()] = None
    else:
        out = values.astype(object).where(values.notna(), None)
    if rng is not None and not xlsx and field.name in spec.get("fullwidth", []):
        mess = rng.random(len(out)) < spec["_mess"]["fullwidth_digits"]
        hit = mess & out.notna().to_numpy()
        out[hit] = out[hit].map(lambda s: s.translate(FULLWIDTH))
    if rng is not None and not xlsx and field.name in ("name", "address"):
        pad = (rng.random(len(out)) < spec["_mess"]["fullwidth_space"]) & out.notna().to_numpy()
        out[pad] = out[pad] + "　"
        brk = (rng.random(len(out)) < spec["_mess"]["cell_linebreak"]) & out.notna().to_numpy()
        if field.name == "address":
            out[brk] = out[brk].str.replace("号", "号\n", n=1, regex=False)
    return out


def _render_scalar(field: Field, value, spec: dict, xlsx: bool, date_style: str):
    """One clean value as the vendor writes it (for a conflicting duplicate's changed cell)."""
    if field.type == "date":
        if xlsx:
            return _xlsx_dates(pd.Series([value]), bool(spec.get("time_of_day"))).iloc[0]
        return format_dates(pd.Series([value]), date_style).iloc[0]
    if xlsx and field.type in ("int", "float"):
        return value
    return render_column(field, pd.Series([value], dtype=object), spec, None, None, xlsx).iloc[0]


def headers_for(schema: TableSchema, spec: dict) -> dict[str, str]:
    return {f.name: spec.get("headers", {}).get(f.name, f.title) for f in schema.fields}


# ---------------------------------------------------------------- defects
def _applicable(schema: TableSchema) -> dict[str, list[str]]:
    """For each defect reason, the fields it can be planted in."""
    pk = set(schema.primary_key)
    refs = set(schema.references)
    out: dict[str, list[str]] = {"duplicate_exact": [""]}
    if pk:
        out["duplicate_conflict"] = [
            f.name
            for f in schema.fields
            if f.name not in pk
            and f.masking != "drop"
            and f.type in ("date", "int", "float", "enum", "bool")
        ]
    out["invalid_code"] = [f.name for f in schema.fields if f.pattern and f.masking != "drop"]
    out["invalid_date"] = [f.name for f in schema.fields if f.type == "date"]
    out["out_of_range"] = [
        f.name for f in schema.fields if f.name in OUT_OF_RANGE and f.type in ("int", "float")
    ]
    out["unknown_enum"] = [f.name for f in schema.fields if f.type == "enum"]
    req = [f.name for f in schema.fields if f.required]
    out["missing_required"] = [n for n in req if n not in pk] or req
    out["orphan_key"] = sorted(refs)
    # prefer non-key fields so a defect never also breaks the key
    for k in ("invalid_code", "invalid_date"):
        nonkey = [n for n in out[k] if n not in pk and n not in refs]
        out[k] = nonkey or out[k]
    return {k: v for k, v in out.items() if v}


REJECTING = (
    "duplicate_conflict",
    "invalid_code",
    "invalid_date",
    "out_of_range",
    "unknown_enum",
    "missing_required",
    "orphan_key",
)


def _safe_rows(table: str, df: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> np.ndarray:
    """Rows whose rejection cannot orphan a row of another table."""
    if table == "residents":
        return df["_no_refs"].to_numpy()
    if table == "consultations":
        used = set(tables["progress_records"]["consultation_id"])
        registered = set(tables["case_conference"]["resident_code"])
        trigger = df["consultation_type"].isin(["physical_abuse", "neglect"]) & df[
            "resident_code"
        ].isin(registered)
        return (~df["consultation_id"].isin(used) & ~trigger).to_numpy()
    if table == "school_register":
        n = df.groupby("student_id")["student_id"].transform("size")
        first = ~df["student_id"].duplicated()
        return ((n >= 3) & first).to_numpy()
    return np.ones(len(df), bool)


def _conflict_value(field: Field, value, rng):
    if field.type == "date":
        base = value if pd.notna(value) else 17000
        return int(base) + int(rng.integers(40, 200))
    if field.type == "int":
        base = int(value) if pd.notna(value) else int(field.min or 1)
        new = base + 1 if field.max is None or base + 1 <= field.max else base - 1
        return new
    if field.type == "float":
        base = float(value) if pd.notna(value) else float(field.min or 1)
        return round(base + 0.5 if field.max is None or base + 0.5 <= field.max else base - 0.5, 1)
    if field.type == "bool":
        return not bool(value) if pd.notna(value) else True
    codes = [v.code for v in field.values if v.code != value]
    return codes[int(rng.integers(0, len(codes)))]


class _RowPicker:
    """One seeded random order of rows, walked once: picking a row per defect stays linear in
    the table size (a fresh scan per defect was quadratic and stalled the 500k-child city).
    Row-rejecting defects take rows whose rejection cannot orphan a row of another table."""

    def __init__(self, perm: np.ndarray, safe: np.ndarray, n: int) -> None:
        safe_mask = np.broadcast_to(np.asarray(safe, dtype=bool), (n,))
        self.queues = {True: perm[safe_mask[perm]], False: perm}
        self.next_at = {True: 0, False: 0}
        self.used = np.zeros(n, bool)

    def take(self, rejecting: bool) -> int | None:
        queue, at = self.queues[rejecting], self.next_at[rejecting]
        while at < len(queue) and self.used[queue[at]]:
            at += 1
        self.next_at[rejecting] = at
        if at >= len(queue):
            return None
        self.used[queue[at]] = True
        return int(queue[at])


def _rendered(
    table: str, schema: TableSchema, clean: pd.DataFrame, spec: dict, settings: dict
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The clean rows as the vendor writes them, the clean frame and the effective spec."""
    mess_rng = rng_for(settings["seed"], f"mess:{table}")
    xlsx = spec.get("format") == "xlsx"
    spec = {**spec, "_mess": settings["messiness"], "_seed": settings["seed"], "_table": table}
    if not settings["messiness"].get("era_dates", True) and spec.get("dates", "").startswith("era"):
        spec["dates"] = "slash"
    df = clean.reset_index(drop=True)
    rendered = pd.DataFrame(
        {f.name: render_column(f, df[f.name], spec, mess_rng, df, xlsx) for f in schema.fields}
    )
    return rendered, df, spec


def _plan(
    kinds: dict[str, list[str]], n: int, settings: dict, rng: np.random.Generator
) -> list[str]:
    """Which defect kinds, in which order: every applicable kind in turn, copies last."""
    n_def = int(round(settings["defect_rate"] * n))
    if settings["defect_rate"] > 0 and n >= 20:
        n_def = max(n_def, 1)
    order = list(rng.permutation([k for k in kinds if k != "duplicate_exact"]))
    order.append("duplicate_exact")
    return [order[i % len(order)] for i in range(n_def)]


def _in_file_order(
    rendered: pd.DataFrame, copies: list[tuple[int, pd.Series]]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Each copy right after its original; the file position of every row uid."""
    pos = np.arange(len(rendered), dtype=float)
    extra_pos = [src + 0.5 + k * 1e-6 for k, (src, _) in enumerate(copies)]
    allrows = rendered
    if copies:
        extra = pd.DataFrame([row for _, row in copies], columns=rendered.columns)
        allrows = pd.concat([rendered, extra], ignore_index=True)
    allpos = np.concatenate([pos, np.array(extra_pos, dtype=float)])
    file_order = np.argsort(allpos, kind="stable")
    position = np.empty(len(allpos), dtype=int)
    position[file_order] = np.arange(len(allpos))
    return allrows.iloc[file_order].reset_index(drop=True), position


def plant_defects(
    table: str,
    schema: TableSchema,
    clean: pd.DataFrame,
    spec: dict,
    settings: dict,
    tables: dict[str, pd.DataFrame],
    residents_codes: set[str],
    student_ids: set[str],
    consultation_ids: set[str],
):
    """Render the table, plant defects; return (rendered rows in file order, defect rows)."""
    rng = rng_for(settings["seed"], f"defects:{table}")
    rendered, df, spec = _rendered(table, schema, clean, spec, settings)
    n, xlsx = len(df), spec.get("format") == "xlsx"
    fields = {f.name: f for f in schema.fields}
    kinds = _applicable(schema)
    plan = _plan(kinds, n, settings, rng)
    picker = _RowPicker(rng.permutation(n), _safe_rows(table, df, tables), n)
    defects: list[dict] = []  # uid-based; uid < n original rows, >= n copies
    copies: list[tuple[int, pd.Series]] = []
    date_style = "xlsx" if xlsx else spec.get("dates", "slash")
    for kind in plan:
        i = picker.take(kind in REJECTING)
        if i is None:
            kind, i = "duplicate_exact", picker.take(False)
            if i is None:
                break
        col = kinds[kind][int(rng.integers(0, len(kinds[kind])))] if kind in kinds else ""
        if kind == "duplicate_exact":
            copies.append((i, rendered.iloc[i].copy()))
            defects.append(
                {
                    "uid": n + len(copies) - 1,
                    "column": "",
                    "reason": kind,
                    "defect": "exact copy of the row above",
                }
            )
        elif kind == "duplicate_conflict":
            new = _conflict_value(fields[col], df.at[i, col], rng)
            row = rendered.iloc[i].copy()
            row[col] = _render_scalar(fields[col], new, spec, xlsx, date_style)
            copies.append((i, row))
            for uid in (i, n + len(copies) - 1):
                defects.append(
                    {
                        "uid": uid,
                        "column": col,
                        "reason": kind,
                        "defect": "same key, different value",
                    }
                )
        else:
            value, text = _bad_value(
                kind,
                fields[col],
                date_style,
                rng,
                residents_codes,
                student_ids,
                consultation_ids,
                xlsx,
            )
            rendered.at[i, col] = value
            defects.append({"uid": i, "column": col, "defect": text, "reason": kind})
    out, position = _in_file_order(rendered, copies)
    drows = [
        {
            "table": table,
            "position": int(position[d["uid"]]),
            "column": d["column"],
            "defect": d["defect"],
            "reason": d["reason"],
            "action": defect_action(schema, d["reason"], d["column"]),
        }
        for d in defects
    ]
    return out, drows


def defect_action(schema: TableSchema, reason: str, column: str) -> str:
    """What ingest must do with a planted defect: drop an exact copy, reject the row (a bad
    required field, key or reference, a key conflict), or blank the cell (optional field)."""
    if reason == "duplicate_exact":
        return "drop_duplicate"
    if reason in ("duplicate_conflict", "orphan_key") or schema.rejects_row(column):
        return "reject_row"
    return "blank_cell"


def row_layout(n: int, spec: dict, name: str) -> tuple[list[str], np.ndarray]:
    """Where each record (in file order) lands: the file label ingest reports (``name``, or
    ``name#sheet`` in a workbook of several sheets) and its spreadsheet row (the header is
    row 1, or row 2 below a title line)."""
    sheets = int(spec.get("sheets", 1))
    first = 3 if spec.get("title") else 2
    chunk = max(1, -(-n // sheets))
    pos = np.arange(n)
    labels = (
        [name] * n
        if sheets == 1
        else [f"{name}#{SHEET_NAME.format(i=k + 1)}" for k in pos // chunk]
    )
    return labels, pos % chunk + first


def _bad_value(
    kind: str,
    field: Field,
    date_style: str,
    rng,
    residents_codes,
    student_ids,
    consultation_ids,
    xlsx: bool,
):
    if kind == "invalid_code":
        return (
            "12A45"
            if field.name != "school_code" and field.name != "school_district"
            else "学校99",
            "code does not match the pattern",
        )
    if kind == "invalid_date":
        v = IMPOSSIBLE[date_style][int(rng.integers(0, 2))]
        return v, f"impossible date {v}"
    if kind == "out_of_range":
        bad = OUT_OF_RANGE[field.name]
        if xlsx:
            return bad, f"value {bad} outside {field.min}..{field.max}"
        txt = (
            f"{bad:,}"
            if field.name == "monthly_amount"
            else (f"{bad:.1f}" if isinstance(bad, float) else str(bad))
        )
        return txt, f"value {bad} outside {field.min}..{field.max}"
    if kind == "unknown_enum":
        return "不明区分77", "value not in the code list"
    if kind == "missing_required":
        return None, "required value blank"
    if kind == "orphan_key":
        if field.name == "student_id":
            pool, lo, hi = student_ids, 100_000_000, 999_999_999
        elif field.name == "consultation_id":
            pool, lo, hi = consultation_ids, 90_000_000_000, 99_999_999_999
        else:
            pool, lo, hi = residents_codes, 10**13, 10**14
        while True:
            v = str(int(rng.integers(lo, hi)))
            if v not in pool:
                return v, f"{field.name} not found in the referenced table"
    raise ValueError(kind)


# ---------------------------------------------------------------- writing
def _write_csv(
    df: pd.DataFrame,
    headers: list[str],
    path: Path,
    encoding: str,
    title: str | None = None,
    footer: str | None = None,
) -> None:
    eol = "\r\n" if encoding == "cp932" else "\n"
    text = df.to_csv(index=False, header=headers, lineterminator=eol)
    if title:
        text = title + eol + text
    if footer:
        text += footer + eol
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode(encoding))


def _write_xlsx(
    df: pd.DataFrame, headers: list[str], path: Path, sheets: list[str], title: str | None = None
) -> None:
    """openpyxl, then re-zipped with fixed timestamps so the same seed gives the same bytes.
    With several sheet names the records are split over them in order (contiguous chunks)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    chunk = max(1, -(-len(df) // len(sheets)))
    for k, name in enumerate(sheets):
        ws = wb.create_sheet(name)
        if title:
            ws.append([title])
        ws.append(headers)
        for row in df.iloc[k * chunk : (k + 1) * chunk].itertuples(index=False, name=None):
            ws.append(
                [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in row]
            )
    save_workbook(wb, path)


def dialect_specs(settings: dict) -> dict[str, dict]:
    """The export specs of the configured dialect (``synth.dialect``)."""
    name = settings.get("dialect", "default")
    if name not in DIALECTS:
        raise MimamoriError(
            f"config/synth.yaml: dialect: {name!r} is not one of {sorted(DIALECTS)}"
        )
    return DIALECTS[name]


def export_name(table: str, settings: dict) -> str:
    stamp = f"{settings['fiscal_years'][-1] + 1}0331"
    return dialect_specs(settings)[table]["file"].format(stamp=stamp)


def _write_export(
    out: pd.DataFrame, schema: TableSchema, spec: dict, settings: dict, path: Path
) -> None:
    heads = headers_for(schema, spec)
    cols = [heads[f.name] for f in schema.fields]
    last_fy = settings["fiscal_years"][-1]
    title = spec["title"].format(asof=f"{last_fy + 1}年3月31日") if spec.get("title") else None
    if spec.get("format") == "xlsx":
        sheets = (
            [SHEET_NAME.format(i=k + 1) for k in range(int(spec["sheets"]))]
            if int(spec.get("sheets", 1)) > 1
            else [schema.title[:31]]
        )
        _write_xlsx(out, cols, path, sheets, title)
    else:
        footer = f"合計,{len(out)}件" if spec.get("footer") else None
        _write_csv(out, cols, path, spec["encoding"], title, footer)


def write_exports(
    tables: dict[str, pd.DataFrame], schemas: dict[str, TableSchema], settings: dict, raw_dir: Path
) -> tuple[dict[str, Path], pd.DataFrame]:
    """Every table to its export file; returns {table: path} and the planted-defect list."""
    residents_codes = set(tables["residents"]["resident_code"])
    student_ids = set(tables["school_register"]["student_id"])
    consultation_ids = set(tables["consultations"]["consultation_id"])
    specs = dialect_specs(settings)
    files: dict[str, Path] = {}
    all_defects: list[dict] = []
    for table in tqdm(sorted(schemas), desc="synth exports", unit="table"):
        schema, spec = schemas[table], specs[table]
        out, drows = plant_defects(
            table,
            schema,
            tables[table],
            spec,
            settings,
            tables,
            residents_codes,
            student_ids,
            consultation_ids,
        )
        name = export_name(table, settings)
        path = raw_dir / name
        _write_export(out, schema, spec, settings, path)
        files[table] = path
        labels, rows = row_layout(len(out), spec, name)
        for d in drows:
            pos = d.pop("position")
            all_defects.append({"file": labels[pos], "source_row": int(rows[pos]), **d})
    defects = pd.DataFrame(all_defects, columns=DEFECT_COLUMNS)
    defects = defects.sort_values(["table", "file", "source_row"], kind="stable").reset_index(
        drop=True
    )
    return files, defects
