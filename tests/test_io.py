import json

import pandas as pd
import pytest

from helpers.config import load_config
from helpers.io import (
    append_audit,
    atomic_path,
    file_sha256,
    run_manifest,
    write_json,
    write_parquet,
)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces(tmp_path):
    target = tmp_path / "x.json"
    write_json({"a": 1}, target)
    write_json({"a": 2}, target)
    assert json.loads(target.read_text())["a"] == 2
    write_parquet(pd.DataFrame({"a": [1, 2]}), tmp_path / "p.parquet")
    assert pd.read_parquet(tmp_path / "p.parquet")["a"].tolist() == [1, 2]


def test_audit_log_appends_one_line_per_stage(tmp_path):
    cfg = load_config(profile="")
    f = tmp_path / "in.txt"
    f.write_text("x")
    append_audit(tmp_path, "ingest", cfg, inputs=[f], outputs=[], rows={"residents": 3})
    append_audit(tmp_path, "panel", cfg)
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["stage"] == "ingest" and first["rows"] == {"residents": 3}
    assert first["inputs"] == {"in.txt": file_sha256(f)}
    assert {"time", "user", "config_hash"} <= set(first)


def test_manifest_records_code_versions_inputs_seed(tmp_path):
    cfg = load_config(profile="")
    f = tmp_path / "a.csv"
    f.write_text("1")
    m = run_manifest(cfg, inputs=[tmp_path], root=tmp_path)
    assert m["seed"] == cfg["run"]["seed"]
    assert m["inputs"] == {"a.csv": file_sha256(f)}
    assert m["packages"]["pandas"].startswith("2.")
    assert m["git_commit"]


def test_json_is_strict_nan_becomes_null(tmp_path):
    import numpy as np

    write_json(
        {"auc": float("nan"), "n": np.int64(3), "xs": [np.float64("inf"), 1.5]}, tmp_path / "m.json"
    )
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"auc": None, "n": 3, "xs": [None, 1.5]}
