"""Reports: table look and marking, header, index, offline HTML, runner, identifier scan."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.config import load_config
from helpers.reports import api as rp
from helpers.reports import index as ix
from helpers.reports import runner as rn
from helpers.reports import scan as sc
from helpers.reports.disclosure import Rules

R = Rules(9)

TINY_NOTEBOOK = """# %% tags=["parameters"]
profile = "tiny"
data_dir = ""
config_dir = ""
fail = False

# %%
import pandas as pd
from helpers.reports.api import open_report, show_table, set_headline, close_report
cfg = open_report("小さな報告（Tiny report）", profile=profile, data_dir=data_dir,
                  config_dir=config_dir, params={"fail": fail})

# %%
print("visible print")
df = pd.DataFrame({"年度": [2022, 2023], "件数": [4, 120]})
show_table(df, "件数（counts）", cfg, counts=["件数"])
set_headline("相談 120 件", cfg)
if fail:
    raise ValueError("planted failure 42")
SECRET_SOURCE_MARKER = 1
SECRET_SOURCE_MARKER

# %%
close_report(cfg)
"""


@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("MIMAMORI_PROFILE", raising=False)
    monkeypatch.setenv("MIMAMORI_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MIMAMORI_REPORTS", str(tmp_path / "reports"))
    return load_config(profile="tiny")


# ------------------------------------------------------------------ tables and header


def test_table_is_marked_suppressed_and_capped(cfg):
    df = pd.DataFrame(
        {"年度": range(2000, 2040), "件数": [5] + [100] * 39, "率": [0.5] + [0.25] * 39}
    )
    html = rp.table_html(df, "表", cfg, counts=["件数"], rates={"率": "件数"}, max_rows=10)
    assert "data-count-table='1'" in html and "data-suppressed='1'" in html
    assert html.count("<tr>") == 1 + 10
    assert "… 他 30 行（… 30 more rows）" in html
    assert "&lt;10" in html and ">5<" not in html
    assert ">2000<" in html and "2,000" not in html  # years are not thousands-formatted
    assert "data-count='1'" in html


def test_wide_tables_are_capped_by_columns(cfg):
    wide = pd.DataFrame([range(500)], columns=[f"c{i}" for i in range(500)])
    html = rp.table_html(wide, "wide", cfg, max_cols=12)
    assert html.count("<th>") == 12 and "488 more columns" in html


def test_suppression_off_still_marks_and_warns_first(cfg):
    cfg = cfg.with_overrides({"reports": {"suppress_small_cells": False}})
    html = rp.table_html(pd.DataFrame({"n": [3]}), "t", cfg, counts=["n"])
    assert "data-suppressed='0'" in html and ">3<" in html
    header = rp.header_html("題", cfg, {"a": 1})
    body = re.sub(r"<style>.*?</style>\s*", "", header, flags=re.S)
    assert body.startswith("<p class='mm-warning' data-suppression='off'>")


def test_header_has_notice_provenance_and_params(cfg, tmp_path):
    html = rp.header_html("市の概況（City overview）", cfg, {"target": "young_carer"})
    assert rp.NOTICE_EN in html and "人の判断に代わるものではありません" in html
    assert "synthetic city" in html and "demo pseudonym key" in html
    assert "young_carer" in html and "data-suppression" not in html
    mart = tmp_path / "data" / "mart"
    mart.mkdir(parents=True)
    (mart / "_ingest_report.json").write_text(json.dumps({"key_source": "env", "synthetic": False}))
    prov = rp.data_provenance(cfg)
    assert not prov["synthetic"] and prov["key_source"] == "env"
    assert "実データ" in prov["text"] and "demo" not in prov["text"]


def test_manifest_and_index_list_every_report(cfg, tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    for i, title in enumerate(["概況（overview）", "モデル（model）", "統計（stats）"]):
        body = rp.header_html(title, cfg) + rp.headline_html(f"見出し {i}（headline {i}）")
        (reports / f"{i:02d}_r.html").write_text(rp.page_html(body, title), encoding="utf-8")
    rn.main(cfg, ["--index"])
    index = (reports / "index.html").read_text(encoding="utf-8")
    for i, title in enumerate(["概況（overview）", "モデル（model）", "統計（stats）"]):
        assert f"href='{i:02d}_r.html'" in index and title in index
        assert f"見出し {i}（headline {i}）" in index
    assert "synthetic city" in index
    assert not re.search(r"(src|href)=['\"]?https?://", index)
    manifest = rp.manifest_html(
        {
            "git_commit": "abc",
            "seed": 7,
            "packages": {"pandas": "2"},
            "inputs": {"mart/x.parquet": "f" * 64},
        }
    )
    assert "abc" in manifest and "mart/x.parquet" in manifest and "pandas 2" in manifest


def test_jobs_expand_model_per_target(cfg):
    jobs = rn.report_jobs(cfg)
    assert ("03_model", "physical_abuse") in jobs and ("03_model", "young_carer") in jobs
    assert ("00_city_overview", None) in jobs
    assert rn.report_jobs(cfg, "03_model", "young_carer") == [("03_model", "young_carer")]
    with pytest.raises(MimamoriError, match="not in models.targets"):
        rn.report_jobs(cfg, "03_model", "nope")
    with pytest.raises(MimamoriError, match="only applies"):
        rn.report_jobs(cfg, "00_city_overview", "young_carer")


def test_make_offline_strips_cdn_and_refuses_external_images():
    page = (
        "<head><script src='https://cdnjs.cloudflare.com/require.js'></script>"
        "<link rel='stylesheet' href='https://fonts.googleapis.com/css'></head>"
        "<a href='https://example.org'>ok: a link, not a resource</a>"
    )
    clean = rn.make_offline(page)
    assert "cdnjs" not in clean and "googleapis" not in clean and "example.org" in clean
    with pytest.raises(MimamoriError, match="external resource"):
        rn.make_offline("<img src='http://x/y.png'>")


def test_missing_kernel_is_an_error_not_a_fallback():
    with pytest.raises(MimamoriError, match="make setup"):
        rn.check_kernel("no-such-kernel-mimamori")


# ------------------------------------------------------------------ runner


def _write_notebook(tmp_path: Path) -> Path:
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir(exist_ok=True)
    (nb_dir / "tiny.py").write_text(TINY_NOTEBOOK, encoding="utf-8")
    return nb_dir


def test_report_process_skips_the_iri_grammar_and_still_validates_notebooks():
    """The runner keeps jsonschema's rfc3987-syntax parser out of its process (1.5 s each)."""
    import subprocess
    import sys

    code = (
        "import sys; from helpers.reports import runner; runner.skip_iri_grammar();"
        "import nbformat; nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1')]);"
        "nbformat.validate(nb); bad = nbformat.v4.new_notebook(); bad.cells = [{'x': 1}];"
        "ok = False\ntry: nbformat.validate(bad)\nexcept nbformat.ValidationError: ok = True\n"
        "assert ok and sys.modules.get('rfc3987_syntax') is None, 'not skipped'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_runner_renders_code_free_offline_html_and_fails_cleanly(cfg, tmp_path):
    nb_dir = _write_notebook(tmp_path)
    out = rn.render_report(
        "tiny", cfg, notebooks_dir=nb_dir, build_dir=tmp_path / "build", progress=False
    )
    assert out == tmp_path / "reports" / "tiny.html"
    page = out.read_text(encoding="utf-8")
    assert "<title>小さな報告（Tiny report）</title>" in page
    assert "SECRET_SOURCE_MARKER" not in page and "open_report(" not in page  # no code
    assert "visible print" in page and "data-count-table='1'" in page.replace('"', "'")
    assert "Traceback" not in page and "output_error" not in page
    assert not re.search(r"<(script|link)[^>]+(src|href)=['\"]?(https?:)?//", page)
    assert "実行記録（run manifest）" in page and out.stat().st_size < 5 * 1024 * 1024
    assert (tmp_path / "build" / "tiny.executed.ipynb").exists()
    summary = ix.report_summary(out)
    assert summary["headline"] == "相談 120 件" and summary["title"] == "小さな報告（Tiny report）"
    assert sc.scan_reports(tmp_path / "reports", None, R) == []

    # the same notebook failing: the notebook's own error, and no (stale) HTML left
    text = (nb_dir / "tiny.py").read_text(encoding="utf-8").replace("fail = False", "fail = True")
    (nb_dir / "tiny.py").write_text(text, encoding="utf-8")
    with pytest.raises(MimamoriError, match=r"cell .*ValueError: planted failure 42"):
        rn.render_report(
            "tiny", cfg, notebooks_dir=nb_dir, build_dir=tmp_path / "build", progress=False
        )
    assert not out.exists()


def test_interrupted_write_leaves_no_report(cfg, tmp_path, monkeypatch):
    nb_dir = _write_notebook(tmp_path)
    executed = nbformat.v4.new_notebook()
    executed.cells = [
        nbformat.v4.new_code_cell(
            "x",
            outputs=[
                nbformat.v4.new_output(
                    "display_data",
                    data={"text/html": rp.header_html("T", cfg) + "<p>" + "x" * 5000},
                )
            ],
        )
    ]
    monkeypatch.setattr(rn, "check_kernel", lambda name=rn.KERNEL_NAME: Path("."))
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: executed)
    real_write_text = Path.write_text

    def half_then_crash(self, data, *args, **kwargs):
        if self.name.startswith(".tiny.html"):
            real_write_text(self, data[: len(data) // 2], *args, **kwargs)
            raise KeyboardInterrupt
        return real_write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        rn.render_report(
            "tiny", cfg, notebooks_dir=nb_dir, build_dir=tmp_path / "build", progress=False
        )
    reports = tmp_path / "reports"
    assert not (reports / "tiny.html").exists()
    assert not list(reports.glob(".*")) if reports.exists() else True


def test_unknown_notebook_and_missing_target(cfg, tmp_path):
    nb_dir = _write_notebook(tmp_path)
    with pytest.raises(MimamoriError, match="notebook not found"):
        rn.render_report("nope", cfg, notebooks_dir=nb_dir)
    (nb_dir / "03_model.py").write_text(TINY_NOTEBOOK, encoding="utf-8")
    with pytest.raises(MimamoriError, match="once per target"):
        rn.render_report("03_model", cfg, notebooks_dir=nb_dir)


# ------------------------------------------------------------------ PII scan


def _raw_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    residents = pd.DataFrame(
        {
            "宛名番号": ["012345678901", "１２３４５６７８"],  # full-width digits in the export
            "氏名": ["山田　花子", "佐藤 太郎"],
            "氏名カナ": ["ヤマダ ハナコ", "ｻﾄｳ ﾀﾛｳ"],
            "生年月日": ["2015-05-03", "令和2年4月1日"],
            "住所": ["みどり市中央町1-2-3", "みどり市東町4-5-6"],
        }
    )
    residents.to_csv(raw / "住民記録_20240401.csv", index=False, encoding="cp932")
    consult = pd.DataFrame(
        {
            "相談番号": ["7654321"],
            "宛名番号": ["012345678901"],
            "受付日": ["2023-06-01"],
            "相談種別": ["ネグレクト"],
        }
    )
    consult.to_excel(raw / "相談_2024.xlsx", index=False)
    truth = raw / "_truth"
    truth.mkdir()
    (truth / "population.csv").write_text("resident_code\n999999999999\n")
    return raw


CLEAN_REPORT = (
    "<html><body><h1>報告</h1><p>相談件数 1,234 件、平均 0.1234567 、"
    "hash 3f2a9c0012345678ab</p><table class='mm-table' data-count-table='1'>"
    "<caption>件数</caption><tr><th>年度</th><th>n</th></tr>"
    "<tr><td>2023</td><td data-count='1'>&lt;10</td></tr>"
    "<tr><td>2022</td><td data-count='1'>0</td></tr></table>"
    "<table><tr><td>3</td></tr></table></body></html>"
)


def test_scan_passes_a_clean_report(tmp_path):
    raw = _raw_dir(tmp_path)
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "ok.html").write_text(CLEAN_REPORT, encoding="utf-8")
    (reports / "chart.png").write_bytes(b"\x89PNG")
    assert sc.scan_reports(reports, raw, R) == []


@pytest.mark.parametrize(
    "planted, kind",
    [
        ("<p>対象: 山田 花子 さん</p>", "name/kana/address"),
        ("<p>ヤマダハナコ</p>", "name/kana/address"),
        ("<p>サトウ　タロウ</p>", "name/kana/address"),  # half-width kana in the export
        ("<p>中央町1-2-3 の世帯</p>", "name/kana/address"),  # address without the city prefix
        ("<p>宛名 012345678901</p>", "real code"),
        ("<p>宛名 12345678.</p>", "real code"),  # full-width in the export
        ("<p>相談番号 7654321</p>", "real code"),  # from the xlsx export
        ("<td title='佐藤太郎'>x</td>", "name/kana/address"),  # in an attribute
    ],
)
def test_scan_catches_planted_identifiers(tmp_path, planted, kind):
    raw = _raw_dir(tmp_path)
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "bad.html").write_text(
        CLEAN_REPORT.replace("</body>", planted + "</body>"), encoding="utf-8"
    )
    findings = sc.scan_reports(reports, raw, R)
    assert [f.kind for f in findings] == [kind]
    assert findings[0].file == "bad.html" and findings[0].masked.endswith("***")


def test_scan_catches_small_counts_without_raw(tmp_path, capsys):
    reports = tmp_path / "reports"
    (reports / "sub").mkdir(parents=True)
    (reports / "sub" / "bad.html").write_text(CLEAN_REPORT.replace(">0<", ">7<"), encoding="utf-8")
    findings = sc.scan_reports(reports, tmp_path / "missing_raw", R)
    assert [(f.file, f.kind, f.masked) for f in findings] == [
        ("sub/bad.html", "unsuppressed small count", "7")
    ]
    cfg = load_config(
        profile="",
        overrides={"run": {"data_dir": str(tmp_path / "nodata"), "reports_dir": str(reports)}},
    )
    assert sc.check_reports_main(cfg, []) == 1
    out = capsys.readouterr().out
    assert "counts only" in out and "sub/bad.html" in out


def test_scan_catches_small_count_in_headline(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    ok = rp.headline_html("上位100人中 <10 人が要支援、AUC 0.55、12 件")
    (reports / "ok.html").write_text(ok, encoding="utf-8")
    assert sc.scan_reports(reports, None, R) == []
    (reports / "bad.html").write_text(
        rp.headline_html("確認 40 人中 4 人が要支援"), encoding="utf-8"
    )
    findings = sc.scan_reports(reports, None, R)
    assert [(f.file, f.kind) for f in findings] == [("bad.html", "small count in text")]


def test_check_reports_masks_hits(tmp_path, capsys):
    raw = _raw_dir(tmp_path)
    data = raw.parent
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "r.html").write_text("<p>山田花子</p>", encoding="utf-8")
    cfg = load_config(
        profile="", overrides={"run": {"data_dir": str(data), "reports_dir": str(reports)}}
    )
    assert sc.check_reports_main(cfg, []) == 1
    out = capsys.readouterr().out
    assert "山田***" in out and "山田花子" not in out
    (reports / "r.html").write_text(CLEAN_REPORT, encoding="utf-8")
    assert sc.check_reports_main(cfg, []) == 0


def test_scan_finds_one_code_among_a_city_sized_index():
    n = 60_000
    codes = [f"{10_000_000_000 + i * 7919}" for i in range(n)]
    kanji = "山田中村佐藤鈴木高橋伊渡辺小林加吉本井上木松"
    names = [
        kanji[i % 20] + kanji[(i // 20) % 20] + kanji[(i // 400) % 20] + kanji[i % 7]
        for i in range(n)
    ]
    index = sc.PiiIndex.build(codes, names)
    text = ("<p>相談件数 1,234 件 0.5 " + "年度別の集計表と説明文 " * 20 + "</p>") * 2000
    findings = sc.scan_text("big.html", text + "<p>" + codes[500] + "</p>", index, R, True)
    assert [f.kind for f in findings] == ["real code"]


# ------------------------------------------------------------------ disclosure in the API


def test_hidden_cells_are_grey_with_a_legend_and_red_means_only_a_warning(cfg):
    df = pd.DataFrame(
        {
            "区分": ["a", "b", "c", "合計（total）"],
            "件数": [5, 30, 20, 55],
            "率": [0.09, 0.55, 0.36, 1.0],
        }
    )
    html = rp.table_html(df, "表", cfg, counts=["件数"], rates={"率": "件数"})
    assert html.count("class='num sup'") == 4  # <10, x and their two rates
    assert "<span class='mm-key'>灰色の斜体</span>" in html
    assert (
        "&lt;10: 1〜9件（人）は秘匿" in html and "x: 差し引きで" in html and "*: 秘匿した" in html
    )
    css = rp.CSS
    assert "td.sup, table.mm-table td.band { background: #ececec; color: #555;" in css
    assert css.count("#c0392b") == 1 and ".mm-warning" in css.split("#c0392b")[0][-200:]


def test_settings_block_shows_configuration_not_earlier_results(cfg):
    with_rounds = cfg.with_overrides(
        {
            "review": {
                "earlier_rounds": [
                    {
                        "round": "FY2022",
                        "high_reviewed": 16,
                        "high_positive": 1,
                        "low_reviewed": 4,
                        "low_positive": 0,
                    }
                ]
            }
        }
    )
    header = rp.header_html("題", with_rounds)
    assert "earlier_rounds" not in header and "high_positive" not in header
    assert "small_cell_threshold" in header  # the rest of the settings are there
    assert not sc.scan_text("h.html", header, None, R, True)


def test_headlines_sentences_and_captions_pass_through_disclosure(cfg):
    assert ">相談 &lt;10 件<" in rp.headline_html("相談 4 件", cfg).replace("</span>", ">")
    assert "precision@100 &lt;0.1" in rp.headline_html("precision@100 0.04", cfg)
    assert rp.count_text(3, cfg) == "<10" and rp.count_text(1234, cfg) == "1,234"
    assert rp.share_text(0.04, 100, cfg) == "<0.1"


def test_a_total_printed_after_a_table_assumed_it_unknown_is_an_error(cfg):
    state = rp.ReportState("t", R)
    parts = pd.DataFrame({"経路": ["police", "school"], "2020年度": [8, 120]})
    totals = pd.DataFrame({"種別": ["a", "合計"], "2020年度": [128, 128]})
    rp.table_html(parts, "経路", cfg, counts=["2020年度"], universe="c", state=state)
    with pytest.raises(MimamoriError, match="came first"):
        rp.table_html(totals, "種別", cfg, counts=["2020年度"], universe="c", state=state)


def test_show_accepts_a_table_with_its_declarations(cfg, monkeypatch):
    shown = []
    monkeypatch.setattr(rp, "_display_html", shown.append)
    t = rp.Table(
        pd.DataFrame(
            {"g": ["a", "b"], "tp": [3, 40], "selected": [30, 60], "precision": [0.1, 0.667]}
        ),
        "適合率",
        ["tp", "selected"],
        derived={"precision": ["tp", "selected"]},
    )
    rp.show(t, cfg)
    assert "data-derived='[&quot;precision&quot;]'" in shown[0]
    assert ">*<" in shown[0] and ">0.667<" in shown[0]
