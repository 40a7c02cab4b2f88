"""The README's benchmark table, written from measured ``benchmarks.json`` (never by hand).

``python -m helpers bench ... --write-readme`` copies the merged results to
``docs/bench/benchmarks.json`` (kept in the repository beside the text it backs) and rewrites
the block between the two markers below in README.md; a test checks that the README block is
what this module renders from that file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import MimamoriError
from helpers.config import REPO_ROOT
from helpers.io import write_json, write_text

README = REPO_ROOT / "README.md"
DOCS_JSON = REPO_ROOT / "docs" / "bench" / "benchmarks.json"
START = "<!-- bench-table:start (python -m helpers bench --write-readme) -->"
END = "<!-- bench-table:end -->"
STAGES = ("generate", "ingest", "link", "panel", "models", "review", "report", "audit")
FLOORS = ("ingest", "link", "panel", "models")
# the stages a chain sums: the link stage is 名寄せ alone and ingest runs it too
CHAIN = ("ingest", "panel", "models", "review", "report", "audit")


def _cell(r: dict[str, Any] | None) -> str:
    if not r or r.get("status") not in ("ok", "cached") or not r.get("wall_s"):
        return "–" if not r else str(r.get("status", "–")).split(":")[0]
    gb = (r.get("peak_tree_rss_mb") or r.get("peak_rss_mb") or 0) / 1024
    return f"{r['wall_s']:,.0f} s · {gb:.1f} GB"


def _ordered(results: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = list((results.get("sizes") or {}).values())
    return sorted(
        blocks, key=lambda b: (b.get("n_children", 0), b.get("engine", "local") != "local")
    )


def _time_rows(blocks: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| size | engine | children | child-years | "
        + " | ".join(STAGES)
        + " | chain (ingest … audit) |",
        "|" + "---|" * (len(STAGES) + 5),
    ]
    for b in blocks:
        st = b.get("stages") or {}
        # the link stage is 名寄せ alone; ingest runs it too, so the chain counts it once
        ok = [r for k, r in st.items() if k in CHAIN and r.get("status") == "ok"]
        chain = (
            f"{sum(r['wall_s'] for r in ok):,.0f} s · "
            f"{max((r.get('peak_tree_rss_mb') or 0) for r in ok) / 1024:.1f} GB"
            if ok
            else "–"
        )
        panel_rows = (b.get("counts") or {}).get("panel_rows")
        rows.append(
            f"| {b.get('size', b.get('name'))} | {b.get('engine', 'local')} "
            f"| {b.get('n_children', 0):,} | {f'{panel_rows:,}' if panel_rows else '–'} | "
            + " | ".join(_cell(st.get(s)) for s in STAGES)
            + f" | {chain} |"
        )
    return rows


def _ratio(r: dict[str, Any] | None, key: str = "floor_ratio") -> str:
    return f"{r[key]:.1f}×" if r and r.get(key) else "–"


def _floor_rows(blocks: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| size | engine | "
        + " | ".join(f"{s} ÷ floor" for s in FLOORS)
        + " | ingest without 名寄せ ÷ floor |",
        "|" + "---|" * (len(FLOORS) + 3),
    ]
    for b in blocks:
        st = b.get("stages") or {}
        cells = [_ratio(st.get(s)) for s in FLOORS]
        cells.append(_ratio(st.get("ingest"), "floor_ratio_without_link"))
        rows.append(
            f"| {b.get('size', b.get('name'))} | {b.get('engine', 'local')} | "
            + " | ".join(cells)
            + " |"
        )
    return rows


def _overhead_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for size, o in (results.get("engine_overhead") or {}).items():
        ratios = ", ".join(f"{k} ×{v['ratio']:.2f}" for k, v in o["stages"].items())
        same = ", ".join(
            f"{k} {'identical' if v else 'DIFFERENT'}" for k, v in o["identical_outputs"].items()
        )
        lines.append(
            f"- {size} on dask (LocalCluster) against local, wall time: {ratios or '–'}; "
            f"outputs: {same or 'not compared'}."
        )
    return lines


def _e2e_lines(blocks: list[dict[str, Any]]) -> list[str]:
    lines = []
    for b in blocks:
        r = (b.get("stages") or {}).get("e2e") or {}
        if r.get("status") != "ok":
            continue
        gb = (r.get("peak_tree_rss_mb") or 0) / 1024
        lines.append(
            f"- {b.get('size')} ({b.get('n_children', 0):,} children, engine "
            f"{b.get('engine', 'local')}) end to end: `make all` from an empty data folder with "
            f"the default settings, the city generated included, setup excluded: "
            f"**{r['wall_s']:,.0f} s** wall, {r.get('cpu_s', 0):,.0f} s CPU, peak {gb:.1f} GB "
            f"(load {r.get('load_1m_before', '?')} before)."
        )
    return lines


def readme_block(results: dict[str, Any]) -> str:
    """The markdown between the markers: stage times and peaks, floor ratios, dask overhead."""
    blocks = _ordered(results)
    models = sorted(
        {str(((b.get("stages") or {}).get("models") or {}).get("note", "")) for b in blocks} - {""}
    )
    m = results.get("machine") or {}
    head = (
        f"Measured by `make bench` on {m.get('cpu_usable', '?')} cores / "
        f"{m.get('memory_gb', '?')} GB, commit {m.get('git_commit', '?')}, updated "
        f"{results.get('updated', '?')} (from `docs/bench/benchmarks.json`). Each cell: wall "
        "time · peak memory of the stage's process tree; models: "
        + ("; ".join(models) or "–")
        + " (the bench's fixed tuning budget). Floor = merely reading the stage's input files "
        "(pyarrow/openpyxl); ingest without 名寄せ = its own read-validate and mask-write "
        "phases (its audit line), without the linkage and process start-up. The link column "
        "is 名寄せ alone; ingest includes it, and the chain counts it once."
    )
    parts = [START, head, "", *_time_rows(blocks), "", *_floor_rows(blocks)]
    overhead = _e2e_lines(blocks) + _overhead_lines(results)
    if overhead:
        parts += ["", *overhead]
    return "\n".join([*parts, END])


def update_readme(
    results: dict[str, Any], readme: Path = README, json_copy: Path = DOCS_JSON
) -> None:
    """Copy the results to ``json_copy`` and put the rendered block into ``readme``."""
    if not results.get("sizes"):
        raise MimamoriError("bench --write-readme: no measured sizes yet (run some first)")
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise MimamoriError(f"{readme}: no benchmark markers ({START} … {END}) to write between")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    write_json(results, json_copy)
    write_text(before + readme_block(results) + after, readme)


def readme_block_of(readme: Path) -> str:
    """The block currently between the markers (markers included)."""
    text = readme.read_text(encoding="utf-8")
    return START + text.split(START, 1)[1].split(END, 1)[0] + END


def load_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
