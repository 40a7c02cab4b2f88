"""Artefact catalogue: every file a stage reads or writes, named once.

``P = paths(cfg)`` gives the data root's layout (``P.panel``, ``P.model("young_carer").scores``,
``P.review("young_carer").sample`` ...). Stages, notebooks, bench and tests ask this module for
a path instead of typing a file name; a renamed artefact is renamed here only.

    data/raw/            exports (+ _truth/ on the synthetic city; .complete = make stamp)
    data/exports_manifest.json  names, sizes, hashes of the exports (make's ingest prerequisite)
    data/mart/           <table>.parquet, _rejects/ and _warnings/<table>.csv, _ingest_report.json
    data/panel/          panel.parquet, feature_catalogue.csv, missingness.csv, leakage_check.json
    data/models/<t>/     models, tuning, metrics, scores, diagnostics, SHAP
    data/review/         capacity list, blinded sample, sheets, verdicts and their analysis
    data/private/        correspondence table, re-identified lists (owner-only)
    data/audit.log       one JSON line per stage run
    data/runs/           <run_id>/ archived models runs, runs.parquet ledger, comparisons/
    reports/             rendered HTML (+ index.html, bench/)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.config import data_dir, reports_dir

if TYPE_CHECKING:
    from helpers.config import Settings


@dataclass(frozen=True)
class ModelPaths:
    """``data/models/<target>/``: what the models stage writes for one target."""

    dir: Path

    def file(self, name: str) -> Path:
        return self.dir / name

    scores = property(lambda self: self.dir / "scores.parquet")
    metrics = property(lambda self: self.dir / "metrics.json")
    params = property(lambda self: self.dir / "params.json")
    tuning = property(lambda self: self.dir / "tuning.parquet")
    lightgbm_model = property(lambda self: self.dir / "model_lightgbm.txt")
    logistic_model = property(lambda self: self.dir / "model_logistic.joblib")
    calibrators = property(lambda self: self.dir / "calibrators.joblib")
    reference_tree = property(lambda self: self.dir / "reference_tree.joblib")
    segment_table = property(lambda self: self.dir / "segment_table.csv")
    single_variable = property(lambda self: self.dir / "single_variable.csv")
    crosstab_topk = property(lambda self: self.dir / "crosstab_topk.csv")
    missed_vs_caught = property(lambda self: self.dir / "missed_vs_caught.csv")
    stability = property(lambda self: self.dir / "stability.csv")
    fairness = property(lambda self: self.dir / "fairness.csv")
    subsets = property(lambda self: self.dir / "subsets.csv")
    calibration = property(lambda self: self.dir / "calibration.csv")
    odds_ratios = property(lambda self: self.dir / "odds_ratios.csv")
    shap_values = property(lambda self: self.dir / "shap_values.parquet")
    shap_importance = property(lambda self: self.dir / "shap_importance.csv")
    backtest = property(lambda self: self.dir / "backtest.csv")
    reference_tree_nodes = property(lambda self: self.dir / "reference_tree_nodes.csv")
    year_to_year = property(lambda self: self.dir / "year_to_year.csv")
    fold_to_fold = property(lambda self: self.dir / "fold_to_fold.csv")


@dataclass(frozen=True)
class RunPaths:
    """``data/runs/<run_id>/``: one archived models run (as private as ``data/models``)."""

    dir: Path

    def file(self, name: str) -> Path:
        return self.dir / name

    manifest = property(lambda self: self.dir / "run.json")
    config = property(lambda self: self.dir / "config.json")
    params = property(lambda self: self.dir / "params.json")
    metrics = property(lambda self: self.dir / "metrics.json")
    tuning = property(lambda self: self.dir / "tuning.parquet")
    scores = property(lambda self: self.dir / "scores.parquet")
    feature_catalogue = property(lambda self: self.dir / "feature_catalogue.csv")
    fairness = property(lambda self: self.dir / "fairness.csv")
    calibration = property(lambda self: self.dir / "calibration.csv")
    panel = property(lambda self: self.dir / "panel.parquet")


@dataclass(frozen=True)
class ReviewPaths:
    """``data/review/``: the list, the blinded sample, sheets and verdicts for one target."""

    dir: Path
    scores: Path

    capacity_list = property(lambda self: self.dir / "capacity_list.parquet")
    staff_list = property(lambda self: self.dir / "staff_list.xlsx")
    sample = property(lambda self: self.dir / "sample_analyst.parquet")
    sheets = property(lambda self: self.dir / "sheets")
    power = property(lambda self: self.dir / "power.csv")
    exclusions = property(lambda self: self.dir / "exclusions.csv")
    draw_summary = property(lambda self: self.dir / "draw_summary.json")
    arm_balance = property(lambda self: self.dir / "arm_balance_analyst.csv")
    verdicts_in = property(lambda self: self.dir / "verdicts")
    verdicts = property(lambda self: self.dir / "verdicts.parquet")
    arm_rates = property(lambda self: self.dir / "arm_rates.csv")
    item_prevalence = property(lambda self: self.dir / "item_prevalence.csv")
    rounds = property(lambda self: self.dir / "rounds.csv")
    results = property(lambda self: self.dir / "results.json")
    complete = property(lambda self: self.dir / ".complete")


@dataclass(frozen=True)
class MartPaths:
    """``data/mart/``, or the folder a new mart is built in before it replaces the old one."""

    dir: Path

    report = property(lambda self: self.dir / "_ingest_report.json")
    linkage_report = property(
        lambda self: self.dir / "_linkage_report.json"
    )  # 名寄せ (helpers.link)
    rejects_dir = property(lambda self: self.dir / "_rejects")
    warnings_dir = property(lambda self: self.dir / "_warnings")

    def table(self, table: str) -> Path:
        return self.dir / f"{table}.parquet"

    def rejects(self, table: str) -> Path:
        return self.rejects_dir / f"{table}.csv"

    def cell_warnings(self, table: str) -> Path:
        return self.warnings_dir / f"{table}.csv"


@dataclass(frozen=True)
class Paths:
    """The data root's layout (``data``) and the reports folder (``reports``)."""

    data: Path
    reports: Path

    # raw exports and the generator's truth (synthetic city only)
    raw = property(lambda self: self.data / "raw")
    raw_complete = property(lambda self: self.raw / ".complete")
    truth = property(lambda self: self.raw / "_truth")
    truth_probabilities = property(lambda self: self.truth / "true_probabilities.parquet")
    truth_defects = property(lambda self: self.truth / "defects.csv")
    truth_targets = property(lambda self: self.truth / "targets.json")
    truth_population = property(lambda self: self.truth / "population.parquet")
    truth_identity = property(lambda self: self.truth / "identity_links.csv")  # 名寄せ truth
    # exports manifest (make's prerequisite of ingest: names, sizes, hashes of the exports)
    exports_manifest = property(lambda self: self.data / "exports_manifest.json")
    value_map_suggestion = property(lambda self: self.data / "value_map_suggestion.yaml")
    # mart
    mart = property(lambda self: self.data / "mart")
    marts = property(lambda self: MartPaths(self.mart))
    rejects_dir = property(lambda self: self.marts.rejects_dir)
    ingest_report = property(lambda self: self.marts.report)
    linkage_report = property(lambda self: self.marts.linkage_report)
    # panel
    panel_dir = property(lambda self: self.data / "panel")
    panel = property(lambda self: self.panel_dir / "panel.parquet")
    feature_catalogue = property(lambda self: self.panel_dir / "feature_catalogue.csv")
    missingness = property(lambda self: self.panel_dir / "missingness.csv")
    leakage_check = property(lambda self: self.panel_dir / "leakage_check.json")
    panel_coverage = property(lambda self: self.panel_dir / "coverage.json")
    # models, review, private, audit
    models = property(lambda self: self.data / "models")
    review_dir = property(lambda self: self.data / "review")
    private = property(lambda self: self.data / "private")
    correspondence = property(lambda self: self.private / "correspondence.parquet")
    # 名寄せ (helpers.link): key master, clerical workbook, its manifest, staff decisions
    key_master = property(lambda self: self.private / "key_master.parquet")
    linkage_review = property(lambda self: self.private / "linkage_review.xlsx")
    linkage_review_pairs = property(lambda self: self.private / "linkage_review_pairs.parquet")
    linkage_decisions = property(lambda self: self.private / "linkage_decisions.parquet")
    audit_log = property(lambda self: audit_log_in(self.data))
    # run history (helpers.runs): archived models runs, their ledger, comparisons
    runs = property(lambda self: self.data / "runs")
    runs_ledger = property(lambda self: self.runs / "runs.parquet")
    runs_lock = property(lambda self: self.runs / ".lock")
    comparisons = property(lambda self: self.runs / "comparisons")
    last_comparison = property(lambda self: self.comparisons / "latest.json")
    # reports
    index_html = property(lambda self: self.reports / "index.html")
    bench_reports = property(lambda self: self.reports / "bench")
    benchmarks_json = property(lambda self: self.bench_reports / "benchmarks.json")

    def mart_table(self, table: str) -> Path:
        return mart_file(self.mart, table)

    def rejects(self, table: str) -> Path:
        return self.marts.rejects(table)

    def cell_warnings(self, table: str) -> Path:
        return self.marts.cell_warnings(table)

    def model(self, target: str) -> ModelPaths:
        return ModelPaths(self.models / target)

    def review(self, target: str) -> ReviewPaths:
        return ReviewPaths(self.review_dir, self.model(target).scores)

    def run(self, run_id: str) -> RunPaths:
        return RunPaths(self.runs / run_id)

    def comparison(self, base: str, new: str) -> Path:
        return self.comparisons / f"{base}__{new}.json"

    def mlflow_store(self, store: str) -> Path:
        """The MLflow tracking store (``runs.mlflow.tracking_store``), under the data root
        unless absolute."""
        p = Path(store)
        return p if p.is_absolute() else self.data / p

    def report_html(self, name: str) -> Path:
        return self.reports / f"{name}.html"


def mart_file(mart_dir: Path, table: str) -> Path:
    """A table's file in a mart folder (the stage's own, or a cut copy for the leakage check)."""
    return MartPaths(mart_dir).table(table)


def audit_log_in(data_root: Path) -> Path:
    """The audit log of a data root (helpers.io.append_audit writes it)."""
    return data_root / "audit.log"


def paths(cfg: Settings) -> Paths:
    """The artefact catalogue for these settings (data root from config or MIMAMORI_DATA)."""
    return Paths(data_dir(cfg), reports_dir(cfg))
