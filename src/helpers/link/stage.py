"""名寄せ inside ingest: every export whose schema declares ``link_by:`` (no resident code) is
linked to the resident registry before masking.

``link_sources`` fills, for each such table's accepted rows, the real resident code of the
matched person (masked like any resident code afterwards, so the mart holds the pseudonym),
``link_decision`` (auto / clerical / unmatched), ``link_reason`` and, for an unmatched row
with a plausible candidate, ``candidate_code``. No row is dropped. It also reads a filled
clerical workbook, writes the new one, the key master (統合キーマスタ) and returns the
linkage report (``_linkage_report.json``). On the synthetic city it measures precision and
recall against ``_truth/identity_links.csv``.

At scale (a 500,000-child prefecture: 2M residents, a 1.85M-row school export): identities
are standardised once per distinct spelling, only registry people born in the sources' years
are standardised, a source's rows collapse to distinct records, the model is estimated once on
at most ``link.train_records`` records, and the records are scored in birth-year parts of at most
``link.part_records`` (each with only the registry people of its years when every blocking rule
needs the same birth year), keeping per record the pairs ``assign`` reads.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers import io as hio
from helpers.config import LinkSettings, Settings, config_hash
from helpers.ingest.masking import make_private, private_dir
from helpers.link import clerical
from helpers.link.assign import assign
from helpers.link.evaluate import probability_estimates, truth_metrics
from helpers.link.model import score, summary, train
from helpers.link.standardise import (
    ID_COLUMNS,
    IDENTITY_ROLES,
    LINK_COLUMNS,
    fold_kana,
    map_unique,
    standardise,
)
from helpers.paths import Paths
from helpers.schema import TableSchema

REGISTRY_ROLES = {
    "name": "name",
    "name_kana": "name_kana",
    "birth_date": "birth_date",
    "sex": "sex",
    "address": "address",
}
KEY_MASTER_COLUMNS = [
    "table",
    "file",
    "source_row",
    "record_id",
    "resident_code",
    "match_probability",
    "decision",
    "reason",
    "linked_on",
]
LINK_FIELDS = ("resident_code", "link_decision", "link_reason", "candidate_code")
HIST_EDGES = list(range(-20, 31, 2))
# records per scoring part (birth years grouped up to this), and at most this many records
# estimate the model: a 500,000-child city's school export is scored in ~10 parts, each in
# its own DuckDB connection, so memory stays bounded; the default city is one part
EMPTY_PAIRS = pd.DataFrame(
    {
        "record_id": pd.Series(dtype="object"),
        "resident_code": pd.Series(dtype="object"),
        "match_weight": pd.Series(dtype="float64"),
        "match_probability": pd.Series(dtype="float64"),
    }
)


def link_tables(schemas: Mapping[str, TableSchema]) -> list[str]:
    return sorted(t for t, s in schemas.items() if s.link_by)


def link_fingerprint(cfg: Settings, P: Paths) -> str:
    """What the linkage depends on besides the exports: its settings, code, staff decisions."""
    h = hashlib.sha256(config_hash(cfg, ("link",)).encode())
    for p in [*sorted(Path(__file__).parent.glob("*.py")), P.linkage_review, P.linkage_decisions]:
        if p.exists():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def registry_surnames(residents: pd.DataFrame) -> frozenset[str]:
    """Every kana surname the registry writes with a space (``split_name``'s first part),
    computed once per distinct spelling."""
    kana = pd.Series(residents["name_kana"].dropna().unique(), dtype="object").astype(str)
    parts = kana.str.normalize("NFKC").str.strip().str.split(r"[\s\u3000]+", n=1, regex=True)
    first = parts[parts.str.len() == 2].str[0].drop_duplicates()
    return frozenset(s for s in map_unique(first, fold_kana) if s)


def registry_frame(
    residents: pd.DataFrame, years: tuple[int, int] | None = None
) -> tuple[pd.DataFrame, frozenset[str]]:
    """The registry's standardised identity columns (unique_id ``R:<code>``), its surnames;
    ``years``: only people born in these years (inclusive) are standardised."""
    res = residents.dropna(subset=["resident_code"]).drop_duplicates("resident_code")
    surnames = registry_surnames(res)
    if years is not None:
        born = pd.to_datetime(res["birth_date"], errors="coerce").dt.year
        res = res[born.between(*years).to_numpy()]
    std = standardise(res, REGISTRY_ROLES, surnames)
    std.insert(0, "unique_id", "R:" + res["resident_code"].astype(str))
    return std.reset_index(drop=True), surnames


def birth_years(valid: pd.DataFrame, schema: TableSchema) -> tuple[int, int] | None:
    """The first and last birth year a code-less export writes (None without any)."""
    col = schema.link_by.get("birth_date")
    if col not in valid:
        return None
    years = pd.to_datetime(valid[col], errors="coerce").dt.year.dropna()
    return (int(years.min()), int(years.max())) if len(years) else None


def _record_ids(std: pd.DataFrame, table: str, key_fp: str) -> pd.Series:
    text = std[ID_COLUMNS].astype("object").where(std[ID_COLUMNS].notna(), "").astype(str)
    joined = text.iloc[:, 0].str.cat([text[c] for c in ID_COLUMNS[1:]], sep="|")
    return joined.map(lambda s: hashlib.sha256(f"{key_fp}|{table}|{s}".encode()).hexdigest()[:16])


def _check_fields(valid: pd.DataFrame, schema: TableSchema, files: list[str]) -> None:
    cols = [c for c in schema.link_by.values() if c in valid]
    if len(valid) and (not cols or not valid[cols].notna().any().any()):
        raise MimamoriError(
            f"{schema.table} ({', '.join(files) or 'export'}): none of its link_by fields "
            f"({', '.join(schema.link_by.values())}) has a value in any row; the records cannot "
            "be linked to the resident registry (名寄せ). Check the export's columns"
        )


def _source_frame(
    valid: pd.DataFrame, schema: TableSchema, surnames: frozenset[str], key_fp: str
) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Each row's record id and pre-linkage reason, and the distinct standardised identities
    (a school export repeats a pupil's identity in every row: standardised once)."""
    roles = {r: c for r, c in schema.link_by.items() if r in IDENTITY_ROLES}
    cols = list(dict.fromkeys(roles.values()))
    groups = valid.groupby(cols, dropna=False, sort=False).ngroup().to_numpy()
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # distinct identities in order of appearance
    codes = np.empty_like(order)
    codes[order] = np.arange(len(order))
    codes, first = codes[inverse], first[order]
    uniq = standardise(valid[cols].iloc[first].reset_index(drop=True), roles, surnames)
    uniq["record_id"] = _record_ids(uniq, schema.table, key_fp).to_numpy()
    reason = pd.Series(None, index=uniq.index, dtype="object")
    reason[uniq["birth_date"].isna()] = "no_birth_date"
    reason[uniq["full_kana"].isna() & uniq["name_kanji"].isna()] = "no_identity"
    rows = pd.DataFrame({"record_id": uniq["record_id"].to_numpy()[codes]}, index=valid.index)
    pre = pd.Series(reason.to_numpy()[codes], index=valid.index, dtype="object")
    return rows, pre, uniq[reason.isna().to_numpy()]


def _bounded_registry(registry: pd.DataFrame, src: pd.DataFrame, slack: int) -> pd.DataFrame:
    years = src["birth_year"].dropna()
    if years.empty:
        return registry.iloc[:0]
    lo, hi = int(years.min()) - slack, int(years.max()) + slack
    return registry[registry["birth_year"].between(lo, hi)].reset_index(drop=True)


def _year_groups(src: pd.DataFrame, part_records: int) -> list[list[int]]:
    """Consecutive birth years, grouped so a group holds at most ``part_records`` records (a
    single year may exceed it)."""
    groups: list[list[int]] = []
    n = 0
    for year, count in src["birth_year"].value_counts().sort_index().items():
        if not groups or n + count > part_records:
            groups.append([])
            n = 0
        groups[-1].append(int(year))
        n += int(count)
    return groups


def year_bound(link: LinkSettings, has: set[str]) -> bool:
    """Whether every blocking rule in use needs the same birth year on both sides (then a part
    of the source needs only the registry people born in its years)."""
    used = [c for c in link.blocking_rules if all(x in has or x == "birth_swap" for x in c)]
    return all({"birth_date", "birth_swap", "birth_year", "birth_month"} & set(c) for c in used)


def _training_sample(src: pd.DataFrame, train_records: int) -> pd.DataFrame:
    """At most ``train_records`` records for estimating the model: those with the smallest
    record ids (keyed hashes, so a fixed pseudo-random sample), in their order."""
    if len(src) <= train_records:
        return src
    cut = np.sort(src["unique_id"].to_numpy())[train_records - 1]
    return src[(src["unique_id"] <= cut).to_numpy()]


def _score_parts(
    cfg: Settings, model: dict, reg: pd.DataFrame, src: pd.DataFrame, has: set[str], mine
) -> dict:
    """Score and assign the source part by part (birth-year groups); keep per record its
    decision and best weight, and only the pairs clerical review needs."""
    bound = year_bound(cfg.link, has)
    results, best, pend = [], [], []
    n_pairs = 0
    with tempfile.TemporaryDirectory(prefix="mimamori-link-") as tmp:
        for years in tqdm(_year_groups(src, cfg.link.part_records), desc="link parts", leave=False):
            part = src[src["birth_year"].isin(years).to_numpy()]
            r = reg[reg["birth_year"].isin(years).to_numpy()] if bound else reg
            records = pd.Index(part["unique_id"].str.slice(2))
            staff = records.intersection(pd.Index(mine["record_id"]))
            pairs, n = score(model, r, part, cfg.link, tmp, staff) if len(r) else (EMPTY_PAIRS, 0)
            res = assign(pairs, records, cfg.link, mine)
            n_pairs += n
            best.append(pairs.groupby("record_id")["match_weight"].max())
            asked = res.loc[res["pending"].map(len) > 0, ["record_id", "pending"]].explode(
                "pending"
            )
            wanted = pd.MultiIndex.from_arrays([asked["record_id"], asked["pending"]])
            key = pd.MultiIndex.from_arrays([pairs["record_id"], pairs["resident_code"]])
            pend.append(pairs[key.isin(wanted)])
            results.append(res)
            del pairs
    return {
        "result": pd.concat(results, ignore_index=True).set_index("record_id"),
        "pairs": pd.concat(pend, ignore_index=True) if pend else EMPTY_PAIRS,
        "best_weight": pd.concat(best) if best else pd.Series(dtype="float64"),
        "candidate_pairs": n_pairs,
    }


def link_table(
    cfg: Settings,
    schema: TableSchema,
    valid: pd.DataFrame,
    registry: pd.DataFrame,
    surnames: frozenset[str],
    key_fp: str,
    decided: pd.DataFrame,
) -> dict:
    """Link one table's rows: per-row record ids and reasons, the assignment per record, the
    pairs awaiting review, the model. The model is estimated once (on at most
    ``link.train_records`` records); the source is then scored in birth-year parts."""
    std, pre, uniq = _source_frame(valid, schema, surnames, key_fp)
    src = uniq.drop_duplicates("record_id").copy()
    src.insert(0, "unique_id", "S:" + src.pop("record_id"))
    src = src[["unique_id", *LINK_COLUMNS]]
    reg = _bounded_registry(registry, src, cfg.link.birth_year_slack)[["unique_id", *LINK_COLUMNS]]
    has = {c for c in LINK_COLUMNS if src[c].notna().any() and reg[c].notna().any()}
    mine = decided[decided["table"] == schema.table]
    model: dict = {}
    if len(src) and len(reg):
        with tempfile.TemporaryDirectory(prefix="mimamori-link-") as tmp:
            model = train(reg, _training_sample(src, cfg.link.train_records), cfg.link, has, tmp)
    else:
        src = src.iloc[:0]
    scored = _score_parts(cfg, model, reg, src, has, mine)
    result = scored["result"]
    if len(src) == 0:
        records = pd.Index(uniq["record_id"].drop_duplicates())
        result = assign(EMPTY_PAIRS, records, cfg.link, mine).set_index("record_id")
    return {
        "std": std,
        "pre": pre,
        "result": result,
        "pairs": scored["pairs"],
        "best_weight": scored["best_weight"],
        "candidate_pairs": scored["candidate_pairs"],
        "model": summary(model) if model else {},
        "registry_n": len(reg),
    }


def _fill(valid: pd.DataFrame, linked: dict) -> pd.DataFrame:
    """The link fields of every row (real resident codes; masking pseudonymises them)."""
    std, pre, result = linked["std"], linked["pre"], linked["result"]
    per_row = result.reindex(std["record_id"].to_numpy())
    per_row.index = valid.index
    out = valid.copy()
    out["resident_code"] = per_row["resident_code"].where(pre.isna()).astype("object")
    out["link_decision"] = per_row["decision"].where(pre.isna(), "unmatched").astype("object")
    out["link_reason"] = pre.fillna(per_row["reason"]).astype("object")
    out["candidate_code"] = per_row["candidate_code"].where(pre.isna()).astype("object")
    for c in LINK_FIELDS:
        out[c] = out[c].where(out[c].notna(), None)
    return out


def _pending(
    table: str, linked: dict, valid: pd.DataFrame, schema: TableSchema, residents: pd.DataFrame
) -> pd.DataFrame:
    """Pairs awaiting a clerical decision, with both records' fields for the workbook."""
    res = linked["result"]
    rows = [(rid, code) for rid, codes in res["pending"].items() for code in codes]
    if not rows:
        return pd.DataFrame()
    pend = pd.DataFrame(rows, columns=["record_id", "resident_code"])
    pend = pend.merge(linked["pairs"], on=["record_id", "resident_code"], how="left")
    first = (
        valid.assign(record_id=linked["std"]["record_id"].to_numpy())
        .drop_duplicates("record_id")
        .set_index("record_id")
        .reindex(pend["record_id"])
    )
    reg = (
        residents.drop_duplicates("resident_code")
        .set_index("resident_code")
        .reindex(pend["resident_code"])
    )
    lb = schema.link_by

    def src(role: str) -> np.ndarray:
        return first[lb[role]].astype(str).to_numpy() if role in lb else np.full(len(pend), "")

    pend["table"] = table
    pend["pair_id"] = [
        clerical.pair_id(table, r, c)
        for r, c in zip(pend["record_id"], pend["resident_code"], strict=True)
    ]
    for role, key in (
        ("name", "name"),
        ("name_kana", "kana"),
        ("birth_date", "birth"),
        ("sex", "sex"),
        ("address", "address"),
        ("guardian_name", "guardian"),
    ):
        pend[f"src_{key}"] = src(role)
        if role in REGISTRY_ROLES:
            pend[f"reg_{key}"] = reg[REGISTRY_ROLES[role]].astype(str).to_numpy()
    gam = [c for c in pend.columns if c.startswith("gamma_")]
    pend["levels"] = pend[gam].astype(str).agg(" ".join, axis=1) if gam else ""
    pend["match_probability"] = pend["match_probability"].round(4)
    for c in clerical.SHOWN:
        if c not in pend:
            pend[c] = ""
    return pend


def linked_on(cfg: Settings, filled: pd.DataFrame) -> str | None:
    """The key master's date: ``run.export_date`` when configured, else the extraction date
    the export's file names carry (``..._20240331.csv``), else unknown; never the clock, so a
    rerun on the same exports writes the same key master."""
    if cfg.run.export_date:
        return str(cfg.run.export_date)
    stamps = filled["source_file"].astype(str).str.extract(r"_(\d{8})(?:\.\w+)?$")[0].dropna()
    days = pd.to_datetime(stamps, format="%Y%m%d", errors="coerce").dropna()
    return days.max().date().isoformat() if len(days) else None


def _key_master(table: str, filled: pd.DataFrame, linked: dict, today: str | None) -> pd.DataFrame:
    res = linked["result"].reindex(linked["std"]["record_id"].to_numpy())
    return pd.DataFrame(
        {
            "table": table,
            "file": filled["source_file"].to_numpy(),
            "source_row": filled["source_row"].to_numpy(),
            "record_id": linked["std"]["record_id"].to_numpy(),
            "resident_code": filled["resident_code"].to_numpy(),
            "match_probability": res["match_probability"].astype("float64").to_numpy(),
            "decision": filled["link_decision"].to_numpy(),
            "reason": filled["link_reason"].to_numpy(),
            "linked_on": today,
        }
    )


def _histogram(linked: dict) -> dict:
    best = linked["best_weight"]
    counts, _ = np.histogram(best.clip(HIST_EDGES[0], HIST_EDGES[-1]), bins=HIST_EDGES)
    return {"edges": HIST_EDGES, "counts": [int(c) for c in counts]}


def table_summary(filled: pd.DataFrame, linked: dict, cfg: Settings) -> dict:
    dec = filled["link_decision"].value_counts()
    res = linked["result"]
    lk = cfg.link
    return {
        "rows": int(len(filled)),
        "records": int(linked["std"]["record_id"].nunique()),
        "auto": int(dec.get("auto", 0)),
        "clerical": int(dec.get("clerical", 0)),
        "unmatched": int(dec.get("unmatched", 0)),
        "unmatched_reasons": {
            str(k): int(v) for k, v in filled["link_reason"].dropna().value_counts().items()
        },
        "clerical_pairs_pending": int(res["pending"].map(len).sum()),
        "clerical_records_pending": int((res["pending"].map(len) > 0).sum()),
        "candidate_pairs": int(linked["candidate_pairs"]),
        "registry_candidates": linked["registry_n"],
        "thresholds": {
            "accept_probability": lk.accept_probability,
            "clerical_probability": lk.clerical_probability,
            "accept_weight": float(np.log2(lk.accept_probability / (1 - lk.accept_probability))),
            "clerical_weight": float(
                np.log2(lk.clerical_probability / (1 - lk.clerical_probability))
            ),
            "margin_weight": lk.margin_weight,
        },
        "best_weight_histogram": _histogram(linked),
        "estimates": probability_estimates(res),  # real data: no truth, model's estimate
        "model": linked["model"],
    }


def link_sources(
    cfg: Settings,
    results: Mapping,
    schemas: Mapping[str, TableSchema],
    key: bytes,
    P: Paths,
    raw_dir: Path,
) -> dict:
    """Link every ``link_by`` table in ``results`` (TableResult per table) in place; returns
    the linkage report. Needs the residents export."""
    tables = [t for t in link_tables(schemas) if t in results]
    if not tables:
        return {}
    if "residents" not in results:
        raise MimamoriError(
            f"{tables}: these exports carry no resident code and are linked to "
            "the resident registry (名寄せ), but there is no residents export"
        )
    key_fp = clerical.key_fingerprint(key)
    decided = clerical.collect(
        P.linkage_review, P.linkage_review_pairs, P.linkage_decisions, key_fp
    )
    residents = results["residents"].valid
    spans = [y for t in tables if (y := birth_years(results[t].valid, schemas[t]))]
    slack = cfg.link.birth_year_slack
    years = (min(a for a, _ in spans) - slack, max(b for _, b in spans) + slack) if spans else None
    registry, surnames = registry_frame(residents, years or (0, -1))
    report, masters, pending = {}, [], []
    for table in tqdm(tables, desc="link (名寄せ)", leave=False):
        res = results[table]
        _check_fields(res.valid, schemas[table], sorted(res.valid["source_file"].unique()))
        linked = link_table(cfg, schemas[table], res.valid, registry, surnames, key_fp, decided)
        filled = _fill(res.valid, linked)
        res.valid = filled
        report[table] = table_summary(filled, linked, cfg)
        if cfg.run.synthetic:
            report[table]["truth"] = truth_metrics(filled, raw_dir, residents, P)
        masters.append(_key_master(table, filled, linked, linked_on(cfg, filled)))
        pending.append(_pending(table, linked, res.valid, schemas[table], residents))
    private_dir(P.private)
    km = pd.concat(masters, ignore_index=True)[KEY_MASTER_COLUMNS]
    make_private(hio.write_parquet(km, P.key_master))
    pend = (
        pd.concat([p for p in pending if len(p)], ignore_index=True)
        if any(len(p) for p in pending)
        else pd.DataFrame()
    )
    clerical.write_workbook(pend, P.linkage_review, P.linkage_review_pairs)
    return {
        "tables": report,
        "engine": cfg.link.engine,
        "decisions_on_file": int(len(decided)),
        "clerical_workbook": P.linkage_review.name if len(pend) else None,
        "settings": json.loads(json.dumps(cfg.link.as_dict())),
    }


def main(cfg: Settings, argv: list[str]) -> int:
    """``python -m helpers link``: validate the registry and the code-less exports and link
    them (key master and clerical workbook written; the mart is ingest's)."""
    import argparse
    import time

    from helpers.ingest.masking import load_key
    from helpers.ingest.stage import validate_all
    from helpers.paths import paths
    from helpers.schema import load_schemas

    parser = argparse.ArgumentParser(prog="python -m helpers link")
    parser.add_argument("--raw-dir", type=Path, default=None, help="exports (default data/raw)")
    parser.add_argument(
        "--simulate-clerical",
        action="store_true",
        help="synthetic city only: answer the pending clerical workbook from the truth (模擬); "
        "the next ingest reads the answers like staff's",
    )
    args = parser.parse_args(argv)
    P = paths(cfg)
    if args.simulate_clerical:
        from helpers.link.simulate import simulate_clerical

        done = simulate_clerical(cfg, P)
        print(
            f"link: simulated clerical review (模擬): {done['same']} 同一, {done['different']} 別人 "
            f"written to {P.linkage_review.name}; run `python -m helpers ingest` to apply them"
        )
        return 0
    raw_dir = args.raw_dir or P.raw
    schemas = load_schemas()
    wanted = {t: schemas[t] for t in ["residents", *link_tables(schemas)]}
    _scan, results, _info, _missing = validate_all(cfg, raw_dir, wanted)
    key, _source = load_key(cfg)
    t0 = time.perf_counter()
    report = link_sources(cfg, results, schemas, key, P, raw_dir)
    seconds = time.perf_counter() - t0
    for table, r in report.get("tables", {}).items():
        truth = r.get("truth") or {}
        print(
            f"link: {table}: {r['rows']} rows, {r['auto']} auto, {r['clerical']} clerical, "
            f"{r['unmatched']} unmatched; precision {truth.get('auto_precision')}, recall "
            f"{truth.get('auto_recall')}, clerical band {truth.get('clerical_band_share')}"
        )
    print(f"link: {seconds:.1f} s ({cfg.link.engine})")
    return 0
