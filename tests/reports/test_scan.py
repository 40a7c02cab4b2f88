"""check-reports attacks the reports: every planted leak fails it, a protected page passes."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from helpers import MimamoriError
from helpers.config import load_config
from helpers.reports import api
from helpers.reports import disclosure as D
from helpers.reports import scan as S

R = D.Rules(9)


@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("MIMAMORI_PROFILE", raising=False)
    monkeypatch.setenv("MIMAMORI_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MIMAMORI_REPORTS", str(tmp_path / "reports"))
    return load_config(profile="tiny")


def page(body: str) -> str:
    return api.page_html(body, "t")


def table(caption: str, header: list[str], rows: list[list[object]]) -> str:
    """A plain HTML table as anyone might write it: no data-* marks."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def findings(html: str) -> list[S.Finding]:
    return S.scan_text("r.html", page(html), None, R, True)


def kinds(html: str) -> set[str]:
    return {f.kind for f in findings(html)}


# ------------------------------------------------------------------- planted leaks
def test_margin_total_row_gives_back_a_hidden_cell():
    leak = table(
        "経路",
        ["経路", "2020年度"],
        [["police", "&lt;10"], ["school", 120], ["合計（total）", 125]],
    )
    (f,) = findings(leak)
    assert f.kind == "hidden count can be worked out" and f.masked == "5"
    assert (f.table, f.row, f.column) == ("経路", "police", "2020年度")
    assert "r.html" in str(f) and "'police'" in str(f) and "'2020年度'" in str(f)


def test_margin_two_small_cells_pinned_to_8_or_9_by_a_total_elsewhere():
    totals = table("種別", ["種別", "2020年度"], [["a", 100], ["b", 37], ["合計", 137]])
    route = table(
        "経路", ["経路", "2020年度"], [["police", "&lt;10"], ["medical", "&lt;10"], ["school", 120]]
    )
    found = findings(totals + route)
    assert {(f.row, f.masked) for f in found} == {("police", "8..9"), ("medical", "8..9")}
    assert not findings(route)  # without the other table's total nothing is pinned


def test_margin_rows_in_minus_rows_out_minus_duplicates():
    rows = [
        ["a", 100, 85, "&lt;10", 13],
        ["b", 50, 30, 20, 0],
        ["c", 80, 60, 10, 10],
        ["d", 60, 35, 13, 12],
    ]
    leak = table(
        "表ごとの取込件数",
        ["table", "rows_in", "rows_out", "rows_rejected", "duplicates_dropped"],
        rows,
    )
    (f,) = findings(leak)
    assert (f.row, f.column, f.masked) == ("a", "rows_rejected", "2")


def test_derived_ratio_precision_times_list_size():
    leak = table(
        "地区ごとの適合率",
        ["地区", "n", "k_group", "precision"],
        [["E07", 57, 13, 0.077], ["E08", 120, 40, 0.3]],
    )
    (f,) = findings(leak)
    assert f.kind == "derived figure gives away a count" and f.masked == "0.077 × 13"
    assert (f.row, f.column, f.detail) == ("E07", "precision", "≈ 1")


def test_mean_of_a_yes_no_item_times_group_size():
    leak = table(
        "上位k人とそれ以外",
        ["feature", "mean_top", "mean_rest", "n_top", "n_rest"],
        [["absence_unknown", 0.111, 0.47, 54, 867]],
    )
    assert {(f.column, f.masked) for f in findings(leak)} == {("mean_top", "0.111 × 54")}


def test_curve_start_in_a_table_or_an_annotation():
    curve = table("リスト長と適合率", ["k", "precision"], [[10, "0.40"], [50, "0.30"]])
    assert {f.masked for f in findings(curve)} == {"0.40 × 10"}
    note = "<p>最初の点: precision@10 = 0.40</p>"
    assert kinds(note) == {"derived figure gives away a count"}
    headline = "<div data-headline='1'>上位100人の適合率 最悪の場合 0.04</div>"
    assert {f.masked for f in findings(headline)} == {"0.04 × 100"}


def test_settings_block_with_earlier_rounds():
    block = (
        '<details><summary>使用した設定</summary><pre>{"review": {"earlier_rounds": '
        '[{"high_positive": 1, "high_reviewed": 16, "low_reviewed": 4}], "n_low": 4}}'
        "</pre></details>"
    )
    assert {f.masked for f in findings(block)} == {'high_positive": 1', 'low_reviewed": 4'}


@pytest.mark.parametrize(
    "hiding_place",
    [
        "<!-- 要支援 4人 -->",
        "<style>.x::after { content: '要支援 4人'; }</style>",
        "<a href='#' title='要支援 4人'>link</a>",
        "<p>要支援 4<span class='x'></span>人</p>",
        "<p>4 <b>cases</b> were found</p>",
        "<img alt='x' src='data:text/html;base64,{b64}'>",
        "<a href='data:text/plain,%E8%A6%81%E6%94%AF%E6%8F%B4%204%E4%BA%BA'>x</a>",
        "<!-- <table><tr><th>人数</th></tr><tr><td>3</td></tr></table> -->",
    ],
)
def test_counts_hidden_in_comments_styles_attributes_uris_and_split_text(hiding_place):
    b64 = base64.b64encode("<p>要支援 4人</p>".encode()).decode()
    found = findings(hiding_place.replace("{b64}", b64))
    assert found and all("count" in f.kind for f in found), found


def test_a_small_count_in_a_table_not_marked_as_a_count_table():
    leak = table("学校別", ["学校", "人数（children）"], [["A", 3], ["B", 40]])
    (f,) = findings(leak)
    assert (f.kind, f.row, f.column, f.masked) == (
        "unsuppressed small count",
        "A",
        "人数（children）",
        "3",
    )


def png_with_text(text: str) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"tEXt", b"Comment\x00" + text.encode("latin-1"))
        + chunk(b"IEND", b"")
    )


def test_every_file_under_reports_is_read(tmp_path):
    reports = tmp_path / "reports"
    (reports / "cache" / "deep").mkdir(parents=True)
    (reports / "ok.html").write_text(page("<p>all fine: 1,234 children</p>"), encoding="utf-8")
    (reports / "cache" / "deep" / "x.html").write_text(page("<p>3 children</p>"), "utf-8")
    (reports / ".leak.html").write_text(page("<p>要支援 2人</p>"), encoding="utf-8")
    (reports / "notes.csv").write_text("school,children\nA,4\nB,50\n", encoding="utf-8")
    (reports / "fig.png").write_bytes(png_with_text("5 cases"))
    (reports / "blob.bin").write_bytes(bytes(range(256)))
    found = S.scan_reports(reports, None, R)
    by_file = {f.file: f.kind for f in found}
    assert by_file == {
        "cache/deep/x.html": "small count in text",
        ".leak.html": "small count in text",
        "notes.csv": "unsuppressed small count",
        "fig.png": "small count in text",
        "blob.bin": "unscannable file",
    }


def test_real_codes_and_names_anywhere_in_the_page():
    index = S.PiiIndex.build(["123456789"], ["山田太郎", "ヤマダタロウ"])
    leaks = ["<p data-x='123456789'>x</p>", "<!-- 山田 太郎 -->", "<style>/* ﾔﾏﾀﾞﾀﾛｳ */</style>"]
    for html in leaks:
        assert S.scan_text("r.html", page(html), index, R, True), html


def test_check_reports_prints_report_table_row_column_and_exits_1(cfg, tmp_path, capsys):
    reports = tmp_path / "reports"
    reports.mkdir()
    leak = table(
        "経路",
        ["経路", "2020年度"],
        [["police", "&lt;10"], ["school", 120], ["合計（total）", 125]],
    )
    (reports / "06_annual_statistics.html").write_text(page(leak), encoding="utf-8")
    assert S.check_reports_main(cfg, []) == 1
    out = capsys.readouterr().out
    assert (
        "06_annual_statistics.html: table '経路' row 'police' column '2020年度' hidden "
        "count can be worked out 5"
    ) in out
    (reports / "06_annual_statistics.html").write_text(page("<p>ok</p>"), encoding="utf-8")
    assert S.check_reports_main(cfg, []) == 0
    with pytest.raises(MimamoriError, match="not found"):
        S.check_reports_main(cfg, ["--reports", str(tmp_path / "nope")])


# --------------------------------------------------------- protected pages pass
def test_the_report_api_protects_what_the_scan_attacks(cfg):
    state = api.ReportState("t", R)
    route = pd.DataFrame(
        {
            "経路": ["police", "medical", "school", "family", "合計（total）"],
            "2020年度": [8, 9, 120, 200, 337],
            "2021年度": [30, 40, 2, 100, 172],
        }
    )
    by_type = pd.DataFrame(
        {
            "種別": ["a", "b", "合計（total）"],
            "2020年度": [300, 37, 337],
            "2021年度": [100, 72, 172],
        }
    )
    quality = pd.DataFrame(
        {
            "table": ["a", "b", "c", "d"],
            "rows_in": [100, 50, 80, 60],
            "rows_out": [95, 30, 70, 40],
            "rows_rejected": [2, 20, 5, 15],
            "duplicates": [3, 0, 5, 5],
        }
    )
    crosstab = pd.DataFrame({"feature": ["x", "y"], "mean_top": [0.111, 0.5], "n_top": [54, 54]})
    html = "".join(
        [
            api.table_html(
                by_type,
                "種別",
                cfg,
                counts=["2020年度", "2021年度"],
                universe="consultations",
                state=state,
            ),
            api.table_html(
                route,
                "経路",
                cfg,
                counts=["2020年度", "2021年度"],
                universe="consultations",
                state=state,
            ),
            api.table_html(quality, "取込", cfg, counts=list(quality.columns[1:]), state=state),
            api.table_html(crosstab, "上位k人", cfg, counts=["n_top"], state=state),
        ]
    )
    assert not findings(html), findings(html)
    # and the same tables written naively are caught
    naive = (
        table("経路", list(route.columns), route.to_numpy().tolist())
        .replace("<td>8</td>", "<td>&lt;10</td>")
        .replace("<td>9</td>", "<td>&lt;10</td>")
    )
    assert kinds(naive) == {"hidden count can be worked out"}


def test_registry_rejects_two_different_totals_for_one_population(cfg):
    state = api.ReportState("t", R)
    a = pd.DataFrame({"g": ["x", "合計"], "n": [50, 50]})
    b = pd.DataFrame({"g": ["y", "z", "合計"], "n": [20, 31, 51]})
    api.table_html(a, "a", cfg, counts=["n"], universe="u", state=state)
    assert state.published == {"u|n": 50.0}
    with pytest.raises(MimamoriError, match="printed 50"):
        api.table_html(b, "b", cfg, counts=["n"], universe="u", state=state)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(hst.data())
def test_random_count_tables_through_the_api_never_fail_the_scan(cfg, data):
    """Suppression + audit: whatever the counts, the page the API writes passes the scan."""
    n_rows, n_cols = data.draw(hst.integers(2, 5)), data.draw(hst.integers(1, 4))
    cell = hst.one_of(hst.integers(0, 12), hst.integers(10, 300))
    body = np.array([[data.draw(cell) for _ in range(n_cols)] for _ in range(n_rows)])
    frame = pd.DataFrame(body, columns=[f"{2020 + j}年度" for j in range(n_cols)])
    counts = list(frame.columns)
    frame.insert(0, "区分", [f"r{i}" for i in range(n_rows)])
    frame.loc[len(frame)] = ["合計（total）", *frame[counts].sum().tolist()]
    try:
        html = api.table_html(frame, "表", cfg, counts=counts, state=api.ReportState("t", R))
    except MimamoriError as exc:
        assert "can be worked out" in str(exc)
        return
    assert not [f for f in findings(html) if "count" in f.kind], findings(html)


def test_a_group_rebuilt_from_the_other_groups_of_a_partition():
    # fairness: every attribute splits the same children; sex is shown in full (97 events),
    # so foreign = 97 - 93 = 4 although its own cells are hidden
    header = ["group", "attribute", "n", "events", "tp"]
    rows = [
        ["female", "sex", 3472, 50, 12],
        ["male", "sex", 3629, 47, 11],
        ["foreign", "nationality", 160, "&lt;10", "&lt;10"],
        ["japanese", "nationality", 6941, 93, 20],
    ]
    found = findings(table("公平性", header, rows))
    assert {(f.row, f.column, f.masked) for f in found} == {
        ("foreign / nationality", "events", "4"),
        ("foreign / nationality", "tp", "3"),
    }


def test_the_api_hides_the_rest_of_a_partition_itself(cfg):
    fair = pd.DataFrame(
        {
            "group": ["female", "male", "foreign", "japanese"],
            "attribute": ["sex", "sex", "nationality", "nationality"],
            "n": [3472, 3629, 160, 6941],
            "events": [50, 47, 4, 93],
            "tp": [12, 11, 3, 20],
        }
    )
    html = api.table_html(
        fair, "公平性", cfg, counts=["n", "events", "tp"], state=api.ReportState("t", R)
    )
    assert "data-group-by='[&quot;attribute&quot;]'" in html
    assert not findings(html)


def test_a_ratio_of_small_numbers_beside_a_hidden_list_length():
    # district E06: list length hidden (<10) but precision 0.429 can only be 3 of 7
    leak = table(
        "地区ごとの適合率",
        ["地区", "n", "k_group", "precision"],
        [["E06", 498, "&lt;10", 0.429], ["E01", 1028, 14, 0.786]],
    )
    (f,) = findings(leak)
    assert (f.row, f.column, f.masked, f.detail) == (
        "E06",
        "precision",
        "0.429 = 3/7",
        "3/7 beside a hidden count",
    )
    assert D.small_ratio("0.429", 9) == "3/7" and D.small_ratio("0.02", 9) is None
