"""Review lists and the verification loop: draw, blind, export, read verdicts back, analyse.

The list length is set by staff capacity, not by a probability cut-off; ties in the score are
broken by a seeded random number (as the reference did). Whether the list finds children who
need support is checked by a blinded sample: ``n_high`` from the top and ``n_low`` at random
from the bottom part of the ranking, shuffled, so reviewers cannot tell the arms apart.

Definition used throughout: a reviewed child **needs support** when the reviewer answered
有 to 家庭状況で気になること (concern about the family situation) **or** to 本人からの訴え
(the child has raised something). その他 alone does not count.

CLI: ``python -m helpers review draw|simulate|verdicts|reidentify``. Outputs go to
``data/review/`` (re-identified lists only to ``data/private/``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from helpers import MimamoriError, oracle
from helpers.config import ReviewSettings, Settings
from helpers.ingest.masking import make_private, private_dir
from helpers.io import append_audit, write_csv, write_json, write_parquet
from helpers.models.explain import reason_frequencies  # noqa: F401 - the list report uses it
from helpers.models.population import Population, population_for
from helpers.paths import paths as artefact_paths
from helpers.review.blind import SHEET_FEATURES, arm_predictability, stratified_low_arm
from helpers.review.sheets import (
    NO,
    YES,
    read_verdict_file,
    reviewer_frame,
    validate_verdicts,
    write_reviewer_workbook,
    write_staff_workbook,
)
from helpers.review.stats import (
    arm_rates,
    compare_rounds,
    fisher_high_low,
    item_prevalence,
    power_table,
)

SCORE_COLUMNS = (
    "child_id",
    "fiscal_year",
    "score",
    "probability",
    "risk_ratio",
    "rank",
    "reason_1",
    "reason_2",
    "reason_3",
    "label",
    "known",
)
INFO_COLUMNS = (
    "child_id",
    "fiscal_year",
    "age",
    "school_age",
    "grade",
    "school_code",
    "school_district",
    "sex",
)
NEEDS_SUPPORT_DEFINITION = (
    "要支援＝「家庭状況で気になること」が有 または「本人からの訴え」が有 "
    "(needs support = 有 to either question; その他 alone does not count)"
)
# Seed offsets so the tie-break, the sample and the simulation use independent streams.
SEED_TIEBREAK, SEED_SAMPLE, SEED_SIMULATE = 0, 1, 2
AGE_BINS = [0, 3, 6, 9, 12, 16, 200]
AGE_LABELS = ["0–2歳", "3–5歳", "6–8歳", "9–11歳", "12–15歳", "16歳以上"]


# ---------------------------------------------------------------------------------- paths
REVIEW_ARTEFACTS = (
    "capacity_list",
    "staff_list",
    "sample",
    "sheets",
    "power",
    "exclusions",
    "draw_summary",
    "arm_balance",
    "verdicts_in",
    "verdicts",
    "arm_rates",
    "item_prevalence",
    "rounds",
    "results",
)


def review_paths(cfg: Settings, target: str = "") -> dict[str, Path]:
    """Every file the review stage reads or writes, from the artefact catalogue
    (``helpers.paths``; ``target`` overrides ``review.target``)."""
    P = artefact_paths(cfg)
    R = P.review(target or cfg.review.target)
    return {
        "root": P.data,
        "scores": R.scores,
        "panel": P.panel,
        "catalogue": P.feature_catalogue,
        "truth": P.truth_probabilities,
        "correspondence": P.correspondence,  # ingest --write-correspondence
        "private": P.private,
        "review": R.dir,
        **{key: getattr(R, key) for key in REVIEW_ARTEFACTS},
    }


# ------------------------------------------------------------------------------- loading
def load_scores(path: Path) -> pd.DataFrame:
    """The model's scores (contract in docs/architecture.md); a clear error when absent or short."""
    if not path.exists():
        raise MimamoriError(f"{path}: not found (run `python -m helpers models` first)")
    scores = pd.read_parquet(path)
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise MimamoriError(f"{path}: missing column(s) {missing}")
    if scores["child_id"].isna().any():
        row = int(np.flatnonzero(scores["child_id"].isna().to_numpy())[0])
        raise MimamoriError(f"{path}: row {row}, column child_id: blank pseudonym")
    return scores


def scoring_year(scores: pd.DataFrame, cfg: Settings) -> int:
    """The year the list is drawn for: ``review.scoring_year`` if set, else the latest scored year."""
    year = cfg.review.scoring_year
    years = set(scores["fiscal_year"].dropna().astype(int))
    if year is None:
        if not years:
            raise MimamoriError("scores.parquet: no rows")
        return max(years)
    if int(year) not in years:
        raise MimamoriError(
            f"config review.scoring_year={year}: no scores for that year (have {sorted(years)})"
        )
    return int(year)


def load_panel_info(path: Path, year: int, extra: list[str] | None = None) -> pd.DataFrame:
    """Info columns (and any ``extra`` feature columns that exist) of the panel for one year."""
    if not path.exists():
        raise MimamoriError(f"{path}: not found (run `python -m helpers panel` first)")
    import pyarrow.parquet as pq

    available = set(pq.read_schema(path).names)
    missing = [
        c for c in ("child_id", "fiscal_year", "age", "school_code", "grade") if c not in available
    ]
    if missing:
        raise MimamoriError(f"{path}: missing info column(s) {missing}")
    wanted = [c for c in INFO_COLUMNS if c in available]
    wanted += [c for c in (extra or []) if c in available and c not in wanted]
    return pd.read_parquet(path, columns=wanted, filters=[("fiscal_year", "==", year)])


def attach_info(scores_year: pd.DataFrame, info: pd.DataFrame) -> pd.DataFrame:
    """Scores of one year joined with the panel's info columns; every scored child must be in the panel."""
    dup = info.duplicated(["child_id", "fiscal_year"])
    if dup.any():
        first = info.loc[dup].iloc[0]
        raise MimamoriError(
            f"panel.parquet: {int(dup.sum())} duplicate (child_id, fiscal_year) row(s), "
            f"first child_id {first['child_id']!r} in FY{first['fiscal_year']}"
        )
    info_cols = [
        c for c in info.columns if c not in scores_year.columns or c in ("child_id", "fiscal_year")
    ]
    merged = scores_year.merge(
        info.loc[:, info_cols],
        on=["child_id", "fiscal_year"],
        how="left",
        indicator=True,
        validate="one_to_one",
    )
    lost = merged["_merge"] != "both"
    if lost.any():
        raise MimamoriError(
            f"scores.parquet: {int(lost.sum())} scored child-year(s) not in panel.parquet "
            f"(first child_id {merged.loc[lost, 'child_id'].iloc[0]!r})"
        )
    return merged.drop(columns="_merge")


# ------------------------------------------------------------------------------ the list
def eligible_ranking(
    frame: pd.DataFrame, seed: int, population: Population | None = None
) -> pd.DataFrame:
    """Rank the eligible children by score (highest first) with a seeded random tie-break.

    ``frame`` holds the scoring year's scores with the panel's info; with ``population`` every
    row is checked to be in it (the models stage scores only eligible children; a list must
    never rank anyone else). Rows are sorted by child_id before the random numbers are drawn,
    so the same children and seed give the same ranking whatever order the input came in.
    Adds ``tiebreak`` and ``list_rank`` 1..n.
    """
    frame = frame.sort_values("child_id", kind="mergesort").reset_index(drop=True)
    if frame["score"].isna().any():
        raise MimamoriError(
            f"scores.parquet: {int(frame['score'].isna().sum())} blank score(s) "
            f"(first child_id {frame.loc[frame['score'].isna(), 'child_id'].iloc[0]!r})"
        )
    if population is not None:
        population.check(frame, "scores.parquet (models stage)")
    ranked = frame.copy()
    rng = np.random.default_rng(seed)
    ranked["tiebreak"] = rng.random(len(ranked))
    ranked = ranked.sort_values(["score", "tiebreak"], ascending=[False, True], kind="mergesort")
    ranked["list_rank"] = np.arange(1, len(ranked) + 1)
    return ranked.reset_index(drop=True)


def capacity_list(ranked: pd.DataFrame, capacity: int) -> pd.DataFrame:
    """The top ``capacity`` children of the ranking: what staff can review."""
    if capacity <= 0:
        raise MimamoriError(
            f"config run.capacity={capacity}: must be a positive number of children"
        )
    return ranked.loc[ranked["list_rank"] <= capacity].reset_index(drop=True)


def blinded_sample(
    ranked: pd.DataFrame,
    n_high: int,
    n_low: int,
    low_pool_quantile: float,
    seed: int,
    strata: list[str] | None = None,
    grade_bands: list[list[int]] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """``n_high`` from the top and ``n_low`` at random from the bottom ``low_pool_quantile`` of
    the ranking - with ``strata``, of each of the high arm's strata's own ranking (see
    helpers.review.blind) - shuffled.
    ``arm`` and the scores stay in this (analyst's) copy only. Returns (sample, draw info)."""
    n = len(ranked)
    if not 0 < low_pool_quantile <= 1:
        raise MimamoriError(
            f"config review.low_pool_quantile={low_pool_quantile}: must be in (0, 1]"
        )
    if n_high < 0 or n_low < 0 or n_high + n_low == 0:
        raise MimamoriError(f"config review n_high={n_high}, n_low={n_low}: need a positive sample")
    if n_high > n:
        raise MimamoriError(f"review: n_high={n_high} but only {n} children are eligible")
    high = ranked.loc[ranked["list_rank"] <= n_high].assign(arm="high")
    rng = np.random.default_rng(seed)
    if strata:
        rest = ranked.loc[ranked["list_rank"] > n_high]
        low, info = stratified_low_arm(
            high, rest, n_low, list(strata), grade_bands, low_pool_quantile, rng
        )
        if info["shortfall"]:
            raise MimamoriError(
                f"review: the low pools of the high arm's strata ({', '.join(strata)}) hold "
                f"fewer than n_low={n_low} children ({info['shortfall']} short); lower n_low, "
                "raise review.low_pool_quantile or use grade_bands"
            )
    else:
        pool_start = n - math.floor(n * low_pool_quantile)  # ranks > pool_start: the bottom
        pool = ranked.loc[(ranked["list_rank"] > max(pool_start, n_high))]
        if len(pool) < n_low:
            raise MimamoriError(
                f"review: the low pool (bottom {low_pool_quantile:.0%} of {n} eligible, outside "
                f"the high arm) has {len(pool)} children, fewer than n_low={n_low}"
            )
        low = pool.iloc[np.sort(rng.choice(len(pool), size=n_low, replace=False))]
        info = {"strata": [], "grade_bands": None, "shortfall": 0}
    sample = pd.concat([high, low.assign(arm="low")], ignore_index=True)
    sample = sample.iloc[rng.permutation(len(sample))].reset_index(drop=True)
    sample["sample_order"] = np.arange(1, len(sample) + 1)
    return sample, info


def age_band(age: pd.Series) -> pd.Series:
    """Age bands for count tables (never single years: keeps small cells rarer)."""
    return pd.cut(
        pd.to_numeric(age, errors="coerce"), bins=AGE_BINS, labels=AGE_LABELS, right=False
    )


def counts_by(frame: pd.DataFrame, by: str | list[str], name: str = "children") -> pd.DataFrame:
    """Number of children per group (for show_table(counts=...) to suppress small cells)."""
    by = [by] if isinstance(by, str) else by
    out = frame.groupby(by, observed=True, dropna=False).size().rename(name).reset_index()
    return out.sort_values(by).reset_index(drop=True)


# ------------------------------------------------------------------------------- simulation
TRUTH_COLUMNS = ("oracle_p", "p_true")
SIMULATED_DETAILS = {
    "family_concern_detail": (
        "家族の世話をしている様子がある（模擬）",
        "家庭の経済状況が心配（模擬）",
        "保護者の体調が悪いと聞いている（模擬）",
    ),
    "child_complaint_detail": (
        "疲れていると話す（模擬）",
        "家の手伝いで宿題ができないと話す（模擬）",
    ),
}


def truth_probability(sample: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per sampled child, the probability used to decide who truly needs support, and its source.

    Preference: the generator's true probability (``oracle_p`` from the models stage, or
    ``p_true`` joined from data/raw/_truth) > the observed label (0/1) > the model's calibrated
    probability.
    """
    p = pd.Series(np.nan, index=sample.index)
    source = pd.Series("", index=sample.index, dtype=object)
    for col in TRUTH_COLUMNS:
        if col in sample.columns:
            has = p.isna() & sample[col].notna()
            p[has], source[has] = sample.loc[has, col].astype(float), "true_probability"
    label = pd.to_numeric(sample["label"], errors="coerce")
    use = p.isna() & label.notna()
    p[use], source[use] = label[use].astype(float), "label"
    use = p.isna()
    p[use], source[use] = (
        pd.to_numeric(sample.loc[use, "probability"], errors="coerce").fillna(0.0),
        "model_probability",
    )
    return p.clip(0, 1), source


def simulate_answers(
    sample: pd.DataFrame,
    p_need: pd.Series,
    seed: int,
    sensitivity: float = 0.8,
    false_positive_rate: float = 0.02,
    response_rate: float = 0.4,
) -> pd.DataFrame:
    """Reviewer answers for the schools that reply: one row per child of a replying school.

    Each school replies with ``response_rate`` (at least one does, so there is something to
    read back); a child truly needs support with probability ``p_need``; a reviewer sees a true
    case with ``sensitivity`` and flags others with ``false_positive_rate``.
    """
    rng = np.random.default_rng(seed)
    schools = np.array(sorted(sample["school_code"].astype(str).unique()))
    draws = rng.random(len(schools))
    replying = set(schools[draws < response_rate]) or {schools[int(np.argmin(draws))]}
    true_need = rng.random(len(sample)) < p_need.to_numpy()
    seen = rng.random(len(sample))
    flagged = np.where(true_need, seen < sensitivity, seen < false_positive_rate)
    which = rng.random(len(sample))  # family only / complaint only / both
    family = flagged & (which < 0.8)
    complaint = flagged & (which >= 0.6)
    pick_f = rng.integers(0, len(SIMULATED_DETAILS["family_concern_detail"]), len(sample))
    pick_c = rng.integers(0, len(SIMULATED_DETAILS["child_complaint_detail"]), len(sample))
    out = sample.loc[:, ["child_id", "school_code", "grade", "sample_order"]].copy()
    out["true_need"] = true_need
    out["family_concern"] = np.where(family, YES, NO)
    out["child_complaint"] = np.where(complaint, YES, NO)
    out["family_concern_detail"] = np.where(
        family, np.array(SIMULATED_DETAILS["family_concern_detail"])[pick_f], ""
    )
    out["child_complaint_detail"] = np.where(
        complaint, np.array(SIMULATED_DETAILS["child_complaint_detail"])[pick_c], ""
    )
    out["other"] = ""
    return out.loc[out["school_code"].astype(str).isin(replying)].reset_index(drop=True)


# ------------------------------------------------------------------------------ re-identify
def reidentify(
    frame: pd.DataFrame, correspondence: pd.DataFrame, id_column: str = "child_id"
) -> pd.DataFrame:
    """Add the real resident code next to each pseudonym (domain ``resident``); every one must match."""
    need = {"domain", "pseudonym", "code"}
    if not need <= set(correspondence.columns):
        raise MimamoriError(
            f"correspondence.parquet: missing column(s) {sorted(need - set(correspondence.columns))}"
        )
    table = correspondence.loc[correspondence["domain"] == "resident", ["pseudonym", "code"]]
    if table["pseudonym"].duplicated().any():
        raise MimamoriError(
            "correspondence.parquet: a resident pseudonym maps to more than one code"
        )
    out = frame.merge(
        table.rename(columns={"pseudonym": id_column, "code": "resident_code"}),
        on=id_column,
        how="left",
        validate="many_to_one",
    )
    lost = out["resident_code"].isna()
    if lost.any():
        raise MimamoriError(
            f"correspondence.parquet: {int(lost.sum())} pseudonym(s) of the list have no "
            f"resident code (first {out.loc[lost, id_column].iloc[0]!r}); was the key changed?"
        )
    cols = list(out.columns)
    cols.insert(cols.index(id_column) + 1, cols.pop(cols.index("resident_code")))
    return out.loc[:, cols]


# ------------------------------------------------------------------------------ verdicts
def analyse_verdicts(
    verdicts: pd.DataFrame,
    sample: pd.DataFrame,
    earlier_rounds: list[dict],
    round_name: str,
    items: pd.DataFrame | None = None,
    item_labels: dict[str, str] | None = None,
    alpha: float = 0.05,
    ci_method: str = "wilson",
) -> dict:
    """Rates per arm with CIs, Fisher's test, item prevalence and the comparison across rounds.

    ``verdicts`` is the validated frame (one row per child, ``needs_support``); ``sample`` the
    analyst's copy with ``arm``; ``items`` optional panel features keyed by child_id.
    """
    joined = verdicts.merge(
        sample.loc[:, ["child_id", "arm", "school_code", "grade", "age", "list_rank"]],
        on="child_id",
        how="left",
        validate="one_to_one",
    )
    rates = arm_rates(joined, alpha, ci_method)
    drawn = sample["arm"].value_counts()
    rates.insert(1, "drawn", [int(drawn.get(a, 0)) for a in rates["arm"]])
    rates["not_returned"] = rates["drawn"] - rates["reviewed"]
    hi, lo = rates.set_index("arm").loc["high"], rates.set_index("arm").loc["low"]
    fisher_two = fisher_high_low(
        int(hi.positive), int(hi.reviewed), int(lo.positive), int(lo.reviewed)
    )
    fisher_greater = fisher_high_low(
        int(hi.positive),
        int(hi.reviewed),
        int(lo.positive),
        int(lo.reviewed),
        alternative="greater",
    )
    current = {
        "round": round_name,
        "high_reviewed": int(hi.reviewed),
        "high_positive": int(hi.positive),
        "low_reviewed": int(lo.reviewed),
        "low_positive": int(lo.positive),
    }
    rounds = compare_rounds(pd.DataFrame([*earlier_rounds, current]), alpha, ci_method)
    prevalence = item_prevalence(joined, [], item_labels)
    if items is not None and len(items.columns) > 1:
        with_items = joined.merge(items, on="child_id", how="left", validate="one_to_one")
        prevalence = item_prevalence(
            with_items, [c for c in items.columns if c != "child_id"], item_labels
        )
    return {
        "joined": joined,
        "arm_rates": rates,
        "rounds": rounds,
        "item_prevalence": prevalence,
        "fisher_p_two_sided": fisher_two,
        "fisher_p_greater": fisher_greater,
    }


def item_columns(available: list[str], review: ReviewSettings) -> list[str]:
    """Panel features compared between needs-support and not: configured list, else the prefix."""
    if review.prevalence_items:
        return [c for c in review.prevalence_items if c in available]
    prefix = review.prevalence_item_prefix
    skip = set(review.prevalence_skip)
    return [c for c in available if c.startswith(prefix) and c not in skip]


# ------------------------------------------------------------------------------------ CLI
def _seed(cfg: Settings) -> int:
    return int(cfg.run.seed)


def _draw(cfg: Settings, paths: dict[str, Path]) -> dict:
    """Rank the scoring year's eligible children; the capacity list and the blinded sample."""
    rc = cfg.review
    population = population_for(cfg.models, rc.target)
    scores = load_scores(paths["scores"])
    year = scoring_year(scores, cfg)
    scores_year = scores.loc[scores["fiscal_year"] == year]
    extra = [f"known_{rc.target}", population.settings.age_column]
    info = load_panel_info(paths["panel"], year, extra)
    ranked = eligible_ranking(
        attach_info(scores_year, info), _seed(cfg) + SEED_TIEBREAK, population
    )
    sample, draw_info = blinded_sample(
        ranked,
        rc.n_high,
        rc.n_low,
        rc.low_pool_quantile,
        _seed(cfg) + SEED_SAMPLE,
        list(rc.strata),
        rc.grade_bands,
    )
    blind = arm_predictability(
        sample.loc[:, list(SHEET_FEATURES)], sample["arm"], _seed(cfg) + SEED_SAMPLE
    )
    return {
        "year": year,
        "population": population,
        "ranked": ranked,
        "sample": sample,
        "scored": len(scores_year),
        "exclusions": population.exclusions(info),
        "panel_children": len(info),
        "capacity": capacity_list(ranked, cfg.run.capacity),
        "draw_info": draw_info,
        "blind": blind,
    }


def _draw_summary(cfg: Settings, d: dict) -> dict:
    rc, ranked, sample = cfg.review, d["ranked"], d["sample"]
    excl = d["exclusions"]
    return {
        "target": rc.target,
        "scoring_year": d["year"],
        "scored": int(d["scored"]),
        "population": d["population"].description,
        "panel_children": int(d["panel_children"]),
        "excluded": dict(zip(excl["exclusion"], excl["children"].astype(int), strict=True)),
        "eligible": int(len(ranked)),
        "capacity": int(cfg.run.capacity),
        "capacity_listed": int(len(d["capacity"])),
        "n_high": int(rc.n_high),
        "n_low": int(rc.n_low),
        "low_pool_quantile": float(rc.low_pool_quantile),
        "strata": d["draw_info"],
        "blind_check": d["blind"],
        "schools": int(sample["school_code"].nunique()),
        "seed": _seed(cfg),
        "tied_scores_in_list": int(
            ranked["score"].duplicated(keep=False).head(int(cfg.run.capacity)).sum()
        ),
        "power_settings": rc.power.as_dict(),
    }


def arm_balance(sample: pd.DataFrame) -> pd.DataFrame:
    """Children per arm x school x grade: the analyst's check of the strata (never in a
    shared report: it says which arm each stratum's children are in)."""
    return counts_by(sample, ["school_code", "grade", "arm"])


def run_draw(cfg: Settings) -> dict[str, int]:
    paths = review_paths(cfg)
    rc, d = cfg.review, _draw(cfg, paths)
    ranked, capacity, sample = d["ranked"], d["capacity"], d["sample"]
    pw = rc.power
    power = power_table(
        pw.expected_high_rate,
        pw.expected_low_rate,
        rc.n_high,
        rc.n_low,
        pw.alpha,
        pw.power,
        pw.expected_response_rate,
    )
    keep = [
        c
        for c in (
            *SCORE_COLUMNS,
            "age",
            "school_age",
            "grade",
            "school_code",
            "school_district",
            "sex",
            "oracle_p",
            "tiebreak",
            "list_rank",
        )
        if c in ranked.columns
    ]
    outputs = [
        write_parquet(capacity.loc[:, keep], paths["capacity_list"]),
        write_staff_workbook(capacity, paths["staff_list"]),
        write_parquet(sample.loc[:, [*keep, "arm", "sample_order"]], paths["sample"]),
        write_csv(arm_balance(sample), paths["arm_balance"]),
        write_csv(power, paths["power"]),
        write_csv(d["exclusions"], paths["exclusions"]),
    ]
    for old in paths["sheets"].glob("review_*.xlsx"):
        old.unlink()  # a new draw replaces every school's workbook
    for school, part in tqdm(
        sample.groupby("school_code", sort=True), desc="reviewer workbooks", disable=None
    ):
        outputs.append(
            write_reviewer_workbook(
                reviewer_frame(part.sort_values("sample_order")),
                paths["sheets"] / f"review_{school}.xlsx",
                str(school),
            )
        )
    summary = _draw_summary(cfg, d)
    outputs.append(write_json(summary, paths["draw_summary"]))
    append_audit(
        paths["root"],
        "review draw",
        cfg,
        [paths["scores"], paths["panel"]],
        outputs,
        {
            "scored": d["scored"],
            "eligible": len(ranked),
            "capacity_list": len(capacity),
            "sample": len(sample),
        },
    )
    b = d["blind"]
    print(
        f"review draw: FY{d['year']}: {len(ranked)} eligible children ranked; list of "
        f"{len(capacity)}; sample {rc.n_high}+{rc.n_low} over {summary['schools']} schools; "
        f"blind check AUC {b['auc']:.2f} [{b['ci_low']:.2f}, {b['ci_high']:.2f}]"
    )
    return {"capacity_list": len(capacity), "sample": len(sample)}


def _read_sample(paths: dict[str, Path]) -> pd.DataFrame:
    if not paths["sample"].exists():
        raise MimamoriError(
            f"{paths['sample']}: not found (run `python -m helpers review draw` first)"
        )
    return pd.read_parquet(paths["sample"])


def run_simulate(cfg: Settings) -> dict[str, int]:
    if not cfg.run.synthetic:
        raise MimamoriError(
            "review simulate: refused: run.synthetic is false; simulated verdicts are "
            "only for the synthetic city (put the schools' returned sheets in review/verdicts/)"
        )
    paths = review_paths(cfg)
    sample = _read_sample(paths)
    sim = cfg.review.simulated_reviewers
    if "oracle_p" not in sample.columns:  # synthetic city: the generator's truth, if written
        sample = oracle.attach(sample, oracle.load_truth(cfg), cfg.review.target, "p_true")
    p_need, source = truth_probability(sample)
    answers = simulate_answers(
        sample,
        p_need,
        _seed(cfg) + SEED_SIMULATE,
        sim.sensitivity,
        sim.false_positive_rate,
        sim.response_rate,
    )
    for old in paths["verdicts_in"].glob("review_*.xlsx"):
        old.unlink()  # synthetic only: the previous simulation is replaced, never mixed in
    outputs = []
    for school, part in answers.groupby("school_code", sort=True):
        frame = reviewer_frame(part.sort_values("sample_order"))
        for key in (
            "family_concern",
            "family_concern_detail",
            "child_complaint",
            "child_complaint_detail",
            "other",
        ):
            frame[key] = part.sort_values("sample_order")[key].to_numpy()
        outputs.append(
            write_reviewer_workbook(
                frame, paths["verdicts_in"] / f"review_{school}.xlsx", str(school)
            )
        )
    append_audit(
        paths["root"],
        "review simulate",
        cfg,
        [paths["sample"]],
        outputs,
        {"children_answered": len(answers), "schools_answered": len(outputs)},
    )
    print(
        f"review simulate: {len(outputs)} school(s) replied for {len(answers)} children "
        f"(truth from {', '.join(sorted(set(source)))})"
    )
    return {"answered": len(answers)}


def _item_frame(
    cfg: Settings, paths: dict[str, Path], year: int
) -> tuple[pd.DataFrame | None, dict[str, str]]:
    import pyarrow.parquet as pq

    if not paths["panel"].exists():
        return None, {}
    cols = item_columns(pq.read_schema(paths["panel"]).names, cfg.review)
    if not cols:
        return None, {}
    items = pd.read_parquet(
        paths["panel"], columns=["child_id", *cols], filters=[("fiscal_year", "==", year)]
    )
    labels: dict[str, str] = {}
    if paths["catalogue"].exists():
        cat = pd.read_csv(paths["catalogue"], dtype=str)
        if {"name", "label_ja"} <= set(cat.columns):
            labels = dict(zip(cat["name"], cat["label_ja"], strict=True))
    return items, labels


def run_verdicts(cfg: Settings) -> dict[str, int]:
    paths = review_paths(cfg)
    sample = _read_sample(paths)
    files = sorted(
        p
        for p in paths["verdicts_in"].glob("*")
        if p.suffix.lower() in (".xlsx", ".csv") and not p.name.startswith((".", "~$"))
    )
    if not files:
        raise MimamoriError(f"{paths['verdicts_in']}: no returned sheets (.xlsx or .csv) found")
    sheets = [
        s for f in tqdm(files, desc="verdict sheets", disable=None) for s in read_verdict_file(f)
    ]
    verdicts, duplicates = validate_verdicts(sheets, set(sample["child_id"].astype(str)))
    year = int(sample["fiscal_year"].iloc[0])
    items, labels = _item_frame(cfg, paths, year)
    rc = cfg.review
    simulated = bool(cfg.run.synthetic)  # the synthetic city's verdicts come from `simulate`
    this_round = (
        f"FY{year} 今回・模擬（this round, simulated）"
        if simulated
        else f"FY{year} 今回（this round）"
    )
    result = analyse_verdicts(
        verdicts, sample, list(rc.earlier_rounds), this_round, items, labels, ci_method=rc.ci_method
    )
    joined = result["joined"]
    outputs = [
        write_parquet(joined, paths["verdicts"]),
        write_csv(result["arm_rates"], paths["arm_rates"]),
        write_csv(result["item_prevalence"], paths["item_prevalence"]),
        write_csv(result["rounds"], paths["rounds"]),
    ]
    summary = {
        "definition": NEEDS_SUPPORT_DEFINITION,
        "scoring_year": year,
        "files": [f.name for f in files],
        "sheets": len(sheets),
        "children_returned": int(len(verdicts)),
        "duplicates": duplicates,
        "fisher_p_two_sided": result["fisher_p_two_sided"],
        "fisher_p_greater": result["fisher_p_greater"],
        "ci_method": rc.ci_method,
        "simulated": simulated,
    }
    outputs.append(write_json(summary, paths["results"]))
    append_audit(
        paths["root"],
        "review verdicts",
        cfg,
        files + [paths["sample"]],
        outputs,
        {"children_returned": len(verdicts), "duplicates": len(duplicates)},
    )
    for line in duplicates:
        print(f"review verdicts: note: {line}")
    rates = result["arm_rates"].set_index("arm")
    print(
        f"review verdicts: {len(verdicts)} children from {len(files)} file(s); needs support "
        f"high {rates.loc['high', 'positive']}/{rates.loc['high', 'reviewed']}, "
        f"low {rates.loc['low', 'positive']}/{rates.loc['low', 'reviewed']}; "
        f"Fisher p={result['fisher_p_two_sided']:.3g}"
    )
    return {"returned": len(verdicts)}


def run_reidentify(cfg: Settings, which: str) -> dict[str, int]:
    paths = review_paths(cfg)
    if not paths["correspondence"].exists():
        raise MimamoriError(
            f"{paths['correspondence']}: no correspondence table, so the list cannot be "
            "re-identified (the municipality keeps it; set ingest.write_correspondence: true "
            "and rerun ingest where the key is held)"
        )
    if which == "capacity":
        if not paths["capacity_list"].exists():
            raise MimamoriError(
                f"{paths['capacity_list']}: not found (run `python -m helpers review draw` first)"
            )
        frame = pd.read_parquet(paths["capacity_list"])
        keep = [
            c
            for c in (
                "list_rank",
                "child_id",
                "school_code",
                "grade",
                "score",
                "reason_1",
                "reason_2",
                "reason_3",
            )
            if c in frame.columns
        ]
    else:  # the blinded sample, in its shuffled order and without arm or score
        frame = _read_sample(paths).sort_values("sample_order")
        keep = ["sample_order", "child_id", "school_code", "grade"]
    out = reidentify(frame.loc[:, keep], pd.read_parquet(paths["correspondence"]))
    target = private_dir(paths["private"]) / f"review_{which}_reidentified.csv"  # owner only
    make_private(write_csv(out, target))
    append_audit(
        paths["root"],
        "review reidentify",
        cfg,
        [paths["correspondence"]],
        [target],
        {"rows": len(out)},
    )
    print(f"review reidentify: {len(out)} rows -> {target}")
    return {"rows": len(out)}


def main(cfg: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers review", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=["draw", "simulate", "verdicts", "reidentify"])
    parser.add_argument(
        "--list",
        dest="which",
        choices=["sample", "capacity"],
        default="sample",
        help="reidentify: which list (default: the blinded sample)",
    )
    parser.add_argument("--target", default=None, help="override review.target")
    args = parser.parse_args(argv)
    if args.target:
        cfg = cfg.with_overrides({"review": {"target": args.target}})
    if args.action == "draw":
        run_draw(cfg)
    elif args.action == "simulate":
        run_simulate(cfg)
    elif args.action == "verdicts":
        run_verdicts(cfg)
    else:
        run_reidentify(cfg, args.which)
    return 0
