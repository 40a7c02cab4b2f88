"""The notebook side of the reports: one look, and every figure through disclosure control.

``open_report`` shows the header (title, run date, the notice that scores support and never
replace a human assessment, data provenance, the settings used); ``show_table``,
``show_figure``, ``show_text`` and ``set_headline`` pass every table, figure and sentence
through :mod:`helpers.reports.disclosure`; ``close_report`` shows the run manifest.

Each report keeps a registry of the totals it has printed (`ReportState.published`): a table
that says its column adds up to a figure printed elsewhere (``margins`` / ``universe``) is
checked against it and protected as if the reader knew it, and the page carries that
structure (``data-*`` attributes) so ``check-reports`` can attack the table the same way.

The runner (papermill + nbconvert) is :mod:`helpers.reports.runner`, the index page
:mod:`helpers.reports.index`, the audit :mod:`helpers.reports.scan`.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.config import Settings, config_hash, load_config
from helpers.io import run_manifest
from helpers.paths import paths
from helpers.reports import disclosure as D

NOTICE_JA = (
    "このスコアは支援が必要かもしれないこどもを見つけるための補助です。"
    "判定ではなく、職員・学校による人の判断に代わるものではありません。"
    "システムだけでこどもにラベルを付けてはいけません。"
)
NOTICE_EN = (
    "Scores support staff in finding children who may need help; they are not a "
    "decision and never replace a human assessment. No child may be labelled by the "
    "system alone."
)
# settings that are results, not configuration: never printed in the settings block
NOT_SETTINGS = (("review", "earlier_rounds"),)

# Colour means one thing: blue = structure (headings, table heads), red = a warning about the
# report itself; hidden figures are grey and italic, never coloured.
CSS = """
.mm-report, .mm-index { font-family: "Hiragino Sans", "Yu Gothic UI", "Meiryo", "Noto Sans CJK JP",
  "IPAexGothic", sans-serif; color: #222; line-height: 1.55; max-width: 1100px; margin: 0 auto;
  padding: 1.2em 1.6em 3em; font-size: 15px; }
.mm-report h1, .mm-index h1 { font-size: 1.6em; border-bottom: 3px solid #2f6690;
  padding-bottom: .2em; margin: .4em 0 .3em; }
.mm-report h2 { font-size: 1.25em; border-left: 5px solid #2f6690; padding-left: .45em;
  margin-top: 1.8em; }
.mm-report h3 { font-size: 1.05em; margin-top: 1.3em; }
.mm-warning { background: #fdecea; border: 2px solid #c0392b; color: #8e1b10; font-weight: bold;
  padding: .5em .8em; margin: .3em 0 .8em; }
.mm-notice { background: #fff8e1; border-left: 5px solid #d9822b; padding: .5em .8em;
  margin: .6em 0; }
.mm-notice p { margin: .2em 0; }
.mm-meta { color: #555; font-size: .9em; margin: .2em 0; }
.mm-meta dt { font-weight: bold; float: left; clear: left; width: 11em; }
.mm-meta dd { margin-left: 11.5em; }
.mm-headline { font-size: 1.2em; background: #eaf2f8; border: 1px solid #2f6690;
  padding: .6em .9em; margin: 1em 0; }
.mm-headline-label { font-size: .75em; color: #2f6690; display: block; }
table.mm-table { border-collapse: collapse; margin: .6em 0 .2em; font-size: .9em; }
table.mm-table caption { caption-side: top; text-align: left; font-weight: bold;
  padding-bottom: .3em; }
table.mm-table th, table.mm-table td { border: 1px solid #ccd; padding: .25em .6em; }
table.mm-table thead th { background: #2f6690; color: #fff; font-weight: normal;
  white-space: nowrap; }
table.mm-table tbody tr:nth-child(even) { background: #f4f7fa; }
table.mm-table td.num { text-align: right; font-variant-numeric: tabular-nums;
  white-space: nowrap; }
table.mm-table td.na { color: #999; text-align: center; }
table.mm-table td.sup, table.mm-table td.band { background: #ececec; color: #555;
  font-style: italic; }
.mm-note { color: #555; font-size: .82em; margin: .1em 0 1em; }
.mm-note .mm-key { display: inline-block; background: #ececec; color: #555; font-style: italic;
  padding: 0 .3em; border: 1px solid #ccd; }
.mm-figure { margin: 1em 0; }
.mm-figure img, .mm-report img { max-width: 100%; height: auto; }
.mm-figure figcaption { color: #555; font-size: .85em; }
.mm-text { margin: .4em 0; }
details.mm-details { margin: .5em 0; font-size: .85em; }
details.mm-details pre { background: #f6f6f6; padding: .5em; overflow-x: auto; max-height: 28em; }
.mm-manifest { margin-top: 3em; border-top: 1px solid #ccc; font-size: .85em; color: #444; }
.jp-OutputPrompt, .jp-InputPrompt, .prompt { display: none; }
pre { white-space: pre-wrap; }
"""


# ---------------------------------------------------------------------------- state
@dataclass
class ReportState:
    """What one report has printed so far: the totals (by key) a reader can use."""

    title: str
    rules: D.Rules
    published: dict[str, float] = field(default_factory=dict)
    assumed_unknown: dict[str, str] = field(default_factory=dict)  # key -> table that assumed it
    n_tables: int = 0

    def publish(self, key: str, value: float, where: str) -> None:
        if self.assumed_unknown.get(key) == where:  # a table printing its own total
            del self.assumed_unknown[key]
        if key in self.assumed_unknown:
            raise MimamoriError(
                f"{where}: prints {key!r}, which {self.assumed_unknown[key]} "
                "was protected without (it came first); show the table that "
                "prints the total before the tables that break it down"
            )
        old = self.published.get(key)
        if old is not None and abs(old - value) > 1e-9:
            raise MimamoriError(
                f"{where}: prints {key!r} = {value:g}, but the report printed "
                f"{old:g} for it before; the tables do not describe the same "
                "population"
            )
        self.published[key] = value


_STATE: ReportState | None = None


def rules(cfg: Settings) -> D.Rules:
    """The disclosure rules of these settings (config/reports.yaml)."""
    return D.Rules.from_cfg(cfg)


def current_report(cfg: Settings) -> ReportState:
    """The open report's state (a fresh one when no report is open, e.g. in tests)."""
    global _STATE
    if _STATE is None or _STATE.rules != rules(cfg):
        _STATE = ReportState("", rules(cfg))
    return _STATE


def _display_html(markup: str) -> None:
    from IPython.display import HTML, display

    display(HTML(markup))


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _attr_json(value: Any) -> str:
    return _esc(json.dumps(value, ensure_ascii=False, sort_keys=True))


# --------------------------------------------------------------------------- header
def data_provenance(cfg: Settings) -> dict[str, Any]:
    """Where the data came from: synthetic or real, and which pseudonym key masked it.

    Read from data/mart/_ingest_report.json when ingest has run, else from run.synthetic.
    """
    report_path = paths(cfg).ingest_report
    synthetic = bool(cfg.run.synthetic)
    key_source = None
    if report_path.exists():
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise MimamoriError(f"{report_path}: unreadable ingest report ({exc})") from None
        key = report.get("key")
        key_source = report.get("key_source") or (
            key.get("source") if isinstance(key, dict) else None
        )
        if "synthetic" in report:
            synthetic = bool(report["synthetic"])
    if synthetic:
        text = "合成データ（架空の市）（synthetic city）"
        if key_source in (None, "demo"):
            text += "・デモ用仮名化キー（demo pseudonym key）"
    else:
        text = "実データ（real municipal exports）"
    if key_source and key_source != "demo":
        text += f"・仮名化キー: {key_source}（pseudonym key from {key_source}）"
    elif key_source == "demo" and not synthetic:
        text += "・デモ用キー（demo key: not allowed for real data）"
    return {"synthetic": synthetic, "key_source": key_source or "unknown", "text": text}


def _dl(items: Mapping[str, Any]) -> str:
    return (
        "<dl class='mm-meta'>"
        + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items.items())
        + "</dl>"
    )


def settings_shown(cfg: Settings) -> dict[str, Any]:
    """The settings block: configuration only (results such as earlier review rounds left out)."""
    shown = cfg.as_dict()
    for section, key in NOT_SETTINGS:
        shown.get(section, {}).pop(key, None)
    return shown


def header_html(
    title: str, cfg: Settings, params: Mapping[str, Any] | None = None, run_date: str | None = None
) -> str:
    """The report header (pure; `open_report` displays it)."""
    run_date = run_date or datetime.now().strftime("%Y-%m-%d %H:%M")
    prov = data_provenance(cfg)
    r = rules(cfg)
    parts = [f"<style>{CSS}</style>"]
    if not r.enabled:
        parts.append(
            "<p class='mm-warning' data-suppression='off'>警告: 小さな件数の秘匿が無効です。"
            "この報告書は分析者の非公開用であり、配布してはいけません（WARNING: small-cell "
            "suppression is OFF — private analyst run, do not circulate）</p>"
        )
    parts.append(
        f"<header class='mm-header' data-report-title='{_esc(title)}' "
        f"data-run-date='{_esc(run_date)}' data-provenance='{_esc(prov['text'])}'>"
        f"<h1>{_esc(title)}</h1></header>"
    )
    parts.append(f"<div class='mm-notice'><p>{_esc(NOTICE_JA)}</p><p>{_esc(NOTICE_EN)}</p></div>")
    t = r.threshold
    parts.append(
        _dl(
            {
                "作成日時（run date）": run_date,
                "データ（data）": prov["text"],
                "小さな件数の秘匿（suppression）": (
                    f"有効: 1〜{t}件は {r.small_label} と表示し、差し引きや率から分かる値も秘匿"
                    f"（on: counts 1–{t} and anything that would reveal them hidden）"
                    if r.enabled
                    else "無効（OFF）"
                ),
                "設定（settings）": (
                    f"profile={cfg.profile or '-'}, seed={cfg.run.seed}, "
                    f"fiscal years={cfg.run.fiscal_years}, capacity={cfg.run.capacity}, "
                    f"config hash={config_hash(cfg)}"
                ),
            }
        )
    )
    if params:
        parts.append(
            "<details class='mm-details' open><summary>パラメータ（parameters）</summary>"
            + _dl(dict(params))
            + "</details>"
        )
    parts.append(
        "<details class='mm-details'><summary>使用した設定（settings used）</summary><pre>"
        + _esc(
            json.dumps(
                settings_shown(cfg),
                ensure_ascii=False,
                default=str,
                sort_keys=True,
                separators=(",", ": "),
            )
        )
        + "</pre></details>"
    )
    return "\n".join(parts)


def open_report(
    title: str,
    profile: str = "",
    data_dir: str = "",
    config_dir: str = "",
    params: Mapping[str, Any] | None = None,
) -> Settings:
    """Load settings, set the Japanese plot font, start the report's registry of printed
    totals and show the header; return the settings."""
    global _STATE
    from helpers.reports.plotting import use_japanese_font

    moved = {"run": {"data_dir": str(Path(data_dir).resolve())}} if data_dir else None
    cfg = load_config(config_dir or None, profile=profile or None, overrides=moved)
    use_japanese_font()
    with contextlib.suppress(ImportError, ValueError):
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    _STATE = ReportState(title, rules(cfg))
    _display_html(header_html(title, cfg, params))
    return cfg


report_header = open_report


# ---------------------------------------------------------------------------- tables
def _flat_name(col: Any) -> Any:
    if isinstance(col, tuple):
        return " / ".join(str(c) for c in col if str(c) != "")
    return col


def _format_cell(value: Any, fmt: str | None) -> tuple[str, str]:
    """(text, css class) of one displayed cell."""
    if (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and np.isnan(value))
    ):
        return "–", "na"
    if isinstance(value, str):
        return value, ""
    if fmt:
        try:
            return fmt.format(value), "num"
        except (ValueError, TypeError):
            return str(value), ""
    if isinstance(value, bool | np.bool_):
        return ("あり" if value else "なし"), ""
    if isinstance(value, int | np.integer):
        return f"{int(value):,}", "num"
    if isinstance(value, float | np.floating):
        v = float(value)
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}", "num"
        text = f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:,.0f}"
        return text, "num"
    if isinstance(value, pd.Timestamp | datetime):
        ts = pd.Timestamp(value)
        return (ts.strftime("%Y-%m-%d") if ts == ts.normalize() else str(ts)), ""
    return str(value), ""


def _looks_like_year(values: pd.Series) -> bool:
    """Whole numbers 1900..2100 (fiscal years): shown without a thousands separator."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    v = values.dropna()
    return bool(len(v)) and bool(((v >= 1900) & (v <= 2100) & (v == np.floor(v))).all())


def _as_frame(df: Any, caption: str, index: bool) -> pd.DataFrame:
    if isinstance(df, pd.Series):
        df = df.to_frame()
    if not isinstance(df, pd.DataFrame):
        raise MimamoriError(f"show_table {caption!r}: expected a DataFrame, got {type(df)}")
    if index:
        df = df.reset_index()
    df = df.copy()
    df.columns = [_flat_name(c) for c in df.columns]
    return df


def _part_keys(prot: D.Protected) -> list[tuple[list[int], int | None, str]]:
    """(part rows, total row, key suffix) of each part of a table ("" without groups)."""
    s = prot.structure
    parts = D.segments(len(s.row_labels), D.total_row_positions(s.row_labels), s.groups)
    return [
        (rows, trow, f"|{D.segment_key(s.groups, rows, i)}" if s.groups else "")
        for i, (rows, trow) in enumerate(parts)
    ]


def _publish(
    state: ReportState,
    prot: D.Protected,
    publishes: Mapping[str, str],
    where: str,
    per_row: set[str],
) -> dict[tuple[int, str], str]:
    """Record the totals this table prints; returns {(row, column): key} for data-key cells.

    A part's total row (or the only row of a one-row table) is printed under ``key`` (plus
    "|<group>" in a grouped table); a table of one row per item without totals prints each
    row under "key|<row label>", so another table broken down by the same items can use it.
    """
    keyed: dict[tuple[int, str], str] = {}
    n_rows = len(prot.frame)
    for col, key in publishes.items():
        for rows, trow, suffix in _part_keys(prot):
            if trow is not None or (n_rows == 1 and rows):
                cells = [(trow if trow is not None else rows[0], key + suffix)]
            elif not prot.structure.groups and col in per_row:
                cells = [(r, f"{key}|{_first_label(prot, r)}") for r in rows]
            else:
                cells = []
            for r, k in cells:
                value = prot.frame[col].iloc[r]
                if isinstance(value, int | np.integer):
                    state.publish(k, float(value), where)
                    keyed[(r, col)] = k
    return keyed


def _first_label(prot: D.Protected, r: int) -> str:
    return str(prot.structure.row_labels[r]).split(" / ")[0]


def _known_margins(
    state: ReportState,
    df: pd.DataFrame,
    counts: list[str],
    group_by: list[str],
    margins: Mapping[str, str],
    where: str,
) -> dict[str, dict[str, float]]:
    """{column: {part: total}} for the declared margins the report has already printed; the
    others are remembered as unknown (printing them later is an error)."""
    labels = D.row_labels(df, counts)
    groups = df[group_by].astype(str).agg(" / ".join, axis=1).tolist() if group_by else []
    parts = D.segments(len(df), D.total_row_positions(labels), groups)
    known: dict[str, dict[str, float]] = {}
    for col, key in margins.items():
        for i, (rows, _trow) in enumerate(parts):
            part = D.segment_key(groups, rows, i)
            full = f"{key}|{part}" if groups else key
            if full in state.published:
                known.setdefault(col, {})[part] = state.published[full]
            else:
                state.assumed_unknown.setdefault(full, where)
    return known


def _cell_html(text: str, cls: str, attrs: str) -> str:
    cls_attr = f" class='{cls}'" if cls else ""
    return f"<td{cls_attr}{attrs}>{_esc(text)}</td>"


def table_html(
    df: pd.DataFrame,
    caption: str,
    cfg: Settings,
    counts: Iterable[str] = (),
    rates: Mapping[str, str] | None = None,
    max_rows: int = 30,
    *,
    max_cols: int = 20,
    index: bool = False,
    formats: Mapping[str, str] | None = None,
    derived: Mapping[str, Any] | None = None,
    shares: Mapping[str, str | float] | None = None,
    fixed: Iterable[str] = (),
    sums: Mapping[str, Sequence[str]] | None = None,
    group_by: Iterable[str] | None = None,
    universe: str | None = None,
    margins: Mapping[str, str] | None = None,
    publishes: Mapping[str, str] | None = None,
    group_derived: Mapping[str, Sequence[str]] | None = None,
    sizes: Sequence[int] = (),
    state: ReportState | None = None,
) -> str:
    """A legible table after disclosure control (`show_table` displays it).

    ``counts`` are count columns; ``rates`` ({rate: count}) and ``derived`` ({column: counts})
    are hidden with their counts; ``shares`` ({column: n}) are banded where figure × n is a
    count of 1..T; ``fixed`` columns are not computed from counts; ``sums``, ``group_by`` and
    ``margins`` state the table's arithmetic (see `disclosure.protect_table`). ``universe``:
    the rows split this population, so each count column's total is a margin printed under
    "<universe>|<column>"; ``publishes`` ({column: key}) records this table's total for others.
    ``sizes``: list lengths / group sizes a reader knows besides those in the caption.
    """
    state = state or current_report(cfg)
    r = state.rules
    where = f"show_table {caption!r}"
    df = _as_frame(df, caption, index)
    counts = [_flat_name(c) for c in counts]
    derived_all: dict[str, Any] = {_flat_name(k): _flat_name(v) for k, v in (rates or {}).items()}
    derived_all.update({_flat_name(k): v for k, v in (derived or {}).items()})
    margins, publishes, explicit = _margin_keys(counts, universe, margins, publishes)
    group_by = list(group_by or [])
    for col in [*margins, *group_by]:
        if col not in df.columns:
            raise MimamoriError(
                f"{where}: column {col!r} not in table (columns: {list(df.columns)})"
            )
    known = _known_margins(state, df, counts, group_by, margins, where)
    prot = D.protect_table(
        df,
        counts,
        r,
        derived=derived_all,
        shares=shares,
        fixed=fixed,
        sums=sums,
        group_by=group_by,
        margins=known,
        group_derived=group_derived,
        where=where,
    )
    keyed = _publish(state, prot, publishes, where, per_row=explicit)
    state.n_tables += 1
    shown = prot.frame.iloc[:max_rows, :max_cols]
    cells = _formatted(shown, df, counts, formats)
    sizes = [*sizes, *D.sizes_in(caption, r.threshold)]
    texts, used = D.guard_texts(
        [[t for t, _ in row] for row in cells], list(shown.columns), prot, r, sizes
    )
    hideable = {*counts, *derived_all, *(group_derived or {})}
    body = _body_html(cells, texts, list(shown.columns), counts, hideable, keyed, r)
    head = _table_open(prot, caption, list(shown.columns), len(df) > max_rows, r, margins)
    notes = _notes(
        df, max_rows, max_cols, counts, used | prot.labels_used, r, bool(derived_all or shares)
    )
    return head + body + "</tbody></table>" + notes


def _margin_keys(
    counts: list[str],
    universe: str | None,
    margins: Mapping[str, str] | None,
    publishes: Mapping[str, str] | None,
) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """Declared margins and publications; a ``universe`` adds "<universe>|<column>" for every
    count column (published from total rows only)."""
    margins_d, publishes_d = dict(margins or {}), dict(publishes or {})
    explicit = set(publishes_d)
    if universe:
        margins_d.update({c: f"{universe}|{c}" for c in counts if c not in margins_d})
        publishes_d.update({c: f"{universe}|{c}" for c in counts if c not in publishes_d})
    return margins_d, publishes_d, explicit


def _formatted(
    shown: pd.DataFrame, df: pd.DataFrame, counts: list[str], formats: Mapping[str, str] | None
) -> list[list[tuple[str, str]]]:
    """(text, css class) of every displayed cell."""
    fmts = {_flat_name(k): v for k, v in (formats or {}).items()}
    columns = list(shown.columns)
    col_formats = {
        c: fmts.get(c) or ("{}" if _looks_like_year(df[c]) and c not in counts else None)
        for c in columns
    }
    return [
        [_format_cell(v, col_formats[c]) for c, v in zip(columns, row, strict=True)]
        for row in shown.itertuples(index=False, name=None)
    ]


def _body_html(
    cells: list[list[tuple[str, str]]],
    texts: list[list[str]],
    columns: list[str],
    counts: list[str],
    hideable: set[str],
    keyed: Mapping[tuple[int, str], str],
    r: D.Rules,
) -> str:
    """The table rows: hidden figures grey (class ``sup``), ranges grey (``band``)."""
    body = []
    for i, row in enumerate(cells):
        out = []
        for j, col in enumerate(columns):
            text, cls = texts[i][j], row[j][1]
            changed = text != row[j][0]
            if col in hideable or changed:
                if text in (r.small_label, D.SECONDARY_LABEL, D.DERIVED_LABEL):
                    cls = "num sup"
                elif changed:
                    cls = "num band"
            attrs = " data-count='1'" if col in counts else ""
            if (i, col) in keyed:
                attrs += f" data-key='{_esc(keyed[(i, col)])}'"
            out.append(_cell_html(text, cls, attrs))
        body.append("<tr>" + "".join(out) + "</tr>")
    return "".join(body)


def _table_open(
    prot: D.Protected,
    caption: str,
    columns: list[str],
    truncated: bool,
    r: D.Rules,
    margins: Mapping[str, str],
) -> str:
    m = {**prot.meta, "margins": dict(margins)}
    attrs = " data-table='1'"
    if m["counts"]:
        attrs += f" data-count-table='1' data-suppressed='{1 if r.enabled else 0}'"
    if truncated:
        attrs += " data-truncated='1'"
    for key in ("sums", "group-by", "partition", "margins", "derived", "shares", "fixed"):
        if m[key]:
            attrs += f" data-{key}='{_attr_json(m[key])}'"
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    return (
        f"<table class='mm-table'{attrs}><caption>{_esc(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>"
    )


def _notes(
    df: pd.DataFrame,
    max_rows: int,
    max_cols: int,
    counts: list[str],
    used: set[str],
    r: D.Rules,
    declared: bool,
) -> str:
    notes = []
    n_rows, n_cols = df.shape
    if n_rows > max_rows:
        notes.append(_esc(f"… 他 {n_rows - max_rows:,} 行（… {n_rows - max_rows:,} more rows）"))
    if n_cols > max_cols:
        notes.append(_esc(f"… 他 {n_cols - max_cols:,} 列（… {n_cols - max_cols:,} more columns）"))
    if counts or used or declared:
        if not r.enabled:
            notes.append("秘匿なし（suppression OFF: private run only）")
        else:
            legend = D.suppression_note(r, used)
            if "band" in used:
                legend += (
                    "; <0.1 など: 1〜9人に当たる値は範囲で表示（a figure standing for "
                    "1–9 people shown as a range）"
                )
            notes.append(
                "<span class='mm-key'>灰色の斜体</span> = 秘匿・範囲表示（grey italic = "
                "hidden or shown as a range）; " + _esc(legend)
            )
    return f"<p class='mm-note'>{'<br>'.join(notes)}</p>" if notes else ""


def show_table(
    df: pd.DataFrame,
    caption: str,
    cfg: Settings,
    counts: Iterable[str] = (),
    rates: Mapping[str, str] | None = None,
    max_rows: int = 30,
    **kwargs: Any,
) -> None:
    """Show a table through disclosure control (keywords as in `table_html`)."""
    _display_html(table_html(df, caption, cfg, counts, rates, max_rows, **kwargs))


@dataclass
class Table:
    """A table as a report shows it, with what disclosure control needs to know about it.

    Builders (``helpers.models.report``, ``helpers.panel.report`` ...) return these; the
    notebook calls ``show(t, cfg)``. Fields after ``caption`` are `table_html`'s keywords.
    """

    frame: pd.DataFrame
    caption: str
    counts: list[str] = field(default_factory=list)
    rates: dict[str, str] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    shares: dict[str, str | float] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    sums: dict[str, list[str]] = field(default_factory=dict)
    group_by: list[str] = field(default_factory=list)
    universe: str | None = None
    margins: dict[str, str] = field(default_factory=dict)
    publishes: dict[str, str] = field(default_factory=dict)
    group_derived: dict[str, list[str]] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)
    max_rows: int = 30
    formats: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not len(self.frame)


_DECLARATIONS = (
    "derived",
    "shares",
    "fixed",
    "sums",
    "group_by",
    "universe",
    "margins",
    "publishes",
    "group_derived",
    "sizes",
    "formats",
    "max_rows",
)


def show(t: Any, cfg: Settings, **overrides: Any) -> None:
    """Show a `Table` (or any object with ``frame``, ``caption``, ``counts``, ``rates`` and
    optionally the other `Table` fields) through disclosure control; ``overrides`` are
    `table_html` keywords. An empty table shows nothing."""
    if not len(t.frame):
        return
    kwargs = {k: getattr(t, k) for k in _DECLARATIONS if getattr(t, k, None) is not None}
    kwargs.update(overrides)
    max_rows = kwargs.pop("max_rows", 30)
    show_table(
        t.frame,
        t.caption,
        cfg,
        getattr(t, "counts", ()),
        getattr(t, "rates", None),
        max_rows,
        **kwargs,
    )


# ---------------------------------------------------------------- text and figures
def headline_html(text: str, cfg: Settings | None = None) -> str:
    if cfg is not None:
        text = D.protect_text(text, rules(cfg))
    return (
        "<div class='mm-headline' data-headline='1'><span class='mm-headline-label'>"
        f"要点（headline）</span>{_esc(text)}</div>"
    )


def set_headline(text: str, cfg: Settings) -> None:
    """Show the report's headline (the index page lists it); small counts are banded."""
    _display_html(headline_html(text, cfg))


def show_text(text: str, cfg: Settings) -> None:
    """A sentence or note with figures in it, through disclosure control (not print())."""
    lines = D.protect_text(str(text), rules(cfg)).splitlines() or [""]
    _display_html("<div class='mm-text'>" + "<br>".join(_esc(x) for x in lines) + "</div>")


def count_text(n: Any, cfg: Settings) -> str:
    """A count for a sentence: "<10" when small."""
    return D.count_text(n, rules(cfg))


def share_text(value: Any, denominator: Any, cfg: Settings, digits: int = 3) -> str:
    """A share of ``denominator`` people for a sentence: banded when it stands for 1..T."""
    return D.share_text(value, denominator, rules(cfg), digits)


def figure_html(
    fig: Any = None, caption: str = "", dpi: int = 100, cfg: Settings | None = None
) -> str:
    """A figure (or the Axes' figure, or the current one) as an embedded PNG; closes it."""
    import matplotlib.pyplot as plt

    if fig is None:
        fig = plt.gcf()
    elif hasattr(fig, "get_figure") and not hasattr(fig, "savefig"):
        fig = fig.get_figure()
    if cfg is not None:
        caption = D.protect_text(caption, rules(cfg))
    buf = io.BytesIO()
    # no metadata: nothing but pixels goes into the page
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return (
        f"<figure class='mm-figure'><img alt='{_esc(caption)}' "
        f"src='data:image/png;base64,{data}'>{cap}</figure>"
    )


def show_figure(
    fig: Any = None, caption: str = "", dpi: int = 100, cfg: Settings | None = None
) -> None:
    """Show a matplotlib figure/Axes as a PNG (works whatever the matplotlib backend).

    Plots hide small counts themselves (`helpers.reports.plotting`); the caption passes
    through disclosure control when ``cfg`` is given (else the open report's rules).
    """
    if cfg is None and _STATE is not None:
        caption = D.protect_text(caption, _STATE.rules)
    _display_html(figure_html(fig, caption, dpi, cfg))


# --------------------------------------------------------------------------- manifest
def manifest_html(manifest: Mapping[str, Any]) -> str:
    rows = {
        k: manifest.get(k)
        for k in ("created", "git_commit", "profile", "seed", "synthetic", "config_hash")
    }
    packages = ", ".join(f"{k} {v}" for k, v in manifest.get("packages", {}).items())
    inputs = manifest.get("inputs", {})
    input_rows = "".join(
        f"<tr><td>{_esc(p)}</td><td><code>{_esc(h[:16])}</code></td></tr>"
        for p, h in sorted(inputs.items())
    )
    inputs_table = (
        (
            f"<table class='mm-table'><caption>入力ファイル（inputs, sha256）</caption>"
            f"<thead><tr><th>file</th><th>sha256</th></tr></thead><tbody>{input_rows}"
            "</tbody></table>"
        )
        if inputs
        else "<p>入力ファイルなし（no inputs listed）</p>"
    )
    return (
        "<section class='mm-manifest' data-manifest='1'><h2>実行記録（run manifest）</h2>"
        + _dl(rows)
        + _dl({"packages": packages})
        + inputs_table
        + "</section>"
    )


def close_report(cfg: Settings, inputs: Iterable[str | Path] | None = None) -> None:
    """Show the run manifest (git commit, package versions, input hashes, seed).

    Returns None so that a notebook's last line does not also print the manifest dict.
    """
    root = paths(cfg).data
    files = [Path(p) for p in (inputs or [])]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise MimamoriError(f"close_report: input files not found: {missing}")
    _display_html(manifest_html(run_manifest(cfg, files, root=root)))


report_footer = close_report


def page_html(body: str, title: str, css: str = CSS, cls: str = "mm-report") -> str:
    """A whole page around a rendered body (the runner and the index page use it)."""
    return (
        "<!DOCTYPE html>\n<html lang='ja'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{_esc(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
        f"<main class='{cls}'>\n{body}\n</main>\n</body>\n</html>\n"
    )
