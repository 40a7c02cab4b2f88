"""The synthetic city: deterministic, parseable, every planted defect where the truth says,
no unplanned defect anywhere else, outcomes calibrated, in-movers without earlier records."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.config import load_config
from helpers.schema import BOOL_FALSE, BOOL_TRUE, load_schemas
from helpers.synth.export import EXPORTS
from helpers.synth.population import calibrate_intercept, grade_in, sigmoid
from helpers.synth.stage import generate_city, main

SCHEMAS = load_schemas()


def make_cfg(tmp: Path, n: int, seed: int = 7, **synth) -> dict:
    return load_config(
        profile="",
        overrides={
            "run": {"seed": seed, "data_dir": str(tmp)},
            "synth": {"n_children": n, **synth},
        },
    )


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> dict:
    raw = tmp_path_factory.mktemp("synth") / "raw"
    cfg = make_cfg(raw.parent, 700)
    summary = generate_city(cfg, raw)
    return {"raw": raw, "summary": summary, "parsed": parse_city(raw)}


# ---------------------------------------------------------------- an independent checker
ERA_START = {
    "令和": (2018, dt.date(2019, 5, 1), None),
    "平成": (1988, dt.date(1989, 1, 8), dt.date(2019, 4, 30)),
    "昭和": (1925, dt.date(1926, 12, 25), dt.date(1989, 1, 7)),
}
ERA_LETTER = {"R": "令和", "H": "平成", "S": "昭和"}
ERA_DIGIT = {"5": "令和", "4": "平成", "3": "昭和"}


def _era(era: str, year: int, m: int, d: int) -> dt.date:
    offset, first, last = ERA_START[era]
    value = dt.date(offset + year, m, d)
    if value < first or (last and value > last):
        raise ValueError("outside era")
    return value


def parse_date(s) -> dt.date:
    if isinstance(s, dt.datetime):
        return s.date()
    s = unicodedata.normalize("NFKC", str(s)).strip()
    if m := re.fullmatch(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})", s):
        return dt.date(*map(int, m.groups()))
    if m := re.fullmatch(r"(令和|平成|昭和)(元|\d+)年(\d+)月(\d+)日", s):
        y = 1 if m[2] == "元" else int(m[2])
        return _era(m[1], y, int(m[3]), int(m[4]))
    if m := re.fullmatch(r"([RHS])(\d\d)\.(\d\d)\.(\d\d)", s):
        return _era(ERA_LETTER[m[1]], int(m[2]), int(m[3]), int(m[4]))
    if m := re.fullmatch(r"([345])(\d\d)(\d\d)(\d\d)", s):
        return _era(ERA_DIGIT[m[1]], int(m[2]), int(m[3]), int(m[4]))
    raise ValueError(s)


def check_cell(field, raw):
    """(reason or None, parsed value)."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip() == "":
        return ("missing_required" if field.required else None), None
    s = raw if isinstance(raw, dt.datetime) else unicodedata.normalize("NFKC", str(raw)).strip()
    try:
        if field.type == "code":
            return (None, s) if re.fullmatch(field.pattern or ".*", s) else ("invalid_code", None)
        if field.type in ("int", "float"):
            v = float(str(s).replace(",", ""))
            if (field.min is not None and v < field.min) or (
                field.max is not None and v > field.max
            ):
                return "out_of_range", None
            return None, v
        if field.type == "date":
            return None, parse_date(s)
        if field.type == "enum":
            lookup = {unicodedata.normalize("NFKC", k): v for k, v in field.enum_lookup().items()}
            code = lookup.get(s)
            return (None, code) if code else ("unknown_enum", None)
        if field.type == "bool":
            if s in BOOL_TRUE:
                return None, True
            return (None, False) if s in BOOL_FALSE else ("invalid_code", None)
    except ValueError:
        return ("invalid_date" if field.type == "date" else "invalid_number"), None
    return None, s


def read_raw(path: Path, schema) -> pd.DataFrame:
    if path.suffix == ".xlsx":
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True)
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
        df = pd.DataFrame(rows[1:], columns=rows[0], dtype=object)
    else:
        enc = "utf-8-sig" if path.read_bytes()[:3] == b"\xef\xbb\xbf" else "cp932"
        df = pd.read_csv(path, encoding=enc, dtype=str, keep_default_na=False)
    mapping = {}
    for col in df.columns:
        hits = [f.name for f in schema.fields if col in f.headers]
        assert len(hits) == 1, f"{path.name}: header {col!r} maps to {hits}"
        mapping[col] = hits[0]
    df = df.rename(columns=mapping)
    assert list(df.columns) == schema.field_names, path.name
    df.index = np.arange(len(df)) + 2  # spreadsheet row numbers
    return df


def parse_city(raw: Path) -> dict:
    """Validate every export like ingest would; return parsed frames and the found rejects."""
    found, parsed = set(), {}
    # the exports synth.export writes (the code-less identity sources, written by
    # synth.identity, are checked against their own truth in tests/link)
    order = ["residents", "school_register", "consultations"] + sorted(
        set(EXPORTS) - {"residents", "school_register", "consultations"}
    )
    valid_keys: dict[str, set] = {}
    for table in order:
        schema = SCHEMAS[table]
        paths = [p for pat in schema.files for p in raw.glob(pat)]
        assert len(paths) == 1, f"{table}: {paths}"
        df = read_raw(paths[0], schema)
        reasons = pd.Series([None] * len(df), index=df.index, dtype=object)
        values = {}
        for f in schema.fields:
            res = [check_cell(f, v) for v in df[f.name]]
            values[f.name] = [r[1] for r in res]
            bad = pd.Series([r[0] for r in res], index=df.index)
            reasons = reasons.where(reasons.notna(), bad)
        val = pd.DataFrame(values, index=df.index)
        norm = df.map(lambda v: unicodedata.normalize("NFKC", str(v)) if v is not None else "")
        exact = norm.duplicated(keep="first") & reasons.isna()
        reasons[exact] = "duplicate_exact"
        ok = reasons.isna()
        pk = list(schema.primary_key)
        grp = val[ok].groupby(pk, dropna=False)[pk[0]].transform("size")
        reasons[grp[grp > 1].index] = "duplicate_conflict"
        for fld, target in schema.references.items():
            ttable, tfield = target.split(".")
            live = reasons.isna() & val[fld].notna()
            orphan = live & ~val[fld].isin(valid_keys[f"{ttable}.{tfield}"])
            reasons[orphan] = "orphan_key"
        good = reasons.isna()
        for f in schema.fields:
            valid_keys[f"{table}.{f.name}"] = set(val.loc[good, f.name].dropna())
        for row, r in reasons.dropna().items():
            found.add((table, int(row), r))
        parsed[table] = val[good | (reasons == "duplicate_exact")].assign(_path=paths[0].name)
    return {"found": found, "frames": parsed}


def file_hashes(raw: Path) -> dict[str, str]:
    return {
        str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(raw.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- tests
def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_city(make_cfg(tmp_path, 300, seed=1), a)
    generate_city(make_cfg(tmp_path, 300, seed=1), b)
    generate_city(make_cfg(tmp_path, 300, seed=2), c)
    ha, hb, hc = file_hashes(a), file_hashes(b), file_hashes(c)
    assert ha == hb
    assert set(ha) == set(hc)
    assert sum(ha[k] != hc[k] for k in ha) >= len(ha) - 1  # only the stamp may coincide
    assert any(k.endswith(".xlsx") for k in ha)


def test_every_table_has_one_export_with_the_schema_columns(city):
    raw = city["raw"]
    assert (raw / ".complete").exists()
    assert set(city["parsed"]["frames"]) == set(EXPORTS)
    assert set(EXPORTS) <= set(SCHEMAS)
    encodings = set()
    for p in raw.glob("*.csv"):
        encodings.add("utf-8-sig" if p.read_bytes()[:3] == b"\xef\xbb\xbf" else "cp932")
    assert encodings == {"cp932", "utf-8-sig"}
    for table, df in city["parsed"]["frames"].items():
        assert len(df) > 0, table


def test_planted_defects_are_exactly_the_invalid_rows(city):
    defects = pd.read_csv(city["raw"] / "_truth" / "defects.csv", dtype={"column": str})
    assert list(defects.columns) == [
        "file",
        "table",
        "source_row",
        "column",
        "defect",
        "reason",
        "action",
    ]
    # what ingest must do: drop an exact copy, reject the row (required field, key, reference,
    # key conflict) or only blank the cell (any other field)
    for d in defects.itertuples(index=False):
        if d.reason == "duplicate_exact":
            assert d.action == "drop_duplicate"
        elif d.reason in ("duplicate_conflict", "orphan_key"):
            assert d.action == "reject_row"
        else:
            assert d.action == (
                "reject_row" if SCHEMAS[d.table].rejects_row(d.column) else "blank_cell"
            ), d
    planted = set(
        zip(defects["table"], defects["source_row"].astype(int), defects["reason"], strict=True)
    )
    found = city["parsed"]["found"]
    assert planted - found == set(), f"planted but not found: {sorted(planted - found)[:10]}"
    assert found - planted == set(), f"invalid but not planted: {sorted(found - planted)[:10]}"
    assert len(defects) == len(planted), "a row carries two reasons"
    reasons = set(defects["reason"])
    assert {
        "duplicate_exact",
        "duplicate_conflict",
        "invalid_date",
        "out_of_range",
        "unknown_enum",
        "missing_required",
        "orphan_key",
        "invalid_code",
    } <= reasons
    rows = sum(city["summary"]["rows"].values())
    assert 0.002 < len(defects) / rows < 0.02


def test_messy_formats_are_present(city):
    raw = city["raw"]
    text = "".join(
        p.read_bytes().decode("utf-8-sig" if p.read_bytes()[:3] == b"\xef\xbb\xbf" else "cp932")
        for p in raw.glob("*.csv")
    )
    assert re.search(r"令和\d+年\d+月\d+日", text) and re.search(r"平成\d+年", text)
    assert re.search(r"\bR0\d\.\d\d\.\d\d\b", text) and re.search(r",5\d{6}(,|\r?\n)", text)
    assert re.search(r"[０-９]", text) and "　" in text and '"2' in text  # full-width, "2x,xxx"
    assert re.search(r'"[^"]*\n[^"]*"', text)  # a line break inside a quoted cell
    checkups = city["parsed"]["frames"]["health_checkups"]
    cig = checkups["q_mother_cigarettes"]
    assert (cig == 0).any() and cig.isna().any() and (cig > 0).any()


def test_school_attendance_often_lacks_resident_code(city):
    att = city["parsed"]["frames"]["school_attendance"]
    assert 0.5 < att["resident_code"].isna().mean() < 0.7


def test_in_movers_have_no_records_before_moving_in(city):
    f = city["parsed"]["frames"]
    res = f["residents"].drop_duplicates("resident_code")
    moved = res[res["move_in_date"].notna()].set_index("resident_code")["move_in_date"]
    assert len(moved) > 20
    births = set(f["birth_status"]["resident_code"])
    born = res.set_index("resident_code")["birth_date"]
    born_before_move = {c for c, d in moved.items() if born[c] < d}
    assert born_before_move and not births & born_before_move
    for table, col in (
        ("health_checkups", "checkup_date"),
        ("vaccinations", "vaccination_date"),
        ("consultations", "received_date"),
    ):
        t = f[table][f[table]["resident_code"].isin(moved.index)]
        assert len(t) > 0, table
        before = t[col] < t["resident_code"].map(moved)
        assert not before.any(), f"{table}: {t[before].head()}"


def test_case_conference_follows_the_first_abuse_or_neglect_consultation(city):
    f = city["parsed"]["frames"]
    cons = f["consultations"]
    first = (
        cons[cons["consultation_type"].isin(["physical_abuse", "neglect"])]
        .groupby("resident_code")["received_date"]
        .min()
    )
    cc = f["case_conference"]
    assert len(cc) > 0
    lag = cc["registered_date"] - cc["resident_code"].map(first)
    assert cc["resident_code"].isin(first.index).all()
    assert (lag >= pd.Timedelta(0)).all() and (lag <= pd.Timedelta(days=183)).all()


def test_consultations_carry_both_young_carer_determinations(city):
    cons = city["parsed"]["frames"]["consultations"]
    yc = cons[cons["consultation_type"] == "young_carer"]["young_carer_determined"]
    assert (yc == True).any() and (yc == False).any()  # noqa: E712


def test_truth_files(city):
    truth = city["raw"] / "_truth"
    tp = pd.read_parquet(truth / "true_probabilities.parquet")
    assert list(tp.columns) == ["resident_code", "fiscal_year", "target", "p"]
    assert tp["resident_code"].dtype == "string"
    assert set(tp["target"]) == {"physical_abuse", "young_carer"}
    assert tp["p"].between(0, 1).all()
    residents = set(city["parsed"]["frames"]["residents"]["resident_code"])
    assert set(tp["resident_code"]) <= residents
    pop = pd.read_parquet(truth / "population.parquet")
    assert {"resident_code", "fiscal_year", "age", "sex", "nationality", "household_type"} <= set(
        pop.columns
    )
    targets = json.loads((truth / "targets.json").read_text(encoding="utf-8"))
    assert targets["outcomes"]["physical_abuse"]["rate"] == 0.0025
    assert "school_aid" in targets["prevalence"]


def test_prevalences_near_targets(tmp_path):
    raw = tmp_path / "raw"
    generate_city(make_cfg(tmp_path, 5000, seed=11), raw)
    pop = pd.read_parquet(raw / "_truth" / "population.parquet")
    kids = pop[pop["is_child"]]
    abuse = kids[kids["age"] <= 15]["physical_abuse"].mean()
    yc = kids[kids["age"].between(10, 15)]["young_carer"].mean()
    assert 0.0025 * 0.65 < abuse < 0.0025 * 1.35
    assert 0.015 * 0.75 < yc < 0.015 * 1.25
    school = kids[kids["grade"] > 0]
    assert abs(school["school_aid"].mean() - 0.14) < 0.01
    assert 0.025 < school["special_needs_class"].mean() < 0.05
    assert 0.008 < kids["public_assistance"].mean() < 0.02
    assert 0.015 < kids["foreign_household"].mean() < 0.035
    assert 0.06 < kids[kids["fiscal_year"] == 2017]["single_parent"].mean() < 0.11
    births = pd.read_csv(next(raw.glob("出生*")), encoding="cp932", dtype=str)["出生体重"]
    w = pd.to_numeric(
        births.map(lambda s: unicodedata.normalize("NFKC", s) if isinstance(s, str) else s),
        errors="coerce",
    )
    assert 0.075 < (w < 2500).mean() < 0.115
    # the oracle beats a count of flags (interactions and last year's changes matter)
    tp = pd.read_parquet(raw / "_truth" / "true_probabilities.parquet")
    assert tp.groupby("target")["p"].max().min() > 0.05


def test_correlated_young_carer_items(city):
    pop = pd.read_parquet(city["raw"] / "_truth" / "population.parquet")
    kids = pop[pop["is_child"]]
    corr = (
        kids[
            [
                "public_assistance",
                "child_rearing_allowance",
                "school_aid",
                "member_75plus",
                "care_need_member",
            ]
        ]
        .astype(float)
        .corr()
    )
    assert corr.loc["child_rearing_allowance", "public_assistance"] > 0.1
    assert corr.loc["member_75plus", "care_need_member"] > 0.3


def test_calibrate_intercept_hits_the_target():
    x = np.random.default_rng(0).normal(size=10_000)
    b = calibrate_intercept(x, 0.01)
    assert abs(sigmoid(b + x).mean() - 0.01) < 1e-6


def test_grade_follows_the_april_2_cohort():
    from helpers.synth.population import day

    births = np.array([day(2016, 4, 2), day(2017, 4, 1), day(2017, 4, 2)])
    assert grade_in(births, 2023).tolist() == [1, 1, 0]


def test_main_with_real_data_checks_exports(tmp_path, capsys):
    cfg = make_cfg(tmp_path, 300)
    cfg = cfg.with_overrides({"run": {"synthetic": False}})
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(MimamoriError, match="住民記録"):
        main(cfg, [])
    generate_city(make_cfg(tmp_path, 300), raw)
    (raw / ".complete").unlink()
    assert main(cfg, []) == 0
    assert (raw / ".complete").exists()
    assert '"stage": "synth"' in (tmp_path / "audit.log").read_text(encoding="utf-8")


def test_main_generates_into_raw_dir(tmp_path):
    cfg = make_cfg(tmp_path, 300)
    out = tmp_path / "elsewhere"
    assert main(cfg, ["--raw-dir", str(out)]) == 0
    assert (out / ".complete").exists() and (out / "_truth" / "defects.csv").exists()


# ---------------------------------------------------------------- overview helpers (report 00)
def test_overview_tables_add_up(city):
    from helpers.reports import overview as O

    pop, targets = O.load_truth(city["raw"])
    year = int(pop["fiscal_year"].max())
    pyr = O.pyramid_counts(pop, year)
    assert pyr["n"].sum() == (pop["fiscal_year"] == year).sum()
    assert list(pyr["age_band"].cat.categories[:2]) == ["0-4", "5-9"]
    hh = O.household_type_table(pop)
    assert np.allclose(hh.groupby("年度")["割合（share）"].sum(), 1.0)
    prev = O.item_prevalence(pop, targets)
    assert prev["割合（rate）"].between(0, 1).all()
    assert prev.loc[prev["item"] == "school_aid", "目標（target）"].iloc[0] == 0.14
    out = O.outcome_counts(pop, targets)
    assert set(out["年度"]) == set(pop["fiscal_year"])
    assert out["件数（events）"].sum() > 0
    defects = O.defect_summary(city["raw"])
    assert defects["行数（rows）"].sum() == len(pd.read_csv(city["raw"] / "_truth" / "defects.csv"))


def test_overview_plots_return_axes_and_hide_small_counts(city):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.reports import overview as O
    from helpers.reports.disclosure import Rules

    pop, targets = O.load_truth(city["raw"])
    prev = O.item_prevalence(pop, targets)
    ax = O.plot_prevalence_vs_target(prev, Rules(9))
    pooled = prev.groupby("item")["該当（n）"].sum()
    shown = len(pooled[(pooled == 0) | (pooled > 9)])
    assert len(ax.get_yticks()) == shown
    out = O.outcome_counts(pop, targets)
    ax2 = O.plot_outcome_rates(out, Rules(10**9))  # every year hidden, axes still drawn
    drawn = [
        np.asarray(line.get_ydata(), float) for line in ax2.get_lines() if line.get_marker() == "o"
    ]
    assert len(drawn) == 2
    assert all(np.nan_to_num(y, nan=0.0).max() == 0 for y in drawn)  # only zero-count years remain
    plt.close("all")


def test_overview_without_truth_says_what_is_missing(tmp_path):
    from helpers.reports import overview as O

    with pytest.raises(MimamoriError, match="population.parquet"):
        O.load_truth(tmp_path)


def test_generator_refuses_to_overwrite_real_exports(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "住民記録_20240401.csv").write_text("宛名番号\n", encoding="utf-8")
    with pytest.raises(MimamoriError, match="synthetic: false"):
        generate_city(make_cfg(tmp_path, 300), raw)
    assert (raw / "住民記録_20240401.csv").exists()
