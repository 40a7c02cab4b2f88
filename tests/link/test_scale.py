"""名寄せ at scale keeps its answers: the vectorised assignment equals the per-record rule,
scoring in birth-year parts equals scoring at once, the model is the same each run, and the key
master's date comes from the export, not the clock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.config import load_config
from helpers.link import clerical
from helpers.link.assign import ASSIGN_COLUMNS, _one, assign
from helpers.link.stage import link_table, linked_on, registry_frame, year_bound
from tests.link.test_link import SCHEMA, _registry, _source

NONE = pd.DataFrame(columns=clerical.DECISION_COLUMNS)


def _random_pairs(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    df = pd.DataFrame(
        {
            "record_id": rng.integers(0, 800, n).astype(str),
            "resident_code": rng.integers(0, 300, n).astype(str),
            "match_weight": rng.choice([-8.0, 0.0, 3.0, 6.5, 9.0, 12.0, 20.0], n)
            + rng.integers(0, 3, n),
            "gamma_given_kana": rng.integers(0, 4, n),
            "gamma_sex": rng.integers(0, 2, n),
        }
    ).drop_duplicates(["record_id", "resident_code"])
    df["match_probability"] = 1 / (1 + 2.0 ** (-df["match_weight"]))
    return df


def _slow(pairs: pd.DataFrame, records: pd.Index, link, decided: pd.DataFrame) -> pd.DataFrame:
    """The rule one record at a time (what ``assign`` computes with arrays)."""
    diff = set(
        zip(
            decided.loc[decided["decision"] == "different", "record_id"],
            decided.loc[decided["decision"] == "different", "resident_code"],
            strict=True,
        )
    )
    same = decided[decided["decision"] == "same"].groupby("record_id")["resident_code"].agg(set)
    keep = [
        (r, c) not in diff for r, c in zip(pairs["record_id"], pairs["resident_code"], strict=True)
    ]
    ranked = pairs[keep].sort_values(
        ["record_id", "match_weight", "resident_code"], ascending=[True, False, True], kind="stable"
    )
    groups = dict(iter(ranked.groupby("record_id", sort=False)))
    rows = []
    for rid in records:
        out = _one(groups.get(rid, ranked.iloc[:0]), link, same.get(rid, set()))
        if out["reason"] == "no_candidate" and rid in {r for r, _ in diff}:
            out["reason"] = "judged_different"
        rows.append({"record_id": rid, **out})
    frame = pd.DataFrame(rows)
    for c in ASSIGN_COLUMNS:
        if c not in frame:
            frame[c] = None
    return frame[ASSIGN_COLUMNS]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_assignment_equals_the_per_record_rule(seed: int) -> None:
    link = load_config().link
    pairs = _random_pairs(seed)
    records = pd.Index([str(i) for i in range(900)])  # some without any candidate
    first = pairs.drop_duplicates("record_id").head(2)
    (r1, c1), (r2, c2) = zip(first["record_id"], first["resident_code"], strict=True)
    decided = pd.DataFrame(
        [
            ["t", r1, c1, "same", "d", "k"],
            ["t", r2, c2, "different", "d", "k"],
            ["t", "850", "1", "different", "d", "k"],
        ],
        columns=clerical.DECISION_COLUMNS,
    )
    for dec in (NONE, decided):
        fast = assign(pairs, records, link, dec).set_index("record_id")
        slow = _slow(pairs, records, link, dec).set_index("record_id")
        for c in ("decision", "reason", "resident_code", "candidate_code"):
            a, b = fast[c].where(fast[c].notna(), None), slow[c].where(slow[c].notna(), None)
            assert a.tolist() == b.tolist(), c
        np.testing.assert_allclose(fast["match_probability"], slow["match_probability"])
        assert fast["pending"].tolist() == slow["pending"].tolist()


def test_scoring_in_parts_equals_scoring_at_once() -> None:
    cfg = load_config(overrides={"link": {"u_max_pairs": 20000}})
    reg = _registry()
    registry, surnames = registry_frame(reg)
    src = _source(reg)
    whole = link_table(cfg, SCHEMA, src, registry, surnames, "fp", NONE)
    small = cfg.with_overrides({"link": {"part_records": 40}})  # ~8 parts of 1-2 birth years
    parts = link_table(small, SCHEMA, src, registry, surnames, "fp", NONE)
    a, b = whole["result"].sort_index(), parts["result"].sort_index()
    pd.testing.assert_frame_equal(a, b)
    assert whole["candidate_pairs"] == parts["candidate_pairs"]
    pd.testing.assert_series_equal(
        whole["best_weight"].sort_index(), parts["best_weight"].sort_index()
    )


def test_the_model_is_the_same_each_run_and_on_a_sample_when_large() -> None:
    cfg = load_config(overrides={"link": {"u_max_pairs": 20000}})
    reg = _registry()
    registry, surnames = registry_frame(reg)
    src = _source(reg)
    one = link_table(cfg, SCHEMA, src, registry, surnames, "fp", NONE)
    two = link_table(cfg, SCHEMA, src, registry, surnames, "fp", NONE)
    assert one["model"] == two["model"]
    sampled = link_table(
        cfg.with_overrides({"link": {"train_records": 200}}),
        SCHEMA,
        src,
        registry,
        surnames,
        "fp",
        NONE,
    )
    auto = (sampled["result"]["decision"] == "auto").mean()
    assert auto > 0.9


def test_parts_need_only_their_birth_years_when_every_rule_is_year_bound() -> None:
    link = load_config().link
    names = {"birth_date", "birth_year", "birth_month", "surname_kana", "given_kana", "sex"}
    assert year_bound(link, names)  # the school export: no address
    assert not year_bound(link, names | {"address_block"})  # address + sex spans years


def test_key_master_date_is_the_export_date_not_the_clock() -> None:
    filled = pd.DataFrame({"source_file": ["校務支援_出欠指導_20240331.csv", "x_20230331.csv"]})
    assert linked_on(load_config(), filled) == "2024-03-31"
    cfg = load_config(overrides={"run": {"export_date": "2024-04-15"}})
    assert linked_on(cfg, filled) == "2024-04-15"
    assert linked_on(load_config(), pd.DataFrame({"source_file": ["roster.csv"]})) is None
