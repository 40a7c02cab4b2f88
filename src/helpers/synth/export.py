"""Write the clean tables the way each department's system would, and plant known defects.

Vendors differ: headers are the schema title or an alias, enums arrive as label, code or a
numeric alias, dates as Western or Japanese-era text (令和5年4月1日, R05.04.01, 5050401), cells
carry full-width digits and spaces, free text has line breaks, amounts have thousands
separators. Each planted defect is listed in ``_truth/defects.csv`` with the spreadsheet row
(header = 1) so ingest's rejects can be checked row by row.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers.io import atomic_path
from helpers.schema import Field, TableSchema
from helpers.synth.population import rng_for, ymd

FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
EPOCH = np.datetime64("1970-01-01")
DEFECT_COLUMNS = ["file", "table", "source_row", "column", "defect", "reason"]

# How each department's system writes its export.
EXPORTS: dict[str, dict] = {
    "residents": {"file": "住民記録_{stamp}.csv", "encoding": "cp932", "dates": "slash",
                  "enum": {"sex": "alias", "nationality": "label"},
                  "headers": {"resident_code": "住民コード", "name_kana": "カナ氏名", "move_in_date": "住定日"},
                  "fullwidth": ["address", "resident_code"]},
    "household_history": {"file": "世帯異動履歴_{stamp}.csv", "encoding": "cp932", "dates": "dash",
                          "enum": {"relationship": "kinship"}, "headers": {"household_code": "世帯コード"}},
    "birth_status": {"file": "出生時の状況_{stamp}.csv", "encoding": "cp932", "bool": ("有", "無"),
                     "fullwidth": ["birth_weight_g"]},
    "health_checkups": {"file": "乳幼児健診_{stamp}.csv", "encoding": "cp932", "dates": "era_kanji",
                        "enum": {"checkup_type": "label", "result": "alias"}, "bool": ("はい", "いいえ"),
                        "headers": {"q_mother_cigarettes": "母喫煙本数"}, "fullwidth": ["checkup_date"]},
    "vaccinations": {"file": "予防接種_{stamp}.csv", "encoding": "utf-8-sig", "dates": "era_short",
                     "enum": {"vaccine": "label"}, "headers": {"dose": "接種回数"}},
    "nursery_enrolment": {"file": "保育所等入所_{stamp}.csv", "encoding": "cp932", "dates": "slash",
                          "enum": {"facility_type": "alias"}},
    "school_register": {"file": "学齢簿_{stamp}.csv", "encoding": "cp932", "dates": "slash",
                        "bool": ("○", ""), "fullwidth": ["grade"]},
    "school_attendance": {"file": "出欠状況_{stamp}.csv", "encoding": "utf-8-sig",
                          "headers": {"student_id": "児童生徒番号"}},
    "school_aid": {"file": "就学援助_{stamp}.csv", "encoding": "cp932", "dates": "era_code",
                   "enum": {"aid_type": "label"}},
    "allowances": {"file": "手当_{stamp}.csv", "encoding": "cp932", "dates": "era_kanji",
                   "enum": {"allowance_type": "alias"}, "thousands": ["monthly_amount"],
                   "headers": {"resident_code": "宛名番号", "start_date": "認定年月日"}},
    "public_assistance": {"file": "public_assistance_{stamp}.xlsx", "format": "xlsx"},
    "long_term_care": {"file": "介護保険_認定_{stamp}.csv", "encoding": "cp932", "dates": "era_code",
                       "enum": {"care_level": "alias"}, "headers": {"care_level": "要介護状態区分"}},
    "disability_handbooks": {"file": "障害者手帳_{stamp}.csv", "encoding": "cp932", "dates": "dash",
                             "enum": {"handbook_type": "label", "grade": "label"}},
    "independence_support": {"file": "自立支援医療_{stamp}.csv", "encoding": "cp932", "dates": "era_kanji",
                             "enum": {"kind": "label"}},
    "consultations": {"file": "相談記録_{stamp}.csv", "encoding": "utf-8-sig", "dates": "slash",
                      "enum": {"consultation_type": "label", "referral_route": "alias"},
                      "bool": ("有", "無"), "headers": {"consultation_id": "受付番号",
                                                        "consultation_type": "主訴"}},
    "progress_records": {"file": "経過記録_{stamp}.csv", "encoding": "utf-8-sig", "dates": "dash",
                         "enum": {"assessment": "label"}},
    "case_conference": {"file": "case_conference_{stamp}.xlsx", "format": "xlsx",
                        "enum": {"level": "code"}},
}

OUT_OF_RANGE = {"weight_kg": 400.0, "height_cm": 300.0, "birth_weight_g": 9999,
                "head_circumference_cm": 80.0, "gestational_weeks": 60, "q_mother_cigarettes": 120,
                "absence_days": -3, "monthly_amount": 900000, "grade": 12, "dose": 9}
IMPOSSIBLE = {"slash": ["2023/02/30", "2021/13/01"], "dash": ["2023-02-30", "2022-04-31"],
              "era_kanji": ["令和5年2月30日", "平成32年1月1日"], "era_short": ["R05.02.30", "H32.01.01"],
              "era_code": ["5050230", "4320101"], "xlsx": ["2023/02/30", "2022/04/31"]}


# ---------------------------------------------------------------- value rendering
def _dates(days: pd.Series) -> pd.Series:
    return pd.Series(pd.to_datetime(pd.array(days, dtype="Int64").astype("float"), unit="D"),
                     index=days.index)


def format_dates(days: pd.Series, style: str) -> pd.Series:
    """Integer days (NA = blank) as text in one vendor style."""
    v = pd.array(days, dtype="Int64")
    out = pd.Series([None] * len(v), index=days.index, dtype=object)
    ok = ~pd.isna(v)
    if not ok.any():
        return out
    y, m, d = ymd(np.asarray(v[ok], dtype="int64"))
    if style in ("slash", "dash"):
        sep = "/" if style == "slash" else "-"
        txt = pd.Series(y * 10000 + m * 100 + d).astype(str)
        out[ok] = (txt.str[:4] + sep + txt.str[4:6] + sep + txt.str[6:8]).to_numpy()
        return out
    reiwa = (y * 10000 + m * 100 + d) >= 20190501
    heisei = ~reiwa & ((y * 10000 + m * 100 + d) >= 19890108)
    ey = np.where(reiwa, y - 2018, np.where(heisei, y - 1988, y - 1925))
    if style == "era_kanji":
        era = pd.Series(np.where(reiwa, "令和", np.where(heisei, "平成", "昭和")))
        yy = pd.Series(ey).astype(str).where(ey != 1, "元")
        txt = era + yy + "年" + pd.Series(m).astype(str) + "月" + pd.Series(d).astype(str) + "日"
    elif style == "era_short":
        era = pd.Series(np.where(reiwa, "R", np.where(heisei, "H", "S")))
        t = pd.Series(1_000_000 + ey * 10000 + m * 100 + d).astype(str)
        txt = era + t.str[1:3] + "." + t.str[3:5] + "." + t.str[5:7]
    elif style == "era_code":
        era = np.where(reiwa, 5, np.where(heisei, 4, 3))
        txt = pd.Series(era * 1_000_000 + ey * 10_000 + m * 100 + d).astype(str)
    else:
        raise ValueError(style)
    out[ok] = txt.to_numpy()
    return out


def _enum_render(field: Field, codes: pd.Series, style: str, extra: pd.DataFrame | None) -> pd.Series:
    labels = field.enum_labels()
    if style == "code":
        mapping = {v.code: v.code for v in field.values}
    elif style == "alias":
        mapping = {v.code: (v.aliases[0] if v.aliases else v.label) for v in field.values}
    else:
        mapping = labels
    out = codes.map(mapping)
    if style == "kinship" and extra is not None:  # 長男 / 長女 / 妻 / 父 ... as real registries write
        sex = extra["_sex"]
        order = extra["_order"].clip(1, 3)
        kid = np.where(sex == "male", order.map({1: "長男", 2: "二男", 3: "三男"}),
                       order.map({1: "長女", 2: "二女", 3: "三女"}))
        out = out.where(codes != "child", pd.Series(kid, index=codes.index))
        out = out.where(codes != "spouse", np.where(sex == "male", "夫", "妻"))
        out = out.where(codes != "parent", np.where(sex == "male", "父", "母"))
    return out.where(codes.notna(), None)


def render_column(field: Field, values: pd.Series, spec: dict, rng: np.random.Generator | None,
                  extra: pd.DataFrame | None = None, xlsx: bool = False) -> pd.Series:
    """One column as the vendor writes it (strings for CSV, typed cells for xlsx)."""
    t = field.type
    if t == "date":
        if xlsx:
            d = _dates(values)
            return pd.Series([x.to_pydatetime() if pd.notna(x) else None for x in d], index=values.index,
                             dtype=object)
        out = format_dates(values, spec.get("dates", "slash"))
    elif t == "enum":
        out = _enum_render(field, values, spec.get("enum", {}).get(field.name, "label"), extra)
    elif t == "bool":
        yes, no = spec.get("bool", ("有", "無"))
        v = pd.array(values, dtype="boolean")
        out = pd.Series(np.where(v.fillna(False), yes, no), index=values.index, dtype=object)
        out[pd.isna(v)] = None
        out[out == ""] = None
    elif t == "int":
        v = pd.array(values, dtype="Int64")
        if xlsx:
            return pd.Series([None if pd.isna(x) else int(x) for x in v], index=values.index, dtype=object)
        if field.name in spec.get("thousands", []):
            out = pd.Series([None if pd.isna(x) else f"{int(x):,}" for x in v], index=values.index, dtype=object)
        else:
            out = pd.Series(v, index=values.index).astype("string").astype(object)
            out[pd.isna(v)] = None
    elif t == "float":
        v = pd.to_numeric(values, errors="coerce")
        if xlsx:
            return pd.Series([None if pd.isna(x) else float(x) for x in v], index=values.index, dtype=object)
        out = pd.Series(np.round(v.to_numpy(dtype=float), 1), index=values.index).astype(str).astype(object)
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
            return _dates(pd.Series([value])).iloc[0].to_pydatetime()
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
        out["duplicate_conflict"] = [f.name for f in schema.fields if f.name not in pk and f.masking != "drop"
                                     and f.type in ("date", "int", "float", "enum", "bool")]
    out["invalid_code"] = [f.name for f in schema.fields if f.pattern and f.masking != "drop"]
    out["invalid_date"] = [f.name for f in schema.fields if f.type == "date"]
    out["out_of_range"] = [f.name for f in schema.fields if f.name in OUT_OF_RANGE and f.type in ("int", "float")]
    out["unknown_enum"] = [f.name for f in schema.fields if f.type == "enum"]
    req = [f.name for f in schema.fields if f.required]
    out["missing_required"] = [n for n in req if n not in pk] or req
    out["orphan_key"] = sorted(refs)
    # prefer non-key fields so a defect never also breaks the key
    for k in ("invalid_code", "invalid_date"):
        nonkey = [n for n in out[k] if n not in pk and n not in refs]
        out[k] = nonkey or out[k]
    return {k: v for k, v in out.items() if v}


REJECTING = ("duplicate_conflict", "invalid_code", "invalid_date", "out_of_range", "unknown_enum",
             "missing_required", "orphan_key")


def _safe_rows(table: str, df: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> np.ndarray:
    """Rows whose rejection cannot orphan a row of another table."""
    if table == "residents":
        return df["_no_refs"].to_numpy()
    if table == "consultations":
        used = set(tables["progress_records"]["consultation_id"])
        registered = set(tables["case_conference"]["resident_code"])
        trigger = df["consultation_type"].isin(["physical_abuse", "neglect"]) & df["resident_code"].isin(registered)
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


def plant_defects(table: str, schema: TableSchema, clean: pd.DataFrame, spec: dict, settings: dict,
                  tables: dict[str, pd.DataFrame], residents_codes: set[str],
                  student_ids: set[str], consultation_ids: set[str]):
    """Render the table, plant defects; return (rendered rows in file order, defect rows)."""
    rng = rng_for(settings["seed"], f"defects:{table}")
    mess_rng = rng_for(settings["seed"], f"mess:{table}")
    xlsx = spec.get("format") == "xlsx"
    spec = {**spec, "_mess": settings["messiness"]}
    if not settings["messiness"].get("era_dates", True) and spec.get("dates", "").startswith("era"):
        spec["dates"] = "slash"
    df = clean.reset_index(drop=True)
    n = len(df)
    fields = {f.name: f for f in schema.fields}
    rendered = pd.DataFrame({name: render_column(f, df[name], spec, mess_rng, df, xlsx)
                             for name, f in fields.items()})
    n_def = int(round(settings["defect_rate"] * n))
    if settings["defect_rate"] > 0 and n >= 20:
        n_def = max(n_def, 1)
    kinds = _applicable(schema)
    safe = _safe_rows(table, df, tables)
    order = list(rng.permutation([k for k in kinds if k != "duplicate_exact"])) + ["duplicate_exact"]
    plan = [order[i % len(order)] for i in range(n_def)]
    used = np.zeros(n, bool)
    defects: list[dict] = []  # uid-based; uid < n original rows, >= n copies
    copies: list[tuple[int, pd.Series]] = []
    date_style = "xlsx" if xlsx else spec.get("dates", "slash")
    # One seeded random order of rows, walked once: picking a row per defect stays linear in
    # the table size (a fresh scan per defect was quadratic and stalled the 500k-child city).
    perm = rng.permutation(n)
    safe_mask = np.broadcast_to(np.asarray(safe, dtype=bool), (n,))
    queues = {True: perm[safe_mask[perm]], False: perm}
    next_at = {True: 0, False: 0}

    def next_unused(rejecting: bool) -> int | None:
        queue, at = queues[rejecting], next_at[rejecting]
        while at < len(queue) and used[queue[at]]:
            at += 1
        next_at[rejecting] = at
        return int(queue[at]) if at < len(queue) else None

    for kind in plan:
        i = next_unused(kind in REJECTING)
        if i is None:
            kind = "duplicate_exact"
            i = next_unused(False)
            if i is None:
                break
        used[i] = True
        col = kinds[kind][int(rng.integers(0, len(kinds[kind])))] if kind in kinds else ""
        if kind == "duplicate_exact":
            copies.append((i, rendered.iloc[i].copy()))
            defects.append({"uid": n + len(copies) - 1, "column": "", "defect": "exact copy of the row above",
                            "reason": kind})
        elif kind == "duplicate_conflict":
            f = fields[col]
            new = _conflict_value(f, df.at[i, col], rng)
            row = rendered.iloc[i].copy()
            row[col] = _render_scalar(f, new, spec, xlsx, date_style)
            copies.append((i, row))
            defects.append({"uid": i, "column": col, "defect": "same key, different value", "reason": kind})
            defects.append({"uid": n + len(copies) - 1, "column": col, "defect": "same key, different value",
                            "reason": kind})
        else:
            value, text = _bad_value(kind, fields[col], date_style, rng, residents_codes, student_ids,
                                     consultation_ids, xlsx)
            rendered.at[i, col] = value
            defects.append({"uid": i, "column": col, "defect": text, "reason": kind})
    # file order: each copy right after its original
    pos = np.arange(n, dtype=float)
    extra_rows = [row for _, row in copies]
    extra_pos = [src + 0.5 + k * 1e-6 for k, (src, _) in enumerate(copies)]
    allrows = pd.concat([rendered, pd.DataFrame(extra_rows, columns=rendered.columns)], ignore_index=True) \
        if copies else rendered
    allpos = np.concatenate([pos, np.array(extra_pos, dtype=float)])
    file_order = np.argsort(allpos, kind="stable")
    source_row = np.empty(len(allpos), dtype=int)
    source_row[file_order] = np.arange(len(allpos)) + 2
    out = allrows.iloc[file_order].reset_index(drop=True)
    drows = [{"table": table, "source_row": int(source_row[d["uid"]]), "column": d["column"],
              "defect": d["defect"], "reason": d["reason"]} for d in defects]
    return out, drows


def _bad_value(kind: str, field: Field, date_style: str, rng, residents_codes, student_ids,
               consultation_ids, xlsx: bool):
    if kind == "invalid_code":
        return ("12A45" if field.name != "school_code" and field.name != "school_district" else "学校99",
                "code does not match the pattern")
    if kind == "invalid_date":
        v = IMPOSSIBLE[date_style][int(rng.integers(0, 2))]
        return v, f"impossible date {v}"
    if kind == "out_of_range":
        v = OUT_OF_RANGE[field.name]
        if xlsx:
            return v, f"value {v} outside {field.min}..{field.max}"
        txt = f"{v:,}" if field.name == "monthly_amount" else (f"{v:.1f}" if isinstance(v, float) else str(v))
        return txt, f"value {v} outside {field.min}..{field.max}"
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
def _write_csv(df: pd.DataFrame, headers: list[str], path: Path, encoding: str) -> None:
    with atomic_path(path) as tmp:
        text = df.to_csv(index=False, header=headers, lineterminator="\r\n" if encoding == "cp932" else "\n")
        tmp.write_bytes(text.encode(encoding))


FIXED_ZIP_TIME = (2024, 4, 1, 0, 0, 0)


def _write_xlsx(df: pd.DataFrame, headers: list[str], path: Path, sheet: str) -> None:
    """openpyxl, then re-zipped with fixed timestamps so the same seed gives the same bytes."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(headers)
    for row in df.itertuples(index=False, name=None):
        ws.append([None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in row])
    buf = io.BytesIO()
    wb.save(buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2024-04-01T00:00:00Z", data)
            zi = zipfile.ZipInfo(info.filename, FIXED_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(zi, data)


def export_name(table: str, settings: dict) -> str:
    stamp = f"{settings['fiscal_years'][-1] + 1}0331"
    return EXPORTS[table]["file"].format(stamp=stamp)


def write_exports(tables: dict[str, pd.DataFrame], schemas: dict[str, TableSchema], settings: dict,
                  raw_dir: Path) -> tuple[dict[str, Path], pd.DataFrame]:
    """Every table to its export file; returns {table: path} and the planted-defect list."""
    residents_codes = set(tables["residents"]["resident_code"])
    student_ids = set(tables["school_register"]["student_id"])
    consultation_ids = set(tables["consultations"]["consultation_id"])
    files: dict[str, Path] = {}
    all_defects: list[dict] = []
    for table in tqdm(sorted(schemas), desc="synth exports", unit="table"):
        schema, spec = schemas[table], EXPORTS[table]
        out, drows = plant_defects(table, schema, tables[table], spec, settings, tables,
                                   residents_codes, student_ids, consultation_ids)
        name = export_name(table, settings)
        path = raw_dir / name
        heads = headers_for(schema, spec)
        cols = [heads[f.name] for f in schema.fields]
        if spec.get("format") == "xlsx":
            _write_xlsx(out, cols, path, schema.title[:31])
        else:
            _write_csv(out, cols, path, spec["encoding"])
        files[table] = path
        for d in drows:
            all_defects.append({"file": name, **d})
    defects = pd.DataFrame(all_defects, columns=DEFECT_COLUMNS)
    defects = defects.sort_values(["table", "source_row"], kind="stable").reset_index(drop=True)
    return files, defects
