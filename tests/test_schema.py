import re

import pytest

from helpers import MimamoriError
from helpers.schema import (
    MASKING_RULES,
    load_schema,
    load_schemas,
    parse_schema,
    schema_table,
)

REQUIRED_TABLES = {
    "residents",
    "household_history",
    "birth_status",
    "health_checkups",
    "vaccinations",
    "disability_handbooks",
    "independence_support",
    "allowances",
    "public_assistance",
    "long_term_care",
    "school_register",
    "school_aid",
    "nursery_enrolment",
    "consultations",
    "progress_records",
    "school_attendance",
}


def test_every_source_table_has_a_schema():
    assert set(load_schemas()) >= REQUIRED_TABLES


def test_fields_are_complete_and_snake_case():
    for schema in load_schemas().values():
        for f in schema.fields:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", f.name), f.name
            assert f.title and f.masking in MASKING_RULES
            if f.type == "enum":
                assert f.values and all(v.label for v in f.values)


def test_pii_fields_never_kept_in_clear():
    for schema in load_schemas().values():
        for f in schema.fields:
            if f.pii:
                assert f.masking in {"hmac", "drop", "birth_month"}, (schema.table, f.name)


def test_keys_are_pseudonymised_everywhere():
    for schema in load_schemas().values():
        for key in ("resident_code", "household_code"):
            if key in schema.field_names:
                assert schema.field(key).masking == "hmac"


def test_references_point_at_real_fields():
    schemas = load_schemas()
    for schema in schemas.values():
        for fld, target in schema.references.items():
            table, col = target.split(".")
            assert fld in schema.field_names
            assert col in schemas[table].field_names


def test_headers_unique_within_a_table():
    for schema in load_schemas().values():
        seen: dict[str, str] = {}
        for f in schema.fields:
            for h in f.headers:
                assert seen.setdefault(h, f.name) == f.name, (schema.table, h)


def test_enum_lookup_accepts_code_label_alias():
    sex = load_schema("residents").field("sex")
    lookup = sex.enum_lookup()
    assert lookup["男"] == lookup["1"] == lookup["male"] == "male"


def test_post_outcome_role_marks_leakage_table():
    assert load_schema("case_conference").role == "post_outcome"
    assert load_schema("residents").role == "source"


def test_bad_schema_is_reported():
    with pytest.raises(MimamoriError, match="unknown type"):
        parse_schema(
            {
                "table": "t",
                "fields": [
                    {
                        "name": "x",
                        "title": "x",
                        "type": "blob",
                        "missing": "unknown",
                        "pii": False,
                        "masking": "keep",
                    }
                ],
            }
        )
    with pytest.raises(MimamoriError, match="primary key"):
        parse_schema({"table": "t", "primary_key": ["y"], "fields": []})


def test_schema_table_lists_every_field():
    df = schema_table()
    assert len(df) == sum(len(s.fields) for s in load_schemas().values())
    assert {"table", "field", "title", "masking", "missing", "pii"} <= set(df.columns)


def test_open_end_only_on_end_dates():
    schemas = load_schemas()
    flagged = {(t, f.name) for t, s in schemas.items() for f in s.fields if f.open_end}
    assert ("household_history", "end_date") in flagged and ("residents", "death_date") in flagged
    assert all(
        schemas[t].field(n).type == "date" and not schemas[t].field(n).required for t, n in flagged
    )
    with pytest.raises(MimamoriError, match="open_end applies to date fields only"):
        parse_schema(
            {
                "table": "t",
                "fields": [
                    {
                        "name": "x",
                        "title": "x",
                        "type": "int",
                        "missing": "none",
                        "pii": False,
                        "masking": "keep",
                        "open_end": True,
                    }
                ],
            }
        )


def test_rejects_row_for_required_key_and_reference_fields_only():
    hc = load_schemas()["health_checkups"]
    assert hc.rejects_row("checkup_type") and hc.rejects_row("resident_code")
    assert not hc.rejects_row("weight_kg") and not hc.rejects_row("result")
    att = load_schemas()["school_attendance"]
    assert att.rejects_row("student_id")  # a reference
    assert not att.rejects_row("resident_code")  # optional, not a reference


@pytest.mark.parametrize(
    "table, field, spellings",
    [
        (
            "household_history",
            "relationship",
            [
                "妻の子",
                "子の妻",
                "未届の妻",
                "未届の夫",
                "子の夫",
                "夫の子",
                "孫",
                "祖母",
                "妻の父",
                "叔父",
                "甥",
                "縁故者",
                "同居人",
            ],
        ),
        ("residents", "nationality", ["日本人住民", "外国人住民", "中国", "ベトナム", "ブラジル"]),
        ("health_checkups", "checkup_type", ["1歳6か月児健康診査", "3歳児健康診査", "4か月児健診"]),
        ("consultations", "consultation_type", ["身体的虐待（疑い）", "ネグレクト（疑い）"]),
    ],
)
def test_register_vocabularies_are_listed(table, field, spellings):
    lookup = load_schemas()[table].field(field).enum_lookup()
    missing = [s for s in spellings if s not in lookup]
    assert not missing, missing


def test_yes_no_vocabulary():
    from helpers.schema import BOOL_FALSE, BOOL_TRUE

    assert {"該当", "有", "有り", "○", "はい", "1"} <= set(BOOL_TRUE)
    assert {"非該当", "無", "無し", "×", "いいえ", "0"} <= set(BOOL_FALSE)
    assert not set(BOOL_TRUE) & set(BOOL_FALSE)
