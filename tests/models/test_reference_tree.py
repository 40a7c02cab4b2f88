"""The reference tree as a reusable baseline, on a dataset rebuilt from the published leaves.

The reference analysis (physical abuse, 121,135 child-years aged <= 15, 43 abused) published
its decision tree's leaves as child-years / abused per path (Table 3-3):

    weight3y >= 15 & school age >= 10 & psychiatric outpatient          1 /  1
    weight3y >= 15 & school age >= 10 & no psychiatric outpatient   7,130 / 11
    weight3y >= 15 & school age <  10 & cooperates in child-rearing    32 /  1
    weight3y >= 15 & school age <  10 & does not cooperate          6,140 /  0
    weight3y <  15 & birth head circumference >= 36 cm             16,726 /  0
    weight3y <  15 & head < 36 & mother smokes >= 2/day               641 /  3
    weight3y <  15 & head < 36 & mother smokes <  2/day            90,465 / 27

with node risk ratios weight >= 15 2.75; & age >= 10 4.74; & no psych 4.35; & smokes >= 2
13.18. A variable a leaf's path does not mention is 0 there (school age >= 10: 40% of each
leaf's rows, cases and non-cases alike); a pure-noise column sits beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.config import ReferenceTreeSettings
from helpers.models.baselines import ReferenceTree

LEAVES = [  # (path, child-years, abused)
    ({"weight3y_15": 1, "school_age_10": 1, "psych_outpatient": 1}, 1, 1),
    ({"weight3y_15": 1, "school_age_10": 1, "psych_outpatient": 0}, 7130, 11),
    ({"weight3y_15": 1, "school_age_10": 0, "cooperates": 1}, 32, 1),
    ({"weight3y_15": 1, "school_age_10": 0, "cooperates": 0}, 6140, 0),
    ({"weight3y_15": 0, "head_36": 1}, 16726, 0),
    ({"weight3y_15": 0, "head_36": 0, "mother_smokes_2": 1}, 641, 3),
    ({"weight3y_15": 0, "head_36": 0, "mother_smokes_2": 0}, 90465, 27),
]
FEATURES = [
    "weight3y_15",
    "school_age_10",
    "psych_outpatient",
    "cooperates",
    "head_36",
    "mother_smokes_2",
    "noise",
]
LABELS = {
    "weight3y_15": "3歳児健診体重15kg以上",
    "school_age_10": "学齢10歳以上",
    "psych_outpatient": "精神通院",
    "cooperates": "育児協力あり",
    "head_36": "出生時頭囲36cm以上",
    "mother_smokes_2": "母の喫煙1日2本以上",
    "noise": "雑音",
}
PUBLISHED_SETTINGS = ReferenceTreeSettings(
    max_depth=3, criterion="entropy", min_samples_leaf=448, min_samples_split=1642
)


def _every(n: int, share: float) -> np.ndarray:
    """Deterministically mark ``share`` of ``n`` rows (evenly spread)."""
    idx = np.arange(n) * share
    return (np.floor(idx + share) > np.floor(idx)).astype(float)


def table_3_3(seed: int = 0) -> pd.DataFrame:
    parts = []
    for path, n, abused in LEAVES:
        y = np.r_[np.ones(abused), np.zeros(n - abused)]
        part = pd.DataFrame({"abused": y})
        for f in FEATURES[:-1]:
            if f in path:
                part[f] = float(path[f])
            elif f == "school_age_10":  # 40% of cases and of non-cases alike
                part[f] = np.r_[_every(abused, 0.4), _every(n - abused, 0.4)]
            else:
                part[f] = 0.0
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame["noise"] = (np.random.default_rng(seed).random(len(frame)) < 0.5).astype(float)
    return frame


@pytest.fixture(scope="module")
def fitted():
    frame = table_3_3()
    tree = ReferenceTree.fit(
        frame, FEATURES, "abused", PUBLISHED_SETTINGS, seed=0, labels=LABELS, binary=set(FEATURES)
    )
    return frame, tree, tree.nodes(frame[FEATURES].to_numpy(float), frame["abused"].to_numpy())


def test_fixture_matches_the_published_totals():
    frame = table_3_3()
    assert len(frame) == 121_135 and frame["abused"].sum() == 43
    smokes = frame[(frame.weight3y_15 == 0) & (frame.head_36 == 0) & (frame.mother_smokes_2 == 1)]
    base = 43 / 121_135
    assert smokes["abused"].mean() / base == pytest.approx(13.18, abs=0.01)
    heavy = frame[frame.weight3y_15 == 1]
    assert heavy["abused"].mean() / base == pytest.approx(2.75, abs=0.01)


def test_mothers_cigarettes_branch_has_risk_ratio_above_10_with_exact_ci(fitted):
    _, tree, nodes = fitted
    smokes = nodes[nodes["condition"] == "母の喫煙1日2本以上＝あり"]
    assert len(smokes) == 1
    node = smokes.iloc[0]
    assert node["risk_ratio"] >= 10 and node["risk_ratio"] == pytest.approx(13.18, abs=0.01)
    assert (node["child_years"], node["events"]) == (641, 3)
    # exact (Clopper-Pearson) CI of 3/641 relative to the base rate: wide, and above 1
    assert 1 < node["rr_ci_low"] < node["risk_ratio"] < node["rr_ci_high"]
    assert node["rr_ci_high"] > 30


def test_every_node_on_every_path_has_a_risk_ratio_and_ci(fitted):
    frame, tree, nodes = fitted
    assert nodes.loc[nodes["node"] == 0, "child_years"].item() == 121_135
    assert nodes[["risk_ratio", "rr_ci_low", "rr_ci_high"]].notna().all().all()
    assert (nodes["rr_ci_low"] <= nodes["risk_ratio"]).all()
    assert (nodes["risk_ratio"] <= nodes["rr_ci_high"]).all()
    leaves = nodes[nodes["leaf"]]
    assert leaves["child_years"].sum() == 121_135 and leaves["events"].sum() == 43
    for _, leaf in leaves.iterrows():  # the path shows the risk ratio of every node on it
        path = tree.path(int(leaf["node"]))
        shown = leaf["path_risk_ratios"].split(" → ")
        assert len(shown) == len(path) == leaf["depth"]
        assert float(shown[-1]) == pytest.approx(leaf["risk_ratio"], abs=0.005)
    segments = tree.segments(frame[FEATURES].to_numpy(float), frame["abused"].to_numpy())
    assert segments["child_years"].sum() == 121_135
    assert segments["risk_ratio"].is_monotonic_decreasing
    assert "noise" not in " ".join(nodes["rule"])  # strict leaf sizes: no split on the noise


def test_strict_leaf_sizes_cannot_rebuild_the_smallest_published_leaves(fitted):
    """Two published leaves (1 and 7 ... 32 child-years) are below min_samples_leaf = 448: the
    published table is not consistent with its own settings, and a reproduction shows it."""
    _, _, nodes = fitted
    assert nodes.loc[nodes["leaf"], "child_years"].min() >= 448
    assert not ({1, 32} & set(nodes["child_years"]))


def test_unreliable_splits_are_flagged():
    """Relaxed leaf sizes on the heavier children (13 cases) let the tree split below school
    age 10 on a single case (cooperates in child-rearing: 1 of 32): that split is flagged."""
    frame = table_3_3()
    frame = frame[frame["weight3y_15"] == 1].reset_index(drop=True)
    loose = ReferenceTreeSettings(
        max_depth=3,
        criterion="entropy",
        min_samples_leaf=1,
        min_samples_split=2,
        min_split_events=10,
    )
    tree = ReferenceTree.fit(frame, FEATURES, "abused", loose, labels=LABELS, binary=set(FEATURES))
    nodes = tree.nodes(frame[FEATURES].to_numpy(float), frame["abused"].to_numpy())
    splits = nodes[~nodes["leaf"]]
    few = splits[splits["events"] < 10]
    assert len(few) and few["note"].str.contains("fewer than 10 events").all()
    assert splits.loc[splits["events"] >= 10, "note"].eq("").any()
