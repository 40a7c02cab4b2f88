"""Shared fixtures. The tiny city (config/profiles/tiny.yaml) runs the real chain end to end,
once per test session, exactly as a user would: `make PROFILE=tiny all`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers.config import REPO_ROOT

os.environ.setdefault("MPLBACKEND", "Agg")
# `make test` exports the user's data/reports folders and profile; tests choose their own.
for _name in [k for k in os.environ if k.startswith("MIMAMORI_")]:
    del os.environ[_name]


def run_make(target: str, data: Path, reports: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMAMORI_")}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        ["make", target, "PROFILE=tiny", f"DATA={data}", f"REPORTS={reports}", *extra],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory) -> dict[str, Path]:
    """The tiny city after `make PROFILE=tiny all`: data and reports folders."""
    root = tmp_path_factory.mktemp("tiny_city")
    data, reports = root / "data", root / "reports"
    proc = run_make("all", data, reports)
    if proc.returncode != 0:
        pytest.fail(
            f"make all on the tiny city failed (exit {proc.returncode}):\n"
            f"--- stdout (tail)\n{proc.stdout[-4000:]}\n--- stderr (tail)\n{proc.stderr[-6000:]}"
        )
    return {"root": root, "data": data, "reports": reports, "log": proc.stdout + proc.stderr}
