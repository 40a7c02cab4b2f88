"""A starter ``value_map`` for the spellings no vocabulary knows (``ingest --suggest-map``).

Each unmapped value of an enum or yes/no field is written with its row count and, where one
code's spelling shares the value's words, that code as a guess; the analyst checks every
line and copies the block into config/ingest.yaml. Nothing is applied automatically.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from helpers.io import atomic_path
from helpers.normalize import spelling_key
from helpers.schema import BOOL_FALSE, BOOL_TRUE, Field, TableSchema, load_schemas

MIN_SHARED = 2  # characters a spelling must share with the value to count as a guess


def _spellings(f: Field) -> dict[str, str]:
    """Matching form of every known spelling -> the code a value map would write."""
    if f.type == "bool":
        return {spelling_key(v): "true" for v in BOOL_TRUE} | {
            spelling_key(v): "false" for v in BOOL_FALSE
        }
    return {spelling_key(s): v.code for v in f.values for s in (v.code, v.label, *v.aliases)}


def guess_code(value: str, f: Field) -> str | None:
    """The code whose longest spelling is part of the value (or holds it); None when no
    spelling fits or two codes fit equally well."""
    key = spelling_key(value)
    best: dict[str, int] = {}
    for spelling, code in _spellings(f).items():
        if len(spelling) < MIN_SHARED:
            continue
        if spelling in key or key in spelling:
            best[code] = max(best.get(code, 0), min(len(spelling), len(key)))
    if not best:
        return None
    top = max(best.values())
    winners = [c for c, n in best.items() if n == top]
    return winners[0] if len(winners) == 1 else None


def suggest_value_map(
    unmapped: Mapping[str, pd.DataFrame], schemas: Mapping[str, TableSchema]
) -> list[dict]:
    """One entry per (table, field, value): count, what happened to the rows, a guessed code."""
    out = []
    for table in sorted(unmapped):
        for row in unmapped[table].itertuples(index=False):
            f = schemas[table].field(row.field)
            out.append(
                {
                    "table": table,
                    "field": row.field,
                    "value": row.value,
                    "count": int(row.count),
                    "action": row.action,
                    "guess": guess_code(row.value, f),
                }
            )
    return out


def _codes(f: Field) -> str:
    return "true, false" if f.type == "bool" else ", ".join(v.code for v in f.values)


def suggestion_text(entries: list[dict], schemas: Mapping[str, TableSchema]) -> str:
    """The starter map as YAML with a comment per line."""
    lines = [
        f"# Starter value_map written by `python -m helpers ingest --suggest-map` on "
        f"{dt.date.today().isoformat()}.",
        '# Each value below matched no code of its field. Check every line: a "guess" shares words',
        "# with that code's spellings; an empty code must be filled in (or the line deleted and "
        "the",
        "# export fixed). Then copy the block into config/ingest.yaml.",
        "value_map:" + ("" if entries else " {}"),
    ]
    current = None
    for e in entries:
        f = schemas[e["table"]].field(e["field"])
        if (e["table"], e["field"]) != current:
            current = (e["table"], e["field"])
            lines.append(f"  {e['table']}.{e['field']}:   # codes: {_codes(f)}")
        code = e["guess"] or ""
        note = "guess" if e["guess"] else "fill in"
        lines.append(
            f"    {json.dumps(e['value'], ensure_ascii=False)}: "
            f"{json.dumps(code, ensure_ascii=False)}   # {e['count']} rows "
            f"({e['action']}); {note}"
        )
    return "\n".join(lines) + "\n"


def write_suggestion(
    entries: list[dict], path: Path, schemas: Mapping[str, TableSchema] | None = None
) -> Path:
    text = suggestion_text(entries, schemas or load_schemas())
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
