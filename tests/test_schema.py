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
    "residents", "household_history", "birth_status", "health_checkups", "vaccinations",
    "disability_handbooks", "independence_support", "allowances", "public_assistance",
    "long_term_care", "school_register", "school_aid", "nursery_enrolment", "consultations",
    "progress_records", "school_attendance",
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
        parse_schema({"table": "t", "fields": [{"name": "x", "title": "x", "type": "blob",
                      "missing": "unknown", "pii": False, "masking": "keep"}]})
    with pytest.raises(MimamoriError, match="primary key"):
        parse_schema({"table": "t", "primary_key": ["y"], "fields": []})


def test_schema_table_lists_every_field():
    df = schema_table()
    assert len(df) == sum(len(s.fields) for s in load_schemas().values())
    assert {"table", "field", "title", "masking", "missing", "pii"} <= set(df.columns)
