"""The benchmark harness on fake stage commands: measurement, config sizes, cache, merge, HTML."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import MimamoriError, bench, benchdoc
from helpers.config import load_config
from helpers.exports import detect_encoding, table_of
from helpers.schema import load_schemas


def _cfg() -> dict:
    return load_config(profile="")


def test_measure_command_sees_memory_of_a_child_that_allocates(tmp_path):
    code = "import time; b = b'x' * (120 * 2**20); time.sleep(0.3); print(len(b))"
    m = bench.measure_command([sys.executable, "-c", code], log_path=tmp_path / "alloc.log")
    assert m.returncode == 0
    assert m.peak_rss_mb >= 100, m
    assert m.peak_tree_rss_mb >= m.peak_rss_mb
    assert m.peak_rss_mb < 1024
    assert m.wall_s >= 0.3
    assert (tmp_path / "alloc.log").read_text().strip() == str(120 * 2**20)


def test_measure_command_sleeping_child_uses_wall_not_cpu():
    m = bench.measure_command([sys.executable, "-c", "import time; time.sleep(0.6)"])
    assert m.returncode == 0
    assert m.wall_s >= 0.6
    assert m.cpu_s < 0.45, m  # interpreter start-up only
    assert m.peak_rss_mb < 100
    d = m.to_dict()
    assert d["cpu_per_wall"] < 1 and d["cpu_s"] == pytest.approx(m.cpu_s, abs=1e-3)


def test_measure_command_reports_failure_and_timeout(tmp_path):
    failed = bench.measure_command([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert failed.returncode == 3 and not failed.timed_out
    slow = bench.measure_command(
        [sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5
    )
    assert slow.timed_out and slow.returncode != 0 and slow.wall_s < 10


def test_parse_sizes():
    sizes = bench.parse_sizes("S, m ,tiny=1500")
    assert [(s.name, s.n_children) for s in sizes] == [
        ("S", 25_000),
        ("M", 100_000),
        ("tiny", 1500),
    ]
    with pytest.raises(MimamoriError, match="unknown size"):
        bench.parse_sizes("XXL")
    with pytest.raises(MimamoriError, match="whole number"):
        bench.parse_sizes("a=lots")


def test_materialised_config_loads_with_the_size_overrides(tmp_path):
    size = bench.BenchSize("M", 100_000)
    cfg_dir = bench.materialise_config(_cfg(), size.overrides(), tmp_path / "config")
    loaded = load_config(cfg_dir, profile="")
    assert loaded["synth"]["n_children"] == 100_000
    assert loaded["models"]["tuning"]["n_trials"] == 4
    assert loaded["models"]["tuning"]["time_budget_s"] == 60
    # everything not overridden is the project's own setting
    base = _cfg()
    assert loaded["run"]["fiscal_years"] == base["run"]["fiscal_years"]
    assert loaded["synth"]["targets"] == base["synth"]["targets"]
    assert (
        loaded["models"]["tuning"]["variance_penalty"]
        == base["models"]["tuning"]["variance_penalty"]
    )


def _fake_stage(name: str, code: str) -> bench.StageSpec:
    return bench.StageSpec(name, "fake", [name], command=[sys.executable, "-c", code])


# fake generator: writes a one-file city and the stamp, and counts its own runs
FAKE_GENERATE = (
    "import os, pathlib; d = pathlib.Path(os.environ['MIMAMORI_DATA']); r = d / 'raw'; "
    "r.mkdir(parents=True, exist_ok=True); "
    "(r / 'residents_1.csv').write_bytes('宛名番号,性別\\n0001,男\\n0002,女\\n'.encode('cp932')); "
    "(r / '.complete').write_text('ok'); "
    "c = d / 'runs.txt'; c.write_text(str(int(c.read_text()) + 1 if c.exists() else 1))"
)


def test_cache_reused_when_unchanged_and_invalidated_when_size_config_changes(tmp_path):
    cfg = _cfg()
    stages = [_fake_stage("generate", FAKE_GENERATE)]
    runs = tmp_path / "S" / "runs.txt"

    first = bench.run_size(bench.BenchSize("S", 300), cfg, tmp_path, stages, "young_carer")
    assert first["stages"]["generate"]["status"] == "ok" and runs.read_text() == "1"
    second = bench.run_size(bench.BenchSize("S", 300), cfg, tmp_path, stages, "young_carer")
    assert runs.read_text() == "1", "generate ran again although nothing changed"
    assert second["raw_cached"] and second["stages"]["generate"]["status"] == "cached"
    assert second["stages"]["generate"]["wall_s"] == first["stages"]["generate"]["wall_s"]

    bench.run_size(bench.BenchSize("S", 400), cfg, tmp_path, stages, "young_carer")
    assert runs.read_text() == "2", "a new n_children must regenerate the city"
    changed = cfg.with_overrides({"synth": {"defect_rate": 0.01}})
    bench.run_size(bench.BenchSize("S", 400), changed, tmp_path, stages, "young_carer")
    assert runs.read_text() == "3", "a changed synth setting must regenerate the city"
    # a model-only setting does not touch the generated city
    tuned = changed.with_overrides({"models": {"bootstrap": {"n": 7}}})
    bench.run_size(bench.BenchSize("S", 400), tuned, tmp_path, stages, "young_carer")
    assert runs.read_text() == "3"
    bench.run_size(bench.BenchSize("S", 400), tuned, tmp_path, stages, "young_carer", force=True)
    assert runs.read_text() == "4"


def test_run_size_times_stages_reads_floors_and_blocks_after_a_failure(tmp_path):
    mart_code = (
        "import os, pathlib, json; d = pathlib.Path(os.environ['MIMAMORI_DATA']) / 'mart'; "
        "d.mkdir(exist_ok=True); import pyarrow as pa, pyarrow.parquet as pq; "
        "pq.write_table(pa.table({'a': list(range(50))}), d / 'residents.parquet'); "
        "(d / '_ingest_report.json').write_text(json.dumps({'tables': {'residents': "
        "{'rows_in': 2, 'rows_out': 2}}}))"
    )
    stages = [
        _fake_stage("generate", FAKE_GENERATE),
        bench.StageSpec(
            "ingest",
            "fake",
            ["ingest"],
            floor="raw",
            rows_key="raw_rows",
            command=[sys.executable, "-c", mart_code],
        ),
        bench.StageSpec(
            "panel",
            "fake",
            ["panel"],
            floor="mart",
            command=[sys.executable, "-c", "import sys; print('boom'); sys.exit(2)"],
        ),
        _fake_stage("models", "pass"),
        bench.StageSpec("review", "no_such_module_anywhere", ["review", "draw"]),
    ]
    seen: list[list[str]] = []
    block = bench.run_size(
        bench.BenchSize("S", 300),
        _cfg(),
        tmp_path,
        stages,
        "young_carer",
        on_progress=lambda b: seen.append(list(b["stages"])),
    )
    assert (
        seen[0] == ["generate"] and seen[1] == ["generate", "ingest"] and len(seen) == len(stages)
    )
    st = block["stages"]
    assert st["ingest"]["status"] == "ok"
    assert st["ingest"]["floor"]["rows"] == 2 and st["ingest"]["floor"]["files"] == 1
    assert st["ingest"]["floor_ratio"] > 0 and st["ingest"]["rows"] == 2
    assert st["panel"]["status"] == "failed (exit 2)" and "log_tail" not in st["panel"]
    assert "boom" in Path(st["panel"]["log"]).read_text()
    assert st["models"]["status"].startswith("skipped")
    assert st["review"]["status"].startswith("skipped")
    assert block["counts"]["raw_rows"] == 2 and block["counts"]["panel_rows"] is None


def test_missing_stage_module_is_reported_not_run(tmp_path):
    stages = [
        bench.StageSpec("review", "no_such_module_anywhere", ["review", "draw"]),
        _fake_stage("report", "pass"),
    ]
    st = bench.run_size(bench.BenchSize("S", 10), _cfg(), tmp_path, stages, "young_carer")["stages"]
    assert st["review"]["status"].startswith("missing")
    assert st["report"]["status"].startswith("skipped")


def test_read_raw_floor_reads_cp932_utf8_bom_linebreaks_and_xlsx(tmp_path):
    import openpyxl

    (tmp_path / "a.csv").write_bytes('氏名,備考\n山田,"改行\nあり"\n鈴木,x\n'.encode("cp932"))
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbf" + "コード,値\n001,１\n".encode())
    wb = openpyxl.Workbook()
    wb.active.append(["h1", "h2"])
    for i in range(3):
        wb.active.append([i, "x"])
    wb.save(tmp_path / "c.xlsx")
    floor = bench.read_raw_floor(tmp_path)
    assert floor["files"] == 3 and floor["rows"] == 2 + 1 + 3
    # the same encoding and file -> table rules as ingest (helpers.exports)
    assert detect_encoding(tmp_path / "a.csv") == "cp932"
    assert detect_encoding(tmp_path / "b.csv") == "utf-8-sig"
    # a configured per-table encoding (config/ingest.yaml) wins over detection
    (tmp_path / "residents_x.csv").write_bytes("a\n1\n".encode("cp932"))
    assert table_of("住民記録_20240401.csv", load_schemas()) == ["residents"]
    assert bench.read_raw_floor(tmp_path, {"residents": "utf-8"})["rows"] == 2 + 1 + 3 + 1


def test_count_outputs_reads_row_counts(tmp_path):
    (tmp_path / "mart").mkdir()
    (tmp_path / "mart" / "_ingest_report.json").write_text(
        json.dumps(
            {"tables": {"a": {"rows_in": 10, "rows_out": 9}, "b": {"rows_in": 5, "rows_out": 5}}}
        )
    )
    (tmp_path / "panel").mkdir()
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "panel" / "panel.parquet")
    (tmp_path / "panel" / "feature_catalogue.csv").write_text(
        "name,role\nchild_id,id\nf1,feature\nf2,feature\nlabel_t,label\n"
    )
    counts = bench.count_outputs(tmp_path, "t")
    assert counts == {
        "raw_rows": 15,
        "mart_rows": 14,
        "panel_rows": 3,
        "panel_features": 2,
        "scores_rows": None,
    }
    # helpers.ingest.stage also writes totals: they must not be counted twice
    (tmp_path / "mart" / "_ingest_report.json").write_text(
        json.dumps(
            {
                "tables": {"a": {"rows_in": 10, "rows_out": 9}, "b": {"rows_in": 5, "rows_out": 5}},
                "totals": {"rows_in": 15, "rows_out": 14},
            }
        )
    )
    assert bench.count_outputs(tmp_path, "t")["raw_rows"] == 15


def test_extract_quality_reads_model_single_variable_and_oracle():
    def fig(v):
        return {
            "precision_at_k": {"value": v, "ci_low": v - 0.1, "ci_high": v + 0.1},
            "precision_mean": v,
        }

    metrics = {
        "target": "young_carer",
        "k": 100,
        "test_year": 2023,
        "test": {"events": 40, "n_child_years": 900},
        "headline": {
            "model": fig(0.3),
            "best_single_variable": fig(0.2),
            "oracle": fig(0.5),
            "lightgbm": fig(0.31),
        },
    }
    q = bench.extract_quality(metrics)
    assert q["model_precision_at_k"] == 0.3 and q["best_single_precision_at_k"] == 0.2
    assert q["oracle_precision_at_k"] == 0.5 and q["oracle_ci"] == pytest.approx([0.4, 0.6])
    assert q["rankings"]["lightgbm"] == 0.31 and q["k"] == 100 and q["test_events"] == 40
    other = bench.extract_quality({"scores": {"model_precision": 0.25, "oracle_precision": 0.4}})
    assert other["model_precision_at_k"] == 0.25 and other["oracle_precision_at_k"] == 0.4


def _size_block(name: str, n: int, wall: float) -> dict:
    return {
        "name": name,
        "n_children": n,
        "fiscal_years": 7,
        "machine": {},
        "config_hash": "h1",
        "stages": {
            "ingest": {
                "status": "ok",
                "wall_s": wall,
                "cpu_s": wall,
                "floor_ratio": 3.0,
                "note": "<script>x</script>",
            },
            "panel": {"status": "failed (exit 1)"},
        },
        "quality": {"model_precision_at_k": 0.3, "model_ci": [0.2, 0.4]},
    }


def test_outputs_merge_sizes_and_html_is_self_contained(tmp_path):
    bench.write_outputs(tmp_path, {"S": _size_block("S", 25_000, 10.0)})
    results = bench.write_outputs(tmp_path, {"M": _size_block("M", 100_000, 40.0)})
    on_disk = json.loads((tmp_path / "benchmarks.json").read_text())
    assert set(on_disk["sizes"]) == {"S", "M"} and list(results["sizes"]) == ["S", "M"]
    assert on_disk["sizes"]["S"]["stages"]["ingest"]["wall_s"] == 10.0
    assert on_disk["scaling"]["ingest"]["growth_exponent"]["S->M"] == pytest.approx(1.0)
    assert on_disk["scaling"]["ingest"]["cpu_growth_exponent"]["S->M"] == pytest.approx(1.0)
    assert on_disk["scaling"]["ingest"]["us_per_child"] == {"S": 400.0, "M": 400.0}
    assert on_disk["machine"]["cpu_count"] >= 1 and "python" in on_disk["machine"]["packages"]
    # re-running S replaces S only
    bench.write_outputs(tmp_path, {"S": _size_block("S", 25_000, 12.0)})
    again = json.loads((tmp_path / "benchmarks.json").read_text())
    assert again["sizes"]["S"]["stages"]["ingest"]["wall_s"] == 12.0
    assert again["sizes"]["M"]["stages"]["ingest"]["wall_s"] == 40.0
    # a later run of only some stages with the same settings keeps the other stages
    partial = {**_size_block("M", 100_000, 0), "stages": {"panel": {"status": "ok", "wall_s": 5.0}}}
    kept = bench.write_outputs(tmp_path, {"M": partial})["sizes"]["M"]["stages"]
    assert list(kept) == ["ingest", "panel"]
    assert kept["ingest"]["wall_s"] == 40.0 and kept["panel"]["wall_s"] == 5.0
    # ... but not after the settings changed
    changed = {**partial, "config_hash": "h2"}
    assert list(bench.write_outputs(tmp_path, {"M": changed})["sizes"]["M"]["stages"]) == ["panel"]
    bench.write_outputs(tmp_path, {"M": _size_block("M", 100_000, 40.0)})
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert not re.search(
        r"<(script|link|img|iframe)[^>]*(src|href)\s*=\s*['\"]?(https?:)?//", page, re.I
    )
    assert "<script" not in page  # the note's markup was escaped
    assert "about linear" in page and "0.300 [0.200, 0.400]" in page
    assert page.index(">ingest<") < page.index(">panel<") < page.index(">total<")
    assert "Whole chain S-&gt;M: CPU time grows as children<sup>0.87</sup> (about linear)" in page
    assert page.index("S: 25,000 children") < page.index("M: 100,000 children")
    assert not list(Path(tmp_path).glob(".*tmp-*"))


def test_cli_rejects_unknown_stage():
    with pytest.raises(MimamoriError, match="unknown"):
        bench.main(_cfg(), ["--stages", "generate,fly"])


def _engine_block(engine: str, wall: float, panel_hash: str) -> dict:
    block = _size_block("S", 25_000, wall)
    block["stages"]["panel"] = {"status": "ok", "wall_s": wall / 2, "peak_tree_rss_mb": 900.0}
    return {
        **block,
        "name": bench.block_name("S", engine),
        "size": "S",
        "engine": engine,
        "outputs": {"mart": "m1", "panel": panel_hash},
    }


def test_dask_blocks_sit_beside_local_with_their_overhead_and_output_check(tmp_path):
    bench.write_outputs(tmp_path, {"S": _engine_block("local", 10.0, "p1")})
    results = bench.write_outputs(tmp_path, {"S+dask": _engine_block("dask", 15.0, "p2")})
    assert set(results["sizes"]) == {"S", "S+dask"}
    over = results["engine_overhead"]["S"]
    assert over["stages"]["ingest"]["ratio"] == 1.5 and over["stages"]["panel"]["ratio"] == 1.5
    assert over["identical_outputs"] == {"mart": True, "panel": False}
    # scaling compares sizes on the local engine only
    assert results["scaling"]["ingest"]["us_per_child"] == {"S": 400.0}
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "Dask engine overhead" in page and "panel: DIFFERENT" in page


def test_readme_block_is_rendered_from_the_results(tmp_path):
    local = _engine_block("local", 10.0, "p1")
    local["stages"]["e2e"] = {"status": "ok", "wall_s": 98.4, "cpu_s": 150.2, "load_1m_before": 0.5}
    results = bench.write_outputs(tmp_path, {"S": local})
    results = bench.write_outputs(tmp_path, {"S+dask": _engine_block("dask", 15.0, "p1")})
    block = benchdoc.readme_block(results)
    assert block.startswith(benchdoc.START) and block.endswith(benchdoc.END)
    assert "| S | local | 25,000 |" in block and "| S | dask | 25,000 |" in block
    assert "10 s · 0.0 GB" in block and "5 s · 0.9 GB" in block
    assert "3.0×" in block  # the ingest floor ratio
    assert "panel ×1.50" in block and "panel identical" in block
    assert "end to end: `make all`" in block and "**98 s** wall, 150 s CPU" in block
    assert "| 15 s · 0.9 GB |" in block  # the chain (ingest … audit) leaves make all out
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{benchdoc.START}\nold\n{benchdoc.END}\n\ntail\n", encoding="utf-8")
    benchdoc.update_readme(results, readme, tmp_path / "docs" / "b.json")
    assert benchdoc.readme_block_of(readme) == block
    assert readme.read_text(encoding="utf-8").endswith("\n\ntail\n")
    assert benchdoc.load_results(tmp_path / "docs" / "b.json")["sizes"]["S"]["engine"] == "local"
    with pytest.raises(MimamoriError, match="no measured sizes"):
        benchdoc.update_readme({}, readme, tmp_path / "x.json")


def test_readme_table_is_the_checked_in_measurement():
    """README's benchmark table is rendered from docs/bench/benchmarks.json, not typed."""
    assert benchdoc.readme_block_of(benchdoc.README) == benchdoc.readme_block(
        benchdoc.load_results(benchdoc.DOCS_JSON)
    )


def test_ingest_floor_ratio_without_linkage_from_its_audit_line(tmp_path):
    log = bench._size_paths(tmp_path).audit_log
    log.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {"stage": "ingest", "seconds": {"read_validate": 9.0, "link": 5.0, "mask_write": 9.0}},
        {"stage": "panel"},
        {"stage": "ingest", "seconds": {"read_validate": 3.0, "link": 5.0, "mask_write": 1.0}},
    ]
    log.write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in lines), encoding="utf-8")
    entry = {"wall_s": 12.0, "floor": {"seconds": 2.0}}
    bench._add_ingest_phases(entry, tmp_path)
    assert entry["floor_ratio_without_link"] == 2.0  # (3 + 1) / 2: the last run, link left out
    assert entry["phases_s"]["link"] == 5.0
    block = benchdoc.readme_block(
        {"sizes": {"S": {**_size_block("S", 25_000, 12.0), "stages": {"ingest": entry}}}}
    )
    assert "2.0×" in block


def test_make_all_is_measured_at_the_default_city_size_only(tmp_path):
    stages = [s for s in bench.default_stages("young_carer") if s.name == "e2e"]
    block = bench.run_size(bench.BenchSize("XS", 300), _cfg(), tmp_path, stages, "young_carer")
    e2e = block["stages"]["e2e"]
    assert e2e["status"].startswith("skipped: make all is measured at the default city")
    assert e2e["command"] == "make all" and "wall_s" not in e2e
    argv = bench.e2e_argv(tmp_path / "S", "dask")
    assert argv[:3] == ["make", "--no-print-directory", "all"] and "ENGINE=dask" in argv
    assert f"DATA={tmp_path / 'S' / 'e2e'}" in argv and not any("CONFIG" in a for a in argv)
