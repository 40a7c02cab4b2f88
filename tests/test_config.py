from pathlib import Path

import pytest
import yaml

from helpers import MimamoriError
from helpers.config import config_hash, data_dir, deep_merge, load_config


def test_deep_merge_nested_and_replaces_scalars():
    base = {"a": {"b": 1, "c": 2}, "d": [1, 2]}
    out = deep_merge(base, {"a": {"c": 3}, "d": [9]})
    assert out == {"a": {"b": 1, "c": 3}, "d": [9]}
    assert base["a"]["c"] == 2  # input untouched


def test_load_config_has_every_section():
    cfg = load_config(profile="")
    for section in ("run", "synth", "ingest", "panel", "models", "review", "reports"):
        assert set(cfg[section]) == set(getattr(cfg, section).as_dict())
    assert cfg.run.capacity == 100 and cfg["run"]["capacity"] == 100


def test_tiny_profile_overrides_only_what_it_names():
    base = load_config(profile="")
    tiny = load_config(profile="tiny")
    assert tiny["synth"]["n_children"] < base["synth"]["n_children"]
    assert tiny["synth"]["defect_rate"] == base["synth"]["defect_rate"]
    assert tiny["profile"] == "tiny"


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(MimamoriError, match="profile 'nope' not found"):
        load_config(profile="nope")


def test_env_moves_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MIMAMORI_DATA", str(tmp_path))
    assert data_dir(load_config(profile="")) == tmp_path


def test_bad_yaml_names_the_file(tmp_path: Path):
    (tmp_path / "run.yaml").write_text("seed: [1, 2\n", encoding="utf-8")
    with pytest.raises(MimamoriError, match="run.yaml"):
        load_config(tmp_path, profile="")


def test_config_hash_changes_with_settings(tmp_path: Path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"seed": 1}), encoding="utf-8")
    a = config_hash(load_config(tmp_path, profile=""))
    b = config_hash(load_config(tmp_path, profile="", overrides={"run": {"seed": 2}}))
    assert a != b and len(a) == 16


def test_explicit_override_beats_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MIMAMORI_DATA", str(tmp_path / "env"))
    cfg = load_config(profile="", overrides={"run": {"data_dir": str(tmp_path / "flag")}})
    assert data_dir(cfg) == tmp_path / "flag"


def test_stage_help_shows_the_stage_options(capsys):
    from helpers.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["review", "--help"])
    assert exit_info.value.code == 0
    assert "python -m helpers review" in capsys.readouterr().out


def test_engine_is_not_hashed_unless_lightgbm_trains_on_the_cluster(tmp_path: Path):
    def h(run: dict) -> str:
        return config_hash(load_config(tmp_path, profile="", overrides={"run": run}))

    local = h({"engine": "local"})
    assert h({"engine": "dask", "dask": {"lightgbm": "local", "partitions": 8}}) == local
    distributed = h({"engine": "dask", "dask": {"lightgbm": "distributed"}})
    assert distributed != local
    assert (
        h({"engine": "dask", "dask": {"lightgbm": "distributed", "partitions": 8}}) != distributed
    )
