"""Run settings: one YAML file per stage under config/, merged into one mapping.

Sections are the file stems (run, synth, ingest, panel, models, review, reports). A profile
(config/profiles/<name>.yaml, chosen by ``profile=`` or MIMAMORI_PROFILE) overrides them
section by section, so the tiny test city runs the same code with smaller numbers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from helpers import MimamoriError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_DIR = REPO_ROOT / "config"
SECTIONS = ("run", "synth", "ingest", "panel", "models", "review", "reports")


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


def load_config(
    config_dir: str | Path | None = None,
    profile: str | None = None,
    overrides: dict | None = None,
) -> dict[str, Any]:
    """Load every stage's settings, apply a profile and explicit overrides.

    ``overrides`` uses the same shape as a profile: ``{"synth": {"n_children": 500}}``.
    The data directory can also be moved with MIMAMORI_DATA (tests point it at a tmp dir).
    """
    config_dir = Path(config_dir) if config_dir else DEFAULT_CONFIG_DIR
    if not config_dir.is_dir():
        raise MimamoriError(f"config directory {config_dir} not found")
    cfg: dict[str, Any] = {}
    for section in SECTIONS:
        path = config_dir / f"{section}.yaml"
        cfg[section] = _read_yaml(path) if path.exists() else {}
    profile = profile if profile is not None else os.environ.get("MIMAMORI_PROFILE") or None
    if profile:
        ppath = config_dir / "profiles" / f"{profile}.yaml"
        if not ppath.exists():
            known = sorted(p.stem for p in (config_dir / "profiles").glob("*.yaml"))
            raise MimamoriError(f"profile {profile!r} not found in {ppath.parent} (known: {known})")
        cfg = deep_merge(cfg, _read_yaml(ppath))
    # environment (make exports these) beats the files; explicit overrides beat both
    for env, key in (("MIMAMORI_DATA", "data_dir"), ("MIMAMORI_REPORTS", "reports_dir")):
        if os.environ.get(env):
            cfg["run"][key] = os.environ[env]
    if overrides:
        cfg = deep_merge(cfg, overrides)
    cfg["profile"] = profile
    cfg["config_dir"] = str(config_dir.resolve())
    return cfg


def resolve(path: str | Path) -> Path:
    """A configured path: absolute as given, relative ones from the repository root."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def data_dir(cfg: dict) -> Path:
    return resolve(cfg["run"].get("data_dir", "data"))


def reports_dir(cfg: dict) -> Path:
    return resolve(cfg["run"].get("reports_dir", "reports"))


def config_hash(cfg: dict, sections: tuple[str, ...] | None = None) -> str:
    """Stable short hash of (some sections of) the settings, for manifests and the audit log."""
    part = {k: cfg.get(k) for k in (sections or SECTIONS)}  # paths excluded: same settings, same hash
    blob = json.dumps(part, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
