"""Reports 04 and 05 as calls (helpers.review.pages): simulated verdicts say so, analyst-only
tables stay out, and before any verdict comes back report 05 says what was sent."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers.review.pages import ListReport, ResultsReport
from helpers.review.report import SIMULATED, results_headline
from helpers.review.stage import main, review_paths
from tests.review.test_review import city_cfg  # noqa: F401 - the fixture


def test_results_headline_says_simulated_only_when_simulated():
    rates = pd.DataFrame(
        {
            "arm": ["high", "low"],
            "reviewed": [35, 20],
            "positive": [12, 0],
            "rate": [12 / 35, 0.0],
            "ci_low": [0.2, 0.0],
            "ci_high": [0.5, 0.16],
        }
    )
    assert results_headline(rates, 0.01, 9, simulated=True).startswith(SIMULATED)
    assert SIMULATED not in results_headline(rates, 0.01, 9, simulated=False)


def test_report_05_awaits_verdicts_then_shows_them_labelled_simulated(city_cfg):  # noqa: F811
    main(city_cfg, ["draw"])
    rep = ResultsReport.load(city_cfg)
    assert rep.awaiting and not rep.simulated
    assert "awaiting verdicts" in rep.awaiting_headline()
    sent = rep.sent().frame
    schools = sorted(
        p.stem.removeprefix("review_")
        for p in review_paths(city_cfg)["sheets"].glob("review_*.xlsx")
    )
    assert sent["学校（school）"].tolist() == schools
    assert sent["作成日（written）"].str.match(r"\d{4}-\d{2}-\d{2}").all()
    main(city_cfg, ["simulate"])
    main(city_cfg, ["verdicts"])
    rep = ResultsReport.load(city_cfg)
    assert not rep.awaiting and rep.simulated
    assert rep.headline().startswith(SIMULATED)
    for table in (rep.arm_rates(), rep.fisher(), rep.prevalence(), rep.rounds()):
        assert table.caption.startswith(SIMULATED)
    assert rep.rounds().frame["回（round）"].iloc[-1].endswith("（this round, simulated）")
    results = json.loads(review_paths(city_cfg)["results"].read_text(encoding="utf-8"))
    assert results["simulated"] is True


def test_real_verdicts_are_not_labelled_simulated(city_cfg):  # noqa: F811
    main(city_cfg, ["draw"])
    main(city_cfg, ["simulate"])
    real = city_cfg.with_overrides({"run": {"synthetic": False}})
    main(real, ["verdicts"])  # e.g. sheets returned by the schools
    rep = ResultsReport.load(real)
    assert not rep.simulated and SIMULATED not in rep.headline()


def test_report_04_keeps_arm_tables_to_the_analyst_copy(city_cfg):  # noqa: F811
    main(city_cfg, ["draw"])
    rep = ListReport.load(city_cfg)
    shown = [
        rep.scope(),
        rep.exclusions_table(),
        rep.by_school(),
        rep.by_age(),
        rep.reasons(),
        rep.power_table(),
    ]
    for table in shown:
        assert "arm" not in " ".join(map(str, table.frame.columns)).lower()
        assert "群（arm）" not in table.frame.columns
    assert "AUC" in rep.blind_text() and "school_code × grade" in rep.blind_text()
    balance = pd.read_csv(review_paths(city_cfg)["arm_balance"])
    assert set(balance["arm"]) == {"high", "low"}  # the analyst's check is written, not shown
    text = rep.power_text()
    assert "Fisher" in text and "正規近似" in text


@pytest.mark.slow
def test_notebook_05_renders_the_awaiting_page(city_cfg, tmp_path, monkeypatch):  # noqa: F811
    """Real-data mode before any sheet is back: report 05 runs and says what was sent."""
    import matplotlib

    matplotlib.use("Agg")
    from helpers.config import REPO_ROOT

    main(city_cfg, ["draw"])
    root = review_paths(city_cfg)["root"]
    source = (REPO_ROOT / "notebooks" / "05_review_results.py").read_text(encoding="utf-8")
    source = source.replace('data_dir = ""', f"data_dir = {str(root)!r}", 1)
    monkeypatch.setenv("MIMAMORI_DATA", str(root))
    exec(compile(source, "05_review_results.py", "exec"), {"__name__": "__main__"})
