"""名寄せ inside ingest: every export whose schema declares ``link_by:`` (no resident code) is
linked to the resident registry before masking.

``link_sources`` fills, for each such table's accepted rows, the real resident code of the
matched person (masked like any resident code afterwards, so the mart holds the pseudonym),
``link_decision`` (auto / clerical / unmatched), ``link_reason`` and, for an unmatched row
with a plausible candidate, ``candidate_code``. No row is dropped. It also reads a filled
clerical workbook, writes the new one, the key master (統合キーマスタ) and returns the
linkage report (``_linkage_report.json``). On the synthetic city it measures precision and
recall against ``_truth/identity_links.csv``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers import io as hio
from helpers.config import Settings, config_hash
from helpers.ingest.masking import make_private, private_dir
from helpers.link import clerical
from helpers.link.assign import assign
from helpers.link.evaluate import probability_estimates, truth_metrics
from helpers.link.model import predict
from helpers.link.standardise import LINK_COLUMNS, split_name, standardise
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


def link_tables(schemas: Mapping[str, TableSchema]) -> list[str]:
    return sorted(t for t, s in schemas.items() if s.link_by)


def link_fingerprint(cfg: Settings, P: Paths) -> str:
    """What the linkage depends on besides the exports: its settings, code, staff decisions."""
    h = hashlib.sha256(config_hash(cfg, ("link",)).encode())
    for p in [*sorted(Path(__file__).parent.glob("*.py")), P.linkage_review, P.linkage_decisions]:
        if p.exists():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def registry_frame(residents: pd.DataFrame) -> tuple[pd.DataFrame, frozenset[str]]:
    """The registry's standardised identity columns (unique_id ``R:<code>``), its surnames."""
    res = residents.dropna(subset=["resident_code"]).drop_duplicates("resident_code")
    surnames = frozenset(s for s, _ in res["name_kana"].map(split_name) if s)
    std = standardise(res, REGISTRY_ROLES, surnames)
    std.insert(0, "unique_id", "R:" + res["resident_code"].astype(str))
    return std.reset_index(drop=True), surnames


def _record_ids(std: pd.DataFrame, table: str, key_fp: str) -> pd.Series:
    text = std[LINK_COLUMNS].astype("object").where(std[LINK_COLUMNS].notna(), "")
    joined = text.astype(str).agg("|".join, axis=1)
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
) -> tuple[pd.DataFrame, pd.Series]:
    """Standardised rows with their record id, and the rows' pre-linkage reason."""
    std = standardise(valid, schema.link_by, surnames)
    std["record_id"] = _record_ids(std, schema.table, key_fp).to_numpy()
    reason = pd.Series(None, index=valid.index, dtype="object")
    reason[std["birth_date"].isna()] = "no_birth_date"
    reason[std["full_kana"].isna() & std["name_kanji"].isna()] = "no_identity"
    return std, reason


def _bounded_registry(registry: pd.DataFrame, src: pd.DataFrame, slack: int) -> pd.DataFrame:
    years = src["birth_year"].dropna()
    if years.empty:
        return registry.iloc[:0]
    lo, hi = int(years.min()) - slack, int(years.max()) + slack
    return registry[registry["birth_year"].between(lo, hi)].reset_index(drop=True)


def link_table(
    cfg: Settings,
    schema: TableSchema,
    valid: pd.DataFrame,
    registry: pd.DataFrame,
    surnames: frozenset[str],
    key_fp: str,
    decided: pd.DataFrame,
) -> dict:
    """Link one table's rows: per-row results, the assignment per record, pairs, model."""
    std, pre = _source_frame(valid, schema, surnames, key_fp)
    ok = pre.isna().to_numpy()
    src = std[ok].drop_duplicates("record_id").copy()
    src.insert(0, "unique_id", "S:" + src.pop("record_id"))
    src = src[["unique_id", *LINK_COLUMNS]]
    reg = _bounded_registry(registry, src, cfg.link.birth_year_slack)[["unique_id", *LINK_COLUMNS]]
    has = {c for c in LINK_COLUMNS if src[c].notna().any() and reg[c].notna().any()}
    if len(src) and len(reg):
        pairs, model = predict(reg, src, cfg.link, has)
    else:
        pairs, model = (
            pd.DataFrame(
                columns=["record_id", "resident_code", "match_weight", "match_probability"]
            ),
            {},
        )
    mine = decided[decided["table"] == schema.table]
    records = pd.Index(src["unique_id"].str.slice(2))
    result = assign(pairs, records, cfg.link, mine).set_index("record_id")
    return {
        "std": std,
        "pre": pre,
        "result": result,
        "pairs": pairs,
        "model": model,
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


def _key_master(table: str, filled: pd.DataFrame, linked: dict, today: str) -> pd.DataFrame:
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
    best = (
        linked["pairs"].groupby("record_id")["match_weight"].max()
        if len(linked["pairs"])
        else pd.Series(dtype="float64")
    )
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
        "candidate_pairs": int(len(linked["pairs"])),
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
    registry, surnames = registry_frame(residents)
    today = dt.date.today().isoformat()
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
        masters.append(_key_master(table, filled, linked, today))
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
