"""Load data_schema/*.yaml: the single source of truth for column meanings.

Every other module asks this one what a column is called, what type it has, what a blank means
and how it is masked; nothing restates those facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from helpers import MimamoriError
from helpers.config import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "data_schema"
FIELD_TYPES = {"code", "string", "text", "int", "float", "date", "bool", "enum"}
MISSING_RULES = {"unknown", "none"}
MASKING_RULES = {"hmac", "birth_month", "month", "topcode", "drop", "keep"}
TABLE_ROLES = {"source", "post_outcome"}
# 名寄せ: the identity roles a code-less export may declare under `link_by:` (role: field)
LINK_ROLES = ("name", "name_kana", "birth_date", "sex", "address", "guardian_name", "school")
# Yes/no spellings (matched after width and case folding); a value map in config/ingest.yaml
# adds a vendor's own (value_map: {"table.field": {"要": true}}).
BOOL_TRUE = (
    "有",
    "有り",
    "あり",
    "ある",
    "はい",
    "○",
    "〇",
    "◯",
    "●",
    "レ",
    "✓",
    "該当",
    "該当あり",
    "対象",
    "1",
    "true",
    "yes",
    "y",
    "是",
)
BOOL_FALSE = (
    "無",
    "無し",
    "なし",
    "ない",
    "いいえ",
    "×",
    "✕",
    "✗",
    "非該当",
    "該当なし",
    "対象外",
    "0",
    "false",
    "no",
    "n",
    "否",
)


@dataclass(frozen=True)
class EnumValue:
    code: str
    label: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Field:
    name: str
    title: str
    type: str
    required: bool
    missing: str
    pii: bool
    masking: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    values: tuple[EnumValue, ...] = ()
    open_end: bool = False  # a date that ends a period: 9999/12/31, 0000/00/00 ... = still open

    @property
    def headers(self) -> tuple[str, ...]:
        """Every header an export may use for this field (name, title, aliases)."""
        return (self.name, self.title, *self.aliases)

    def enum_lookup(self) -> dict[str, str]:
        """Map every accepted raw spelling (code, label, alias) to the enum code."""
        out: dict[str, str] = {}
        for v in self.values:
            for spelling in (v.code, v.label, *v.aliases):
                out[str(spelling)] = v.code
        return out

    def enum_labels(self) -> dict[str, str]:
        return {v.code: v.label for v in self.values}


@dataclass(frozen=True)
class TableSchema:
    table: str
    title: str
    system: str
    description: str
    files: tuple[str, ...]
    primary_key: tuple[str, ...]
    references: dict[str, str]
    role: str
    fields: tuple[Field, ...] = field(default_factory=tuple)
    link_by: dict[str, str] = field(default_factory=dict)  # identity role -> field (名寄せ)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.table} has no field {name!r}")

    def rejects_row(self, name: str) -> bool:
        """Whether a bad value in this field rejects its row: a required field, a primary-key
        field or a reference. Anywhere else a bad value only blanks the cell."""
        f = self.field(name)
        return f.required or name in self.primary_key or name in self.references

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def mart_fields(self) -> list[Field]:
        """Fields that reach the mart (everything not dropped by masking)."""
        return [f for f in self.fields if f.masking != "drop"]

    def mart_dtypes(self) -> dict[str, str]:
        """The mart dtype of every non-dropped field (docs/architecture.md)."""
        return {f.name: MART_DTYPES[f.type] for f in self.mart_fields}


# schema type -> the mart's pandas dtype (nullable where a blank must stay distinct from 0)
MART_DTYPES = {
    "code": "string",
    "string": "string",
    "text": "string",
    "enum": "string",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
    "date": "datetime64[ns]",
}


def _parse_field(table: str, raw: dict) -> Field:
    where = f"data_schema/{table}.yaml field {raw.get('name')!r}"
    for key in ("name", "title", "type", "missing", "pii", "masking"):
        if key not in raw:
            raise MimamoriError(f"{where}: missing key {key!r}")
    if raw["type"] not in FIELD_TYPES:
        raise MimamoriError(f"{where}: unknown type {raw['type']!r}")
    if raw["missing"] not in MISSING_RULES:
        raise MimamoriError(f"{where}: missing must be one of {sorted(MISSING_RULES)}")
    if raw["masking"] not in MASKING_RULES:
        raise MimamoriError(f"{where}: masking must be one of {sorted(MASKING_RULES)}")
    values = tuple(
        EnumValue(str(v["code"]), str(v["label"]), tuple(str(a) for a in v.get("aliases", [])))
        for v in raw.get("values", []) or []
    )
    if raw["type"] == "enum" and not values:
        raise MimamoriError(f"{where}: enum without values")
    if raw.get("open_end") and raw["type"] != "date":
        raise MimamoriError(f"{where}: open_end applies to date fields only")
    return Field(
        name=raw["name"],
        title=raw["title"],
        type=raw["type"],
        required=bool(raw.get("required", False)),
        missing=raw["missing"],
        pii=bool(raw["pii"]),
        masking=raw["masking"],
        description=raw.get("description", ""),
        aliases=tuple(str(a) for a in raw.get("aliases", []) or []),
        unit=raw.get("unit"),
        min=raw.get("min"),
        max=raw.get("max"),
        pattern=raw.get("pattern"),
        values=values,
        open_end=bool(raw.get("open_end", False)),
    )


def parse_schema(raw: dict, name: str = "?") -> TableSchema:
    table = raw.get("table", name)
    fields = tuple(_parse_field(table, f) for f in raw.get("fields", []))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise MimamoriError(f"data_schema/{table}.yaml: duplicate field names")
    for key in raw.get("primary_key", []):
        if key not in names:
            raise MimamoriError(f"data_schema/{table}.yaml: primary key {key!r} is not a field")
    link_by = {str(k): str(v) for k, v in (raw.get("link_by") or {}).items()}
    for k, v in link_by.items():
        if k not in LINK_ROLES or v not in names:
            raise MimamoriError(
                f"data_schema/{table}.yaml: link_by {k}: {v}: roles are "
                f"{list(LINK_ROLES)} and each must name a field of the table"
            )
    role = raw.get("role", "source")
    if role not in TABLE_ROLES:
        raise MimamoriError(f"data_schema/{table}.yaml: role must be one of {sorted(TABLE_ROLES)}")
    return TableSchema(
        table=table,
        title=raw.get("title", table),
        system=raw.get("system", ""),
        description=raw.get("description", ""),
        files=tuple(raw.get("files", [f"{table}*"])),
        primary_key=tuple(raw.get("primary_key", [])),
        references=dict(raw.get("references", {}) or {}),
        role=role,
        fields=fields,
        link_by=link_by,
    )


@lru_cache(maxsize=8)
def _load_dir(schema_dir: str) -> dict[str, TableSchema]:
    out: dict[str, TableSchema] = {}
    for path in sorted(Path(schema_dir).glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        schema = parse_schema(raw, path.stem)
        if schema.table != path.stem:
            raise MimamoriError(f"{path}: table {schema.table!r} must match the file name")
        out[schema.table] = schema
    if not out:
        raise MimamoriError(f"no schemas found in {schema_dir}")
    return out


def load_schemas(schema_dir: str | Path | None = None) -> dict[str, TableSchema]:
    """All table schemas by table name."""
    return dict(_load_dir(str(schema_dir or SCHEMA_DIR)))


def load_schema(table: str, schema_dir: str | Path | None = None) -> TableSchema:
    schemas = load_schemas(schema_dir)
    if table not in schemas:
        raise MimamoriError(f"unknown table {table!r}; known: {sorted(schemas)}")
    return schemas[table]


def schema_table(schemas: dict[str, TableSchema] | None = None):
    """One row per field of every table, for reports and the data dictionary."""
    import pandas as pd

    schemas = schemas or load_schemas()
    rows = []
    for s in schemas.values():
        for f in s.fields:
            rows.append(
                {
                    "table": s.table,
                    "table_title": s.title,
                    "field": f.name,
                    "title": f.title,
                    "type": f.type,
                    "unit": f.unit or "",
                    "required": f.required,
                    "missing": f.missing,
                    "pii": f.pii,
                    "masking": f.masking,
                    "description": f.description,
                }
            )
    return pd.DataFrame(rows)
