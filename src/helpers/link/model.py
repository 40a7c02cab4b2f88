"""The Fellegi–Sunter model, with splink: comparisons, blocking, EM training, predictions.

One model per code-less source (its identity fields differ): u probabilities from random
pairs, m probabilities by expectation maximisation in sessions blocked on different columns
(``link.em_blocking``), the prior from a strict deterministic rule (``train``); then the match
weight and probability of every candidate pair the blocking rules generate
(``link.blocking_rules``) under that model (``score``). A pair's score depends only on the
model and its two records, so the caller scores a large source in parts, each in its own
DuckDB connection (capped at ``link.duckdb_memory``, spilling to a temporary folder).
The engine is DuckDB in-process, or Spark when ``link.engine: spark`` and pyspark + Java are
installed (the same settings; splink writes the SQL for either).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import pandas as pd

from helpers import MimamoriError
from helpers.config import LinkSettings

ENGINES = ("duckdb", "spark")
# m of the birth-date levels (exact, day/month swapped, one digit off, same month, else) is
# set, not estimated: in a city where a few names repeat, EM in name-blocked pairs learns
# "same name" instead of "same person" and puts exact birth-date agreement at m ~ 0.05-0.5.
# These are the shares a registry clerk sees in practice: ~1-2% of dates mistyped.
BIRTH_M = (0.95, 0.01, 0.02, 0.01, 0.01)
# DuckDB's cap per linkage connection (it spills to a temporary folder beyond it) and threads:
# the linkage runs inside ingest, which holds the exports in memory at the same time
DUCKDB_THREADS = 2
# pairs kept per source record after scoring: the best, the second (margin, twins) and up to
# three for clerical review are all ``assign`` reads
KEEP_TOP = 3


def _splink() -> Any:
    import splink

    return splink


def comparisons(has: set[str]) -> list:
    """Comparisons for the identity columns both sides can have (``has``)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    out = [
        cl.JaroWinklerAtThresholds("surname_kana", [0.95, 0.85]),
        cl.JaroWinklerAtThresholds("given_kana", [0.95, 0.85]),
        cl.LevenshteinAtThresholds("name_kanji", [1, 2]),
        cl.CustomComparison(
            output_column_name="birth_date",
            comparison_levels=[
                cll.NullLevel("birth_date"),
                *[
                    level.configure(m_probability=m, fix_m_probability=True)
                    for level, m in zip(
                        [
                            cll.ExactMatchLevel("birth_date"),
                            cll.CustomLevel(
                                '"birth_swap_l" = "birth_date_r" OR '
                                '"birth_date_l" = "birth_swap_r"',
                                "day and month transposed",
                            ),
                            cll.DamerauLevenshteinLevel("birth_date", 1),
                            cll.CustomLevel(
                                'substr("birth_date_l", 1, 7) = substr("birth_date_r", 1, 7)',
                                "same year and month",
                            ),
                            cll.ElseLevel(),
                        ],
                        BIRTH_M,
                        strict=True,
                    )
                ],
            ],
        ),
        cl.ExactMatch("sex"),
    ]
    if "address_block" in has:
        out.append(
            cl.CustomComparison(
                output_column_name="address_block",
                comparison_levels=[
                    cll.NullLevel("address_town"),
                    cll.ExactMatchLevel("address_block"),
                    cll.ExactMatchLevel("address_town"),
                    cll.ElseLevel(),
                ],
            )
        )
    return out


def blocking_rules(rules: list[list[str]], has: set[str]) -> list:
    """``[[col, ...], ...]`` to splink rules; ``birth_swap`` = birth date with day and month
    exchanged on either side. Rules on a column the source lacks are left out."""
    from splink import block_on
    from splink.blocking_rule_library import CustomRule

    out: list = []
    for cols in rules:
        if any(c not in has for c in cols if c != "birth_swap"):
            continue
        if cols == ["birth_swap"]:
            out += [
                CustomRule("l.birth_swap = r.birth_date"),
                CustomRule("l.birth_date = r.birth_swap"),
            ]
        else:
            out.append(block_on(*cols))
    return out


def db_api(link: LinkSettings, temp_dir: str | None = None, threads: int = DUCKDB_THREADS) -> Any:
    """The splink database API of ``link.engine``; a clear error when Spark is missing. DuckDB
    gets a fresh in-memory connection capped at ``link.duckdb_memory`` that spills to
    ``temp_dir`` (the process also holds the exports)."""
    engine = link.engine
    if engine not in ENGINES:
        raise MimamoriError(
            f"config/link.yaml: key 'engine': {engine!r} is not one of {list(ENGINES)}"
        )
    if engine == "duckdb":
        import duckdb
        from splink.backends.duckdb import DuckDBAPI

        con = duckdb.connect(config={"memory_limit": link.duckdb_memory, "threads": threads})
        if temp_dir:
            con.execute(f"SET temp_directory = '{temp_dir}'")
        return DuckDBAPI(connection=con)
    try:
        from pyspark.sql import SparkSession
        from splink.backends.spark import SparkAPI
    except ImportError as exc:
        raise MimamoriError(
            "config/link.yaml: engine: spark needs pyspark (and Java) installed "
            f"({exc}); use engine: duckdb or install pyspark"
        ) from exc
    spark = SparkSession.builder.master(link.spark_master).appName("mimamori-link").getOrCreate()
    return SparkAPI(spark_session=spark)


def _close(api: Any) -> None:
    con = getattr(api, "_con", None)
    if con is not None:
        con.close()


def _one_thread(api: Any) -> None:
    con = getattr(api, "_con", None)
    if con is not None:
        con.execute("SET threads = 1")


def _quiet() -> None:
    for name in ("splink", "py4j"):
        logging.getLogger(name).setLevel(logging.ERROR)


def train(
    registry: pd.DataFrame,
    source: pd.DataFrame,
    link: LinkSettings,
    has: set[str],
    temp_dir: str | None = None,
) -> dict:
    """The Fellegi–Sunter model (splink's JSON) of one source: the prior from a strict rule, u
    by random sampling, m by EM; ``source`` may be a sample of the source's records."""
    from splink import Linker, SettingsCreator, block_on

    api = db_api(link, temp_dir)
    try:
        reg = api.register(registry, dataset_display_name="registry")
        src = api.register(source, dataset_display_name="source")
        settings = SettingsCreator(
            link_type="link_only",
            comparisons=comparisons(has),
            blocking_rules_to_generate_predictions=blocking_rules(link.blocking_rules, has),
            retain_matching_columns=False,
            retain_intermediate_calculation_columns=False,
            em_convergence=0.001,
            max_iterations=25,
        )
        _quiet()
        linker = Linker([reg, src], settings, log_level=logging.ERROR)
        tr = linker.training
        tr.estimate_probability_two_random_records_match(
            [block_on("birth_date", "given_kana", "sex")], recall=0.8
        )
        tr.estimate_u_using_random_sampling(max_pairs=float(link.u_max_pairs), seed=link.seed)
        _one_thread(api)  # EM sums probabilities: in one order, so each run learns the same m
        for cols in link.em_blocking:
            tr.estimate_parameters_using_expectation_maximisation(block_on(*cols))
        return linker.misc.save_model_to_json()
    finally:
        _close(api)


def _top_sql(keep_all: Collection[str]) -> str:
    """Per source record its ``KEEP_TOP`` best pairs (by weight, then resident code: the order
    ``assign`` ranks in), and every pair of a record staff decided on."""
    rid = "CASE WHEN substr(unique_id_l, 1, 2) = 'S:' THEN unique_id_l ELSE unique_id_r END"
    code = "CASE WHEN substr(unique_id_l, 1, 2) = 'S:' THEN unique_id_r ELSE unique_id_l END"
    ids = sorted({f"S:{r}" for r in keep_all if str(r).isalnum()})
    staff = f" OR rid IN ({', '.join(repr(i) for i in ids)})" if ids else ""
    return (
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY rid ORDER BY match_weight "
        "DESC, code ASC) AS rank_in_record FROM (SELECT *, "
        f"{rid} AS rid, {code} AS code FROM {{this}})) WHERE rank_in_record <= {KEEP_TOP}{staff}"
    )


def score(
    model: dict,
    registry: pd.DataFrame,
    source: pd.DataFrame,
    link: LinkSettings,
    temp_dir: str | None = None,
    keep_all: Collection[str] = (),
) -> tuple[pd.DataFrame, int]:
    """Candidate pairs (resident_code = registry, record_id = source record) with match weight,
    probability and comparison levels, under a trained ``model``, and how many there were. A
    pair's score depends only on the model and the two records, so a source can be scored in
    parts. Only what ``assign`` reads is returned: each record's ``KEEP_TOP`` best pairs (best,
    second, up to three for review), all pairs of the records in ``keep_all`` (staff
    decisions)."""
    from splink import Linker

    api = db_api(link, temp_dir)
    try:
        reg = api.register(registry, dataset_display_name="registry")
        src = api.register(source, dataset_display_name="source")
        _quiet()
        linker = Linker([reg, src], model, log_level=logging.ERROR)
        pred = linker.inference.predict(threshold_match_probability=0.001)
        n = int(pred.query_sql("SELECT count(*) AS n FROM {this}").as_record_list()[0]["n"])
        pairs = pred.query_sql(_top_sql(keep_all)).as_pandas_dataframe()
    finally:
        _close(api)
    keep = [
        "code",
        "rid",
        "match_weight",
        "match_probability",
        *[c for c in pairs.columns if c.startswith("gamma_")],
    ]
    pairs = pairs[keep].rename(columns={"code": "resident_code", "rid": "record_id"})
    pairs["resident_code"] = pairs["resident_code"].str.slice(2)
    pairs["record_id"] = pairs["record_id"].str.slice(2)
    return pairs.reset_index(drop=True), n


def predict(
    registry: pd.DataFrame, source: pd.DataFrame, link: LinkSettings, has: set[str]
) -> tuple[pd.DataFrame, dict]:
    """Train on and score one source in one go (small sources, tests): pairs, model summary."""
    model = train(registry, source, link, has)
    return score(model, registry, source, link)[0], summary(model)


def summary(model: dict) -> dict:
    """m and u per comparison level, and the prior: what EM learnt (for the report)."""
    out: dict[str, Any] = {"prior": model.get("probability_two_random_records_match")}
    for comp in model.get("comparisons", []):
        out[comp["output_column_name"]] = [
            {
                "level": lvl.get("label_for_charts"),
                "m": lvl.get("m_probability"),
                "u": lvl.get("u_probability"),
            }
            for lvl in comp["comparison_levels"]
            if not lvl.get("is_null_level")
        ]
    return out
