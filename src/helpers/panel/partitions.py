"""The panel on the dask engine: one task per hash partition of child_id.

Every panel column is a fact about one child (the household items read the whole household,
which the task has: it reads the whole mart), so a partition's rows equal the same rows of
the whole panel. Each task reads the mart, builds every fiscal year for its children and
writes them to a scratch folder next to the panel (workers share the data folder); this
process then puts each year's partitions together in the local engine's row order (child_id)
and writes panel.parquet with one row group per year, byte-identical to the local engine.
What is computed over all rows is computed once here: the export spans (``Coverage``, from
the whole mart), missingness and the catalogue; the leakage check's per-partition results
are combined exactly (rows summed, changed features united).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from helpers.config import Settings
from helpers.engine import child_partition, run_tasks
from helpers.panel import features as F
from helpers.panel import stage as S
from helpers.panel.coverage import Coverage
from helpers.paths import Paths, paths

# tables read only about the child a row names (checkups, consultations, ...): a task needs
# only its children's rows. Household sources (care, handbooks, allowances, the register of
# siblings, residents of members) are read about other household members and stay whole.
CHILD_TABLES = (
    "health_checkups",
    "vaccinations",
    "consultations",
    "progress_records",
    "birth_status",
    "case_conference",
    "nursery_enrolment",
)
# sources read about household members: a partition needs the rows of the people who share
# a household with its children at some time (residents for ages, spans for membership)
PERSON_TABLES = (
    "residents",
    "household_history",
    "long_term_care",
    "disability_handbooks",
    "independence_support",
    "allowances",
    "school_aid",
)
NOTE_COUNTS = ("children", "no_household", "household_member_unknown", "in_movers")


def partition_children(decoder: pd.Index, part: int, n: int) -> np.ndarray:
    """Key codes of the residents in hash partition ``part`` of ``n`` (by pseudonym)."""
    return np.flatnonzero(child_partition(decoder.to_numpy(), n) == part)


def own_rows(mart: dict[str, pd.DataFrame], children: np.ndarray) -> dict[str, pd.DataFrame]:
    """The mart cut to the rows a partition can read, in mart order: CHILD_TABLES to its
    children's rows, PERSON_TABLES to the rows of everyone who ever shared a household
    with one of them (every member the household items can look at, with all their spans);
    the school register and attendance (linked by student id) and 生活保護 stay whole."""
    kids = pd.Index(children)
    hh = mart["household_history"]
    households = pd.Index(hh.loc[F.codes_in(hh["resident_code"], kids), "household_code"].dropna())
    shared = F.codes_in(hh["household_code"], households.unique())
    people = pd.Index(np.union1d(hh.loc[shared, "resident_code"].dropna().to_numpy(), children))
    out = dict(mart)
    for table in CHILD_TABLES:
        out[table] = mart[table][F.codes_in(mart[table]["resident_code"], kids)]
    for table in PERSON_TABLES:  # a row without a code stays: the whole-mart rules see it too
        code = mart[table]["resident_code"]
        out[table] = mart[table][F.codes_in(code, people) | code.isna().to_numpy(dtype=bool)]
    return out


def panel_partition(
    part: int, cfg: Settings, coverage: Coverage, scratch: str, leakage: bool
) -> dict:
    """One task: every fiscal year of one partition's children written to ``scratch``
    (one parquet file per year), its notes and its share of the leakage check (whose
    ``records_removed_by_cut`` counts only the rows this task kept)."""
    mart, decoders = S.load_encoded_mart(paths(cfg).mart)
    children = partition_children(decoders["resident_code"], part, cfg.run.dask.partitions)
    mart = own_rows(mart, children)
    schema = S.arrow_schema(F.feature_registry(cfg))
    notes: dict[int, dict] = {}
    files: dict[int, str] = {}
    kept: dict = {}
    frames = S.iter_panel_years(
        mart,
        cfg,
        progress=False,
        decoders=decoders,
        coverage=coverage,
        notes=notes,
        children=children,
    )
    for frame in S.keep_year(frames, S.leakage_year(cfg), kept):
        if not len(frame):
            continue
        fy = int(frame["fiscal_year"].iat[0])
        files[fy] = str(Path(scratch) / f"part{part:05d}-fy{fy}.parquet")
        pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), files[fy])
        del frame
    check = (
        S.leakage_check(
            mart,
            cfg,
            decoders=decoders,
            coverage=coverage,
            children=children,
            full=kept.pop("frame", None),
        )
        if leakage
        else None
    )
    return {"notes": notes, "files": files, "leakage": check}


def merge_notes(parts: list[dict[int, dict]]) -> dict[int, dict]:
    """Per-year notes of the whole panel: counts summed over partitions."""
    out: dict[int, dict] = {}
    for notes in parts:
        for fy, note in notes.items():
            if fy not in out:
                out[fy] = dict(note)
            else:
                for key in NOTE_COUNTS:
                    out[fy][key] += note[key]
    return out


def merge_leakage(parts: list[dict], features: list[str]) -> dict:
    """The whole panel's leakage check from the partitions' checks (``features`` in registry
    order): features are compared only when every partition has the same children in both
    builds, as the local check compares them only when the whole year has."""
    same = all(p["same_children"] for p in parts)
    changed = {c for p in parts for c in p["features_changed"]} if same else set()
    out = dict(parts[0])
    out["rows_compared"] = int(sum(p["rows_compared"] for p in parts))
    out["same_children"] = bool(same)
    out["features_changed"] = [c for c in features if c in changed]
    out["passed"] = bool(same and not changed and not out["features_from_post_outcome_tables"])
    return out


def combine_year(files: list[str]) -> pa.Table:
    """One year's partitions as one table in the local engine's row order (by child_id)."""
    table = pa.concat_tables([pq.read_table(f) for f in files])
    order = np.argsort(table.column("child_id").to_numpy(zero_copy_only=False), kind="stable")
    return table.take(pa.array(order)).combine_chunks()


def dask_panel(
    cfg: Settings, P: Paths, coverage: Coverage, removed: dict[str, int] | None
) -> tuple[dict, dict | None]:
    """Build the panel as one task per partition and write it like the local engine;
    ``removed``: the whole mart's ``records_removed_by_cut`` (None: no leakage check)."""
    leakage = removed is not None
    n = cfg.run.dask.partitions
    P.panel_dir.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".partitions-", dir=P.panel_dir)
    try:
        task = functools.partial(
            panel_partition, cfg=cfg, coverage=coverage, scratch=scratch, leakage=leakage
        )
        results = run_tasks(cfg, task, list(range(n)), "panel (partitions)")
        notes = merge_notes([r["notes"] for r in results])
        years = sorted({fy for r in results for fy in r["files"]})
        frames = (
            combine_year([r["files"][fy] for r in results if fy in r["files"]]) for fy in years
        )
        summary = S.write_frames(frames, cfg, P, coverage, notes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    features = [s.name for s in F.feature_registry(cfg) if s.role == "feature"]
    check = None
    if removed is not None:
        check = merge_leakage([r["leakage"] for r in results], features)
        check["records_removed_by_cut"] = removed
    return summary, check
