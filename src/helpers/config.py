"""Run settings as types: one frozen dataclass per file under config/, defaults in one place.

Sections are the file stems (run, synth, ingest, panel, models, review, reports, runs). A profile
(config/profiles/<name>.yaml, chosen by ``profile=`` or MIMAMORI_PROFILE) overrides them key by
key, so the tiny test city runs the same code with smaller numbers. Every file is checked
against the dataclasses below before anything runs: an unknown (misspelt) key or a value of the
wrong type is a :class:`MimamoriError` naming the file and the key (the CLI exits 2).

Stage code reads settings by attribute (``cfg.models.tuning.n_folds``); the defaults here are
the only defaults (the YAML files list the same values with comments). To add a setting, add a
typed field here and the key, with a comment, to ``config/<section>.yaml``. Settings never
change in place: ``cfg.with_overrides({"models": {"tuning": {"n_trials": 2}}})`` returns a new
object (tests use it, or ``load_config(overrides=...)``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from helpers import MimamoriError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_DIR = REPO_ROOT / "config"


class _Section(Mapping[str, Any]):
    """Read-only mapping view of a settings dataclass (``cfg["run"]["seed"]``) for display code.

    Stage code reads attributes (``cfg.run.seed``); the mapping view serves code that shows or
    hashes settings as data.
    """

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def get(self, key: str, default: Any = None) -> Any:
        """Refused: a fallback here would hide a second default beside the dataclass's."""
        raise AttributeError(
            f"settings have no .get({key!r}, ...): read the attribute (cfg.<section>.{key}); "
            "defaults live in helpers/config.py"
        )

    def _names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]


# ----------------------------------------------------------------------------------------- run
@dataclass(frozen=True)
class DaskSettings(_Section):
    scheduler_address: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    partitions: int = 2
    lightgbm: Literal["distributed", "local"] = "distributed"


@dataclass(frozen=True)
class RunSettings(_Section):
    seed: int = 20240401
    synthetic: bool = True
    fiscal_years: list[int] = field(default_factory=lambda: list(range(2017, 2024)))
    targets: list[str] = field(default_factory=lambda: ["physical_abuse", "young_carer"])
    capacity: int = 100
    export_date: str | None = None
    data_dir: str = "data"
    reports_dir: str = "reports"
    engine: Literal["local", "dask"] = "local"
    local_workers: int = 2
    dask: DaskSettings = field(default_factory=DaskSettings)


# --------------------------------------------------------------------------------------- synth
@dataclass(frozen=True)
class Messiness(_Section):
    fullwidth_digits: float = 0.05
    fullwidth_space: float = 0.03
    cell_linebreak: float = 0.01
    era_dates: bool = True


@dataclass(frozen=True)
class SynthSettings(_Section):
    n_children: int = 25000
    age_max: int = 17
    defect_rate: float = 0.005
    messiness: Messiness = field(default_factory=Messiness)
    targets: dict[str, float] = field(
        default_factory=lambda: {"physical_abuse": 0.0025, "young_carer": 0.015}
    )
    young_carer_ages: list[int] = field(default_factory=lambda: [10, 15])
    rates: dict[str, float] = field(default_factory=dict)
    dialect: str = "default"


# -------------------------------------------------------------------------------------- ingest
@dataclass(frozen=True)
class IngestSettings(_Section):
    encoding: dict[str, str] = field(default_factory=dict)
    header_map: dict[str, dict[str, str]] = field(default_factory=dict)
    value_map: dict[str, dict[str, str]] = field(default_factory=dict)
    skip_rows: dict[str, int] = field(default_factory=dict)
    footer_rows: dict[str, int] = field(default_factory=dict)
    key_file: str | None = None
    topcode_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    write_correspondence: bool = False
    required_tables: list[str] = field(default_factory=lambda: ["residents"])


# --------------------------------------------------------------------------------------- panel
@dataclass(frozen=True)
class PanelSettings(_Section):
    as_of_month_day: list[int] = field(default_factory=lambda: [4, 1])
    age_min: int = 0
    age_max: int = 15
    outcome_window_years: int = 1
    windows: list[int] = field(default_factory=lambda: [1, 3])
    checkup_due_months: dict[str, list[int]] = field(
        default_factory=lambda: {"m1": [1, 2], "m4": [4, 3], "y1m6": [18, 6], "y3": [36, 12]}
    )
    leakage_check_fiscal_year: int | None = None
    source_start: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- link
@dataclass(frozen=True)
class LinkSettings(_Section):
    """名寄せ (helpers.link): linking exports that carry no resident code to the registry."""

    engine: Literal["duckdb", "spark"] = "duckdb"
    spark_master: str = "local[2]"
    accept_probability: float = 0.99
    clerical_probability: float = 0.5
    margin_weight: float = 4.0
    candidate_floor: float = 0.05
    blocking_rules: list[list[str]] = field(
        default_factory=lambda: [
            ["birth_date"],
            ["birth_swap"],
            ["surname_kana", "given_kana", "birth_year"],
            ["surname_kana", "birth_month"],
            ["given_kana", "birth_month"],
            ["address_block", "sex"],
        ]
    )
    u_max_pairs: int = 1_000_000
    em_blocking: list[list[str]] = field(
        default_factory=lambda: [["birth_date"], ["surname_kana", "given_kana", "birth_year"]]
    )
    birth_year_slack: int = 1
    seed: int = 1
    part_records: int = 60_000
    train_records: int = 100_000
    duckdb_memory: str = "2GB"


# -------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class TuningSettings(_Section):
    n_folds: int = 3
    n_trials: int = 6
    time_budget_s: float | None = None
    variance_penalty: float = 0.5
    min_valid_events: int = 100
    families: list[Literal["lightgbm", "logistic"]] = field(
        default_factory=lambda: ["lightgbm", "logistic"]
    )


@dataclass(frozen=True)
class CalibrationSettings(_Section):
    isotonic_min_events: int = 500
    recalibrate_intercept: bool = True


@dataclass(frozen=True)
class ReferenceTreeSettings(_Section):
    max_depth: int = 3
    criterion: Literal["entropy", "gini", "log_loss"] = "entropy"
    min_samples_leaf: int = 448
    min_samples_split: int = 1642
    min_split_events: int = 10


@dataclass(frozen=True)
class BootstrapSettings(_Section):
    n: int = 500
    alpha: float = 0.05


@dataclass(frozen=True)
class FairnessSettings(_Section):
    groups: list[str] = field(default_factory=lambda: ["sex", "nationality", "single_parent"])
    tolerance: list[float] = field(default_factory=lambda: [0.8, 1.25])
    min_group_events: int = 10


def _lgb_space() -> dict[str, list[Any]]:
    return {
        "n_estimators": [80, 120, 200],
        "learning_rate": [0.05, 0.1, 0.15],
        "num_leaves": [7, 15, 31],
        "min_child_samples": [20, 50, 100, 200],
        "reg_lambda": [0.0, 1.0, 10.0],
        "colsample_bytree": [0.5, 0.8, 1.0],
        "subsample": [0.7, 1.0],
        "weighting": ["balanced", "sqrt", "none"],
    }


def _lgb_defaults() -> dict[str, Any]:
    return {
        "n_estimators": 120,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_child_samples": 50,
        "reg_lambda": 1.0,
        "colsample_bytree": 0.8,
        "subsample": 1.0,
        "weighting": "sqrt",
    }


@dataclass(frozen=True)
class PopulationSettings(_Section):
    """Who can be ranked for one target: the children staff will actually review."""

    description: str = ""
    age_column: str = "school_age"
    min_age: int | None = None
    max_age: int | None = None
    require_school: bool = True
    exclude_school_codes: list[str] = field(default_factory=lambda: ["OUT"])
    exclude_known: bool = True


def _populations() -> dict[str, PopulationSettings]:
    return {
        "physical_abuse": PopulationSettings(
            description="4月1日に市内に住み、市内の小中学校に在籍する学齢6〜14歳（小1〜中3）。"
            "既に把握済みの児童を除く (residents on 1 April, school age 6-14, enrolled in a "
            "school of the municipality; already-known children excluded)",
            min_age=6,
            max_age=14,
        ),
        "young_carer": PopulationSettings(
            description="4月1日に市内に住み、市内の小中学校に在籍する学齢10〜14歳（小5〜中3）。"
            "既に把握済みの児童を除く (residents on 1 April, school age 10-14, enrolled in a "
            "school of the municipality; already-known children excluded)",
            min_age=10,
            max_age=14,
        ),
    }


@dataclass(frozen=True)
class ModelsSettings(_Section):
    num_threads: int = 2
    populations: dict[str, PopulationSettings] = field(default_factory=_populations)
    backtest_years: int = 3
    tuning: TuningSettings = field(default_factory=TuningSettings)
    primary_model: Literal["auto", "lightgbm", "logistic"] = "auto"
    lightgbm_space: dict[str, list[Any]] = field(default_factory=_lgb_space)
    lightgbm_defaults: dict[str, Any] = field(default_factory=_lgb_defaults)
    max_bin: int = 63
    logistic_space: dict[str, list[Any]] = field(
        default_factory=lambda: {"C": [0.001, 0.01, 0.1], "weighting": ["balanced", "sqrt", "none"]}
    )
    logistic_defaults: dict[str, Any] = field(
        default_factory=lambda: {"C": 0.01, "weighting": "balanced"}
    )
    logistic_max_iter: int = 200
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    reference_tree: ReferenceTreeSettings = field(default_factory=ReferenceTreeSettings)
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    tie_orderings: int = 50
    reasons: int = 3
    dependence_top: int = 4
    fairness: FairnessSettings = field(default_factory=FairnessSettings)
    subset_column: str = "school_district"
    subset_min_events: int = 10
    shap_method: Literal["lightgbm", "tree_explainer"] = "lightgbm"
    shap_sample: int = 5000


# -------------------------------------------------------------------------------------- review
@dataclass(frozen=True)
class PowerSettings(_Section):
    alpha: float = 0.05
    power: float = 0.8
    expected_high_rate: float = 0.20
    expected_low_rate: float = 0.05
    expected_response_rate: float = 0.4


@dataclass(frozen=True)
class SimulatedReviewers(_Section):
    sensitivity: float = 0.8
    false_positive_rate: float = 0.02
    response_rate: float = 0.4


@dataclass(frozen=True)
class ReviewSettings(_Section):
    target: str = "young_carer"
    scoring_year: int | None = None
    n_high: int = 80
    n_low: int = 20
    low_pool_quantile: float = 0.5
    strata: list[str] = field(default_factory=lambda: ["school_code", "grade"])
    grade_bands: list[list[int]] | None = None
    ci_method: Literal["wilson", "exact"] = "wilson"
    power: PowerSettings = field(default_factory=PowerSettings)
    simulated_reviewers: SimulatedReviewers = field(default_factory=SimulatedReviewers)
    prevalence_item_prefix: str = "yc_"
    prevalence_skip: list[str] = field(default_factory=lambda: ["yc_rule_score"])
    prevalence_items: list[str] | None = None
    earlier_rounds: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------- reports
@dataclass(frozen=True)
class ReportsSettings(_Section):
    small_cell_threshold: int = 9
    suppress_small_cells: bool = True
    secondary_suppression: bool = True
    min_feasible_values: int = 5
    notebooks: list[str] = field(
        default_factory=lambda: [
            "00_city_overview",
            "01_data_quality",
            "02_panel",
            "03_model",
            "04_review_list",
            "05_review_results",
            "06_annual_statistics",
        ]
    )


# ---------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class MlflowSettings(_Section):
    enabled: bool = False
    tracking_store: str = "mlflow/mlflow.db"


@dataclass(frozen=True)
class CompareSettings(_Section):
    n_boot: int = 2000
    alpha: float = 0.05


@dataclass(frozen=True)
class RunsSettings(_Section):
    archive: bool = True
    keep_last: int = 20
    keep_panel: bool = False
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    compare: CompareSettings = field(default_factory=CompareSettings)


SECTION_TYPES: dict[str, type] = {
    "run": RunSettings,
    "synth": SynthSettings,
    "ingest": IngestSettings,
    "panel": PanelSettings,
    "models": ModelsSettings,
    "review": ReviewSettings,
    "reports": ReportsSettings,
    "runs": RunsSettings,
    "link": LinkSettings,
}
SECTIONS = tuple(SECTION_TYPES)


@dataclass(frozen=True)
class Settings:
    """All run settings; ``profile`` and ``config_dir`` say where they came from."""

    run: RunSettings
    synth: SynthSettings
    ingest: IngestSettings
    panel: PanelSettings
    models: ModelsSettings
    review: ReviewSettings
    reports: ReportsSettings
    runs: RunsSettings
    link: LinkSettings = field(default_factory=LinkSettings)
    profile: str | None = None
    config_dir: str = str(DEFAULT_CONFIG_DIR)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, key: str) -> Any:
        if key not in SECTIONS and key not in ("profile", "config_dir"):
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in SECTIONS or key in ("profile", "config_dir")

    def as_dict(self) -> dict[str, Any]:
        """The settings of every section as plain data (manifests, hashes, the settings block)."""
        return {s: getattr(self, s).as_dict() for s in SECTIONS}

    def with_overrides(self, overrides: dict[str, Any], origin: str = "overrides") -> Settings:
        """A new Settings with ``overrides`` (same shape as a profile) applied and re-validated."""
        _check_tree(overrides, origin)
        return _build(deep_merge(self.raw, overrides), self.profile, self.config_dir)


# ------------------------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _fail(origin: str, key: str, message: str) -> MimamoriError:
    return MimamoriError(f"{origin}: key '{key}': {message}")


def _check_value(value: Any, tp: Any, origin: str, key: str) -> None:
    """Raise MimamoriError unless ``value`` fits the annotation ``tp``."""
    kind, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return
    if kind in (typing.Union, types.UnionType):
        for alt in args:
            try:
                _check_value(value, alt, origin, key)
                return
            except MimamoriError:
                continue
        raise _fail(origin, key, f"expected {_type_name(tp)}, got {value!r}")
    if kind is Literal:
        if value not in args:
            raise _fail(origin, key, f"expected one of {list(args)}, got {value!r}")
    elif dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _fail(origin, key, f"expected a mapping, got {value!r}")
        _check_mapping(value, tp, origin, key)  # type: ignore[arg-type]
    elif kind is list:
        if not isinstance(value, list):
            raise _fail(origin, key, f"expected a list, got {value!r}")
        for i, item in enumerate(value):
            _check_value(item, args[0], origin, f"{key}[{i}]")
    elif kind is dict:
        if not isinstance(value, dict):
            raise _fail(origin, key, f"expected a mapping, got {value!r}")
        for k, v in value.items():
            _check_value(k, args[0], origin, f"{key} (name {k!r})")
            _check_value(v, args[1], origin, f"{key}.{k}")
    elif not _is_scalar(value, tp):
        raise _fail(origin, key, f"expected {_type_name(tp)}, got {value!r}")


def _is_scalar(value: Any, tp: Any) -> bool:
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


def _check_mapping(data: dict[str, Any], cls: type, origin: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise _fail(origin, path, f"not a setting (known here: {', '.join(names)})")
        _check_value(value, hints[key], origin, path)


def _check_tree(tree: dict[str, Any], origin: str) -> None:
    """Check a whole overrides/profile tree ``{section: {...}}``."""
    for section, body in (tree or {}).items():
        if section not in SECTION_TYPES:
            raise MimamoriError(
                f"{origin}: section {section!r} is not a settings file "
                f"(known: {', '.join(SECTIONS)})"
            )
        if not isinstance(body, dict):
            raise MimamoriError(f"{origin}: section {section!r} must be a mapping")
        _check_mapping(body, SECTION_TYPES[section], origin, section)


def _construct(cls: type, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, tp = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(tp):
            value = _construct(tp, value)  # type: ignore[arg-type]
        elif typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1]):
            value = {k: _construct(typing.get_args(tp)[1], v) for k, v in value.items()}
        elif tp is float and isinstance(value, int):
            value = float(value)
        kwargs[f.name] = copy.deepcopy(value)
    return cls(**kwargs)


def _build(raw: dict[str, Any], profile: str | None, config_dir: str) -> Settings:
    sections = {s: _construct(SECTION_TYPES[s], raw.get(s) or {}) for s in SECTIONS}
    return Settings(**sections, profile=profile, config_dir=config_dir, raw=raw)


# ----------------------------------------------------------------------------------- loading
def deep_merge(base: dict, override: dict) -> dict:
    """Merge ``override`` into a copy of ``base``; nested dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise MimamoriError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise MimamoriError(f"{path}: expected a mapping at the top level")
    return data


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def load_config(
    config_dir: str | Path | None = None,
    profile: str | None = None,
    overrides: dict | None = None,
) -> Settings:
    """Load and validate every stage's settings, apply a profile and explicit overrides.

    ``overrides`` uses the same shape as a profile: ``{"synth": {"n_children": 500}}``.
    The data and reports folders can also be moved with MIMAMORI_DATA / MIMAMORI_REPORTS,
    and MIMAMORI_ENGINE chooses run.engine.
    """
    # MIMAMORI_CONFIG (make's CONFIG=) moves the whole settings folder, e.g. a municipality's
    # own settings kept outside the repository, or the test suite's real-data-mode copy
    config_dir = Path(config_dir or os.environ.get("MIMAMORI_CONFIG") or DEFAULT_CONFIG_DIR)
    if not config_dir.is_dir():
        raise MimamoriError(f"config directory {config_dir} not found")
    raw: dict[str, Any] = {}
    for section in SECTIONS:
        path = config_dir / f"{section}.yaml"
        body = _read_yaml(path) if path.exists() else {}
        _check_mapping(body, SECTION_TYPES[section], _shown(path))
        raw[section] = body
    unknown = sorted(p.name for p in config_dir.glob("*.yaml") if p.stem not in SECTION_TYPES)
    if unknown:
        raise MimamoriError(
            f"{_shown(config_dir)}: {unknown} are not settings files "
            f"(known: {', '.join(s + '.yaml' for s in SECTIONS)})"
        )
    profile = profile if profile is not None else os.environ.get("MIMAMORI_PROFILE") or None
    if profile:
        ppath = config_dir / "profiles" / f"{profile}.yaml"
        if not ppath.exists():
            known = sorted(p.stem for p in (config_dir / "profiles").glob("*.yaml"))
            raise MimamoriError(f"profile {profile!r} not found in {ppath.parent} (known: {known})")
        body = _read_yaml(ppath)
        _check_tree(body, _shown(ppath))
        raw = deep_merge(raw, body)
    # environment (make exports these) beats the files; explicit overrides beat both
    for env, key in (
        ("MIMAMORI_DATA", "data_dir"),
        ("MIMAMORI_REPORTS", "reports_dir"),
        ("MIMAMORI_ENGINE", "engine"),
    ):
        if os.environ.get(env):
            raw["run"][key] = os.environ[env]
            _check_mapping({key: raw["run"][key]}, RunSettings, f"${env}", "")
    if overrides:
        _check_tree(overrides, "overrides")
        raw = deep_merge(raw, overrides)
    return _build(raw, profile, str(config_dir.resolve()))


def resolve(path: str | Path) -> Path:
    """A configured path: absolute as given, relative ones from the repository root."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def data_dir(cfg: Settings) -> Path:
    return resolve(cfg.run.data_dir)


def reports_dir(cfg: Settings) -> Path:
    return resolve(cfg.run.reports_dir)


def config_hash(cfg: Settings, sections: tuple[str, ...] | None = None) -> str:
    """Stable short hash of (some sections of) the settings, for manifests and the audit log.

    Paths are not settings of the analysis: the same settings in another folder hash the same.
    """
    return stable_hash(
        {k: _without_paths(k, getattr(cfg, k).as_dict()) for k in (sections or SECTIONS)}
    )


def stable_hash(data: Any) -> str:
    """Short hash of plain data (sorted keys): same data, same hash on every machine."""
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# where outputs go and where the work runs do not change what is computed ...
_NOT_HASHED = ("data_dir", "reports_dir", "engine", "local_workers", "dask")


def _without_paths(section: str, body: dict[str, Any]) -> dict[str, Any]:
    if section != "run":
        return body
    out = {k: v for k, v in body.items() if k not in _NOT_HASHED}
    dask = body["dask"]
    if body["engine"] == "dask" and dask["lightgbm"] == "distributed":
        # ... except LightGBM trained data-parallel: its machines (one per worker, rows by
        # child partition) shape the model
        out["lightgbm_fit"] = {k: dask[k] for k in ("lightgbm", "partitions", "n_workers")}
    return out
