"""Reports: the notebook-side API, the papermill runner, the index and the PII scan.

Notebook side (`open_report`, `show_table`, `set_headline`, `show_figure`, `close_report`)
gives every report one look: title, run date, the notice that scores support and never
replace a human assessment, data provenance, the settings used, small-cell suppressed tables
and the run manifest.

Runner side (`render_report`, `main` = ``python -m helpers reports``): jupytext turns
``notebooks/<name>.py`` into a notebook, papermill executes it on the project's own
``mimamori`` kernel with the run's parameters, nbconvert's *basic* template turns it into a
code-free HTML fragment that we wrap in our own page. The basic template is used because the
full *lab*/*classic* templates load require.js, MathJax and mermaid from a CDN; reports must
open offline on a municipal PC, so the page carries its own CSS and PNG images as data URIs
and is checked for any remaining external script/stylesheet/font/image source.

PII scan (`scan_reports`, `check_reports_main` = ``python -m helpers check-reports``): every
file under reports/ is searched for names, kana, addresses and real codes from data/raw and
for unsuppressed counts 1..threshold in tables marked as count tables.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.config import REPO_ROOT, config_hash, load_config
from helpers.config import data_dir as cfg_data_dir
from helpers.config import reports_dir as cfg_reports_dir
from helpers.io import atomic_path, run_manifest, write_text
from helpers.reports.suppression import suppress_counts, suppression_note

KERNEL_NAME = "mimamori"
PER_TARGET_NOTEBOOKS = ("03_model",)
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
BUILD_DIR = REPO_ROOT / "build" / "notebooks"
MAX_REPORT_BYTES = 5 * 1024 * 1024

NOTICE_JA = ("このスコアは支援が必要かもしれないこどもを見つけるための補助です。"
             "判定ではなく、職員・学校による人の判断に代わるものではありません。"
             "システムだけでこどもにラベルを付けてはいけません。")
NOTICE_EN = ("Scores support staff in finding children who may need help; they are not a "
             "decision and never replace a human assessment. No child may be labelled by the "
             "system alone.")

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
table.mm-table td.sup { color: #8e1b10; }
.mm-note { color: #555; font-size: .82em; margin: .1em 0 1em; }
.mm-figure { margin: 1em 0; }
.mm-figure img, .mm-report img { max-width: 100%; height: auto; }
.mm-figure figcaption { color: #555; font-size: .85em; }
details.mm-details { margin: .5em 0; font-size: .85em; }
details.mm-details pre { background: #f6f6f6; padding: .5em; overflow-x: auto; max-height: 28em; }
.mm-manifest { margin-top: 3em; border-top: 1px solid #ccc; font-size: .85em; color: #444; }
.jp-OutputPrompt, .jp-InputPrompt, .prompt { display: none; }
pre { white-space: pre-wrap; }
"""


# --------------------------------------------------------------------------- notebook side


def _display_html(markup: str) -> None:
    from IPython.display import HTML, display

    display(HTML(markup))


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _suppression_on(cfg: dict) -> bool:
    return cfg.reports.suppress_small_cells


def _threshold(cfg: dict) -> int:
    return cfg.reports.small_cell_threshold


def data_provenance(cfg: dict) -> dict[str, Any]:
    """Where the data came from: synthetic or real, and which pseudonym key masked it.

    Read from data/mart/_ingest_report.json when ingest has run, else from run.synthetic.
    """
    report_path = cfg_data_dir(cfg) / "mart" / "_ingest_report.json"
    synthetic = cfg.run.synthetic
    key_source = None
    if report_path.exists():
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise MimamoriError(f"{report_path}: unreadable ingest report ({exc})") from None
        key = report.get("key")
        key_source = report.get("key_source") or (key.get("source") if isinstance(key, dict)
                                                  else None)
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
    return "<dl class='mm-meta'>" + "".join(
        f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items.items()) + "</dl>"


def header_html(title: str, cfg: dict, params: Mapping[str, Any] | None = None,
                run_date: str | None = None) -> str:
    """The report header (pure; `open_report` displays it)."""
    run_date = run_date or datetime.now().strftime("%Y-%m-%d %H:%M")
    prov = data_provenance(cfg)
    suppressed = _suppression_on(cfg)
    threshold = _threshold(cfg)
    parts = [f"<style>{CSS}</style>"]
    if not suppressed:
        parts.append(
            "<p class='mm-warning' data-suppression='off'>警告: 小さな件数の秘匿が無効です。"
            "この報告書は分析者の非公開用であり、配布してはいけません（WARNING: small-cell "
            "suppression is OFF — private analyst run, do not circulate）</p>")
    parts.append(
        f"<header class='mm-header' data-report-title='{_esc(title)}' "
        f"data-run-date='{_esc(run_date)}' data-provenance='{_esc(prov['text'])}'>"
        f"<h1>{_esc(title)}</h1></header>")
    parts.append(f"<div class='mm-notice'><p>{_esc(NOTICE_JA)}</p><p>{_esc(NOTICE_EN)}</p></div>")
    run = cfg.run
    parts.append(_dl({
        "作成日時（run date）": run_date,
        "データ（data）": prov["text"],
        "小さな件数の秘匿（suppression）": (f"有効: 1〜{threshold}件は <{threshold + 1} と表示"
                                         f"（on: counts 1–{threshold} shown as <{threshold + 1}）"
                                         if suppressed else "無効（OFF）"),
        "設定（settings）": (f"profile={cfg.profile or '-'}, seed={run.seed}, "
                          f"fiscal years={run.fiscal_years}, capacity="
                          f"{run.capacity}, config hash={config_hash(cfg)}"),
    }))
    if params:
        parts.append("<details class='mm-details' open><summary>パラメータ（parameters）</summary>"
                     + _dl({k: v for k, v in params.items()}) + "</details>")
    compact = cfg.as_dict()
    parts.append("<details class='mm-details'><summary>使用した設定（settings used）</summary><pre>"
                 + _esc(json.dumps(compact, ensure_ascii=False, default=str, sort_keys=True,
                                   separators=(",", ": ")))
                 + "</pre></details>")
    return "\n".join(parts)


def open_report(
    title: str,
    profile: str = "",
    data_dir: str = "",
    config_dir: str = "",
    params: Mapping[str, Any] | None = None,
) -> dict:
    """Load settings, set the Japanese plot font and show the report header; return cfg."""
    from helpers.reports.plotting import use_japanese_font

    moved = {"run": {"data_dir": str(Path(data_dir).resolve())}} if data_dir else None
    cfg = load_config(config_dir or None, profile=profile or None, overrides=moved)
    use_japanese_font()
    with contextlib.suppress(ImportError, ValueError):
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    _display_html(header_html(title, cfg, params))
    return cfg


report_header = open_report


def _flat_name(col: Any) -> Any:
    if isinstance(col, tuple):
        return " / ".join(str(c) for c in col if str(c) != "")
    return col


def _format_cell(value: Any, fmt: str | None) -> tuple[str, str]:
    """(text, css class) of one displayed cell."""
    if value is None or value is pd.NA or value is pd.NaT or (
            isinstance(value, float) and np.isnan(value)):
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
        if float(value).is_integer() and abs(value) < 1e15:
            return f"{int(value):,}", "num"
        text = f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
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


def table_html(
    df: pd.DataFrame,
    caption: str,
    cfg: dict,
    counts: Iterable[str] = (),
    rates: Mapping[str, str] | None = None,
    max_rows: int = 30,
    *,
    max_cols: int = 20,
    index: bool = False,
    formats: Mapping[str, str] | None = None,
    secondary: bool | None = None,
    group_by: Iterable[str] | None = None,
) -> str:
    """A legible, suppressed HTML table (pure; `show_table` displays it).

    ``secondary`` (default: reports.secondary_suppression, true) hides a second cell where a
    lone suppressed cell could be recovered from a column total; see helpers.suppression.
    """
    if secondary is None:
        secondary = cfg.reports.secondary_suppression
    if isinstance(df, pd.Series):
        df = df.to_frame()
    if not isinstance(df, pd.DataFrame):
        raise MimamoriError(f"show_table {caption!r}: expected a DataFrame, got {type(df)}")
    if index:
        df = df.reset_index()
    df = df.copy()
    df.columns = [_flat_name(c) for c in df.columns]
    counts = [_flat_name(c) for c in counts]
    rates = {_flat_name(k): _flat_name(v) for k, v in (rates or {}).items()}
    formats = {_flat_name(k): v for k, v in (formats or {}).items()}
    suppressed = _suppression_on(cfg)
    threshold = _threshold(cfg)
    if counts and suppressed:
        shown = suppress_counts(df, counts, rates, threshold, secondary=secondary,
                                group_by=group_by)
    else:
        missing = [c for c in [*counts, *rates] if c not in df.columns]
        if missing:
            raise MimamoriError(f"show_table {caption!r}: columns {missing} not in table")
        shown = df
    used = {v for c in [*counts, *rates] for v in shown[c] if isinstance(v, str)}
    n_rows, n_cols = shown.shape
    shown = shown.iloc[:max_rows, :max_cols]
    count_set, rate_set = set(counts), set(rates)
    attrs = " data-count-table='1'" if counts else ""
    if counts:
        attrs += f" data-suppressed='{1 if suppressed else 0}'"
    out = [f"<table class='mm-table'{attrs}>", f"<caption>{_esc(caption)}</caption>", "<thead><tr>"]
    out += [f"<th>{_esc(c)}</th>" for c in shown.columns]
    out.append("</tr></thead><tbody>")
    columns = list(shown.columns)
    col_formats = {c: formats.get(c) or ("{}" if _looks_like_year(shown[c]) and c not in count_set
                                         else None) for c in columns}
    for row in shown.itertuples(index=False, name=None):
        cells = []
        for col, value in zip(columns, row, strict=True):
            text, cls = _format_cell(value, col_formats[col])
            if col in count_set or col in rate_set:
                if isinstance(value, str):
                    cls = "num sup"
                cell_attr = " data-count='1'" if col in count_set else " data-rate='1'"
            else:
                cell_attr = ""
            cls_attr = f" class='{cls}'" if cls else ""
            cells.append(f"<td{cls_attr}{cell_attr}>{_esc(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    notes = []
    if n_rows > max_rows:
        notes.append(f"… 他 {n_rows - max_rows:,} 行（… {n_rows - max_rows:,} more rows）")
    if n_cols > max_cols:
        notes.append(f"… 他 {n_cols - max_cols:,} 列（… {n_cols - max_cols:,} more columns）")
    if counts:
        notes.append(suppression_note(threshold, used) if suppressed else
                     "秘匿なし（suppression OFF: private run only）")
    if notes:
        out.append("<p class='mm-note'>" + "<br>".join(_esc(n) for n in notes) + "</p>")
    return "".join(out)


def show_table(
    df: pd.DataFrame,
    caption: str,
    cfg: dict,
    counts: Iterable[str] = (),
    rates: Mapping[str, str] | None = None,
    max_rows: int = 30,
    **kwargs: Any,
) -> None:
    """Show a styled table; ``counts`` columns are suppressed, ``rates`` hidden with them.

    Extra keywords (``max_cols``, ``index``, ``formats``, ``secondary``, ``group_by``) go to
    `table_html`.
    """
    _display_html(table_html(df, caption, cfg, counts, rates, max_rows, **kwargs))


def headline_html(text: str) -> str:
    return ("<div class='mm-headline' data-headline='1'><span class='mm-headline-label'>"
            f"要点（headline）</span>{_esc(text)}</div>")


def set_headline(text: str, cfg: dict | None = None) -> None:
    """Show the report's headline figure; the index page lists it next to the report."""
    _display_html(headline_html(text))


def figure_html(fig: Any = None, caption: str = "", dpi: int = 100) -> str:
    """A figure (or the Axes' figure, or the current one) as an embedded PNG; closes it."""
    import matplotlib.pyplot as plt

    if fig is None:
        fig = plt.gcf()
    elif hasattr(fig, "get_figure") and not hasattr(fig, "savefig"):
        fig = fig.get_figure()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return (f"<figure class='mm-figure'><img alt='{_esc(caption)}' "
            f"src='data:image/png;base64,{data}'>{cap}</figure>")


def show_figure(fig: Any = None, caption: str = "", dpi: int = 100) -> None:
    """Show a matplotlib figure/Axes as a PNG (works whatever the matplotlib backend)."""
    _display_html(figure_html(fig, caption, dpi))


def manifest_html(manifest: Mapping[str, Any]) -> str:
    rows = {k: manifest.get(k) for k in ("created", "git_commit", "profile", "seed",
                                         "synthetic", "config_hash")}
    packages = ", ".join(f"{k} {v}" for k, v in manifest.get("packages", {}).items())
    inputs = manifest.get("inputs", {})
    input_rows = "".join(f"<tr><td>{_esc(p)}</td><td><code>{_esc(h[:16])}</code></td></tr>"
                         for p, h in sorted(inputs.items()))
    inputs_table = (f"<table class='mm-table'><caption>入力ファイル（inputs, sha256）</caption>"
                    f"<thead><tr><th>file</th><th>sha256</th></tr></thead><tbody>{input_rows}"
                    "</tbody></table>") if inputs else "<p>入力ファイルなし（no inputs listed）</p>"
    return ("<section class='mm-manifest' data-manifest='1'><h2>実行記録（run manifest）</h2>"
            + _dl(rows) + _dl({"packages": packages}) + inputs_table + "</section>")


def close_report(cfg: dict, inputs: Iterable[str | Path] | None = None) -> None:
    """Show the run manifest (git commit, package versions, input hashes, seed).

    Returns None so that a notebook's last line does not also print the manifest dict.
    """
    root = cfg_data_dir(cfg)
    paths = [Path(p) for p in (inputs or [])]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise MimamoriError(f"close_report: input files not found: {missing}")
    manifest = run_manifest(cfg, paths, root=root)
    _display_html(manifest_html(manifest))


report_footer = close_report


# --------------------------------------------------------------------------- runner side


def check_kernel(name: str = KERNEL_NAME) -> Path:
    """The project's own kernel must exist and run this environment's Python."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise MimamoriError(f"Jupyter kernel {name!r} is not registered; run `make setup` "
                            "(it installs the kernel into .venv)") from None
    exe = Path(spec.argv[0]) if spec.argv else Path("?")
    venv_bin = Path(os.path.abspath(Path(sys.prefix) / "bin"))
    if Path(os.path.abspath(exe)).parent != venv_bin:
        raise MimamoriError(f"Jupyter kernel {name!r} runs {exe}, not this environment's "
                            f"Python in {venv_bin}; run `make setup` to re-register it")
    return Path(spec.resource_dir)


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_OBJECT_REPR = re.compile(r"^<[^<>]*>$", re.S)


def clean_outputs(nb: Any) -> Any:
    """Drop what a reader must not see: stderr (warnings, progress bars) and bare object reprs."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.get("name") == "stderr":
                continue
            if out.output_type == "execute_result":
                data = out.get("data", {})
                if set(data) == {"text/plain"} and _OBJECT_REPR.match(str(data["text/plain"])):
                    continue
            kept.append(out)
        cell["outputs"] = kept
    return nb


_EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>",
                              re.I)
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.I)
_EXTERNAL_ANY = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed)\b[^>]*\b(?:src|href)\s*=\s*"
    r"[\"']?(?:https?:)?//|@import|url\(\s*[\"']?(?:https?:)?//", re.I)


def make_offline(page: str) -> str:
    """Strip CDN scripts/stylesheets; fail if any other external resource remains."""
    page = _EXTERNAL_SCRIPT.sub("", page)
    page = _EXTERNAL_LINK.sub("", page)
    hit = _EXTERNAL_ANY.search(page)
    if hit:
        raise MimamoriError(f"report would load an external resource: {page[hit.start():hit.end() + 60]!r}")
    return page


_TITLE_RE = re.compile(r"data-report-title=['\"]([^'\"]*)['\"]")


def page_html(body: str, title: str, css: str = CSS, cls: str = "mm-report") -> str:
    return ("<!DOCTYPE html>\n<html lang='ja'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{_esc(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
            f"<main class='{cls}'>\n{body}\n</main>\n</body>\n</html>\n")


def notebook_to_html(nb: Any, fallback_title: str) -> str:
    """Executed notebook → one self-contained, code-free, offline HTML page."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(clean_outputs(nb))
    match = _TITLE_RE.search(body)
    title = html.unescape(match.group(1)) if match else fallback_title
    return make_offline(page_html(body, title))


def _output_stem(name: str, target: str | None) -> str:
    return f"{name}_{target}" if target else name


def render_report(
    name: str,
    cfg: dict,
    target: str | None = None,
    *,
    notebooks_dir: str | Path | None = None,
    build_dir: str | Path | None = None,
    config_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Convert, execute and render ``notebooks/<name>.py`` into ``reports/<name>[_<target>].html``.

    A failing notebook raises MimamoriError with the cell and the notebook's own error, and
    leaves no HTML (a stale report of the same name is removed so it cannot be mistaken for
    this run's result).
    """
    import jupytext
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebooks_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    build_dir = Path(build_dir) if build_dir else BUILD_DIR
    source = notebooks_dir / f"{name}.py"
    if not source.exists():
        known = sorted(p.stem for p in notebooks_dir.glob("*.py"))
        raise MimamoriError(f"{source}: notebook not found (known: {known})")
    if name in PER_TARGET_NOTEBOOKS and not target:
        raise MimamoriError(f"{name} is rendered once per target; pass --target "
                            f"(one of {cfg.run.targets})")
    stem = _output_stem(name, target)
    out_html = cfg_reports_dir(cfg) / f"{stem}.html"
    check_kernel()

    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Mimamori (.venv)",
                                 "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    converted = build_dir / f"{stem}.ipynb"
    with atomic_path(converted) as tmp:
        nbformat.write(nb, str(tmp))

    params: dict[str, Any] = {
        "profile": cfg.profile or "",
        "data_dir": str(cfg_data_dir(cfg).resolve()),
        "config_dir": str(Path(config_dir or cfg.config_dir)
                          .resolve()),
    }
    if target:
        params["target"] = target
    try:
        with _env(MPLBACKEND="module://matplotlib_inline.backend_inline"):
            executed = pm.execute_notebook(
                nb, None, parameters=params, kernel_name=KERNEL_NAME, cwd=str(REPO_ROOT),
                progress_bar=progress, log_output=False, request_save_on_cell_execute=False,
            )
    except PapermillExecutionError as exc:
        out_html.unlink(missing_ok=True)
        first_line = next((ln for ln in str(exc.source).splitlines() if ln.strip()), "")
        raise MimamoriError(
            f"notebooks/{name}.py{f' (target {target})' if target else ''}: cell "
            f"{exc.exec_count or exc.cell_index} `{first_line[:80]}` failed: "
            f"{exc.ename}: {exc.evalue}") from None
    except Exception as exc:  # kernel died, timeout, missing parameters ...
        out_html.unlink(missing_ok=True)
        if isinstance(exc, MimamoriError):
            raise
        raise MimamoriError(f"notebooks/{name}.py: execution failed: "
                            f"{type(exc).__name__}: {exc}") from None
    with atomic_path(build_dir / f"{stem}.executed.ipynb") as tmp:
        nbformat.write(executed, str(tmp))
    page = notebook_to_html(executed, fallback_title=stem)
    write_text(page, out_html)
    size = out_html.stat().st_size
    if size > MAX_REPORT_BYTES:
        print(f"warning: {out_html.name} is {size / 1e6:.1f} MB (> 5 MB); use fewer or "
              "smaller figures", file=sys.stderr)
    return out_html


# --------------------------------------------------------------------------- index


def _attr(pattern: str, text: str) -> str:
    m = re.search(pattern + r"=['\"]([^'\"]*)['\"]", text)
    return html.unescape(m.group(1)) if m else ""


_HEADLINE_RE = re.compile(r"data-headline=['\"]1['\"][^>]*>(.*?)</div>", re.S)
_TAG_RE = re.compile(r"<[^>]+>")


def report_summary(path: Path) -> dict[str, Any]:
    """Title, headline, run date and provenance of one rendered report."""
    text = path.read_text(encoding="utf-8", errors="replace")
    headlines = []
    for m in _HEADLINE_RE.finditer(text):
        inner = re.sub(r"<span class=['\"]mm-headline-label['\"]>.*?</span>", "", m.group(1),
                       flags=re.S)
        headlines.append(html.unescape(_TAG_RE.sub("", inner)).strip())
    return {
        "file": path.name,
        "title": _attr("data-report-title", text) or path.stem,
        "headline": " / ".join(headlines),
        "run_date": _attr("data-run-date", text),
        "provenance": _attr("data-provenance", text),
        "suppression_off": "data-suppression='off'" in text or 'data-suppression="off"' in text,
        "size_kb": round(path.stat().st_size / 1024),
    }


def index_html(reports_dir: Path) -> str:
    summaries = [report_summary(p) for p in sorted(Path(reports_dir).glob("*.html"))
                 if p.name != "index.html"]
    rows = []
    for s in summaries:
        warn = " <strong>（秘匿なし: private）</strong>" if s["suppression_off"] else ""
        rows.append(
            f"<tr><td><a href='{_esc(s['file'])}'>{_esc(s['title'])}</a>{warn}</td>"
            f"<td>{_esc(s['headline'] or '–')}</td><td>{_esc(s['run_date'])}</td>"
            f"<td>{_esc(s['provenance'])}</td><td class='num'>{s['size_kb']:,} KB</td></tr>")
    body = (
        "<h1>Mimamori 報告書一覧（reports）</h1>"
        f"<p class='mm-meta'>作成日時（generated）: {datetime.now():%Y-%m-%d %H:%M} ・ "
        f"{len(summaries)} 件</p>"
        f"<div class='mm-notice'><p>{_esc(NOTICE_JA)}</p><p>{_esc(NOTICE_EN)}</p></div>"
        "<table class='mm-table' data-index='1'><thead><tr><th>報告書（report）</th>"
        "<th>要点（headline）</th><th>作成日時（run date）</th><th>データ（data）</th>"
        "<th>大きさ（size）</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    return page_html(body, "Mimamori 報告書一覧（reports）", cls="mm-report mm-index")


def write_index(reports_dir: str | Path) -> Path:
    """Write reports/index.html listing every report in the folder."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    return write_text(index_html(reports_dir), reports_dir / "index.html")


def report_jobs(cfg: dict, only: str | None = None, target: str | None = None
                ) -> list[tuple[str, str | None]]:
    """(notebook, target) pairs to render: 03_model once per target."""
    names = [only] if only else list(cfg.reports.notebooks)
    targets = list(cfg.run.targets)
    if target and target not in targets:
        raise MimamoriError(f"--target {target!r}: not in models.targets {targets}")
    if target and not (only and only in PER_TARGET_NOTEBOOKS):
        raise MimamoriError(f"--target only applies to {list(PER_TARGET_NOTEBOOKS)}")
    jobs: list[tuple[str, str | None]] = []
    for name in names:
        if name in PER_TARGET_NOTEBOOKS:
            jobs += [(name, t) for t in ([target] if target else targets)]
        else:
            jobs.append((name, None))
    return jobs


def main(cfg: dict, argv: list[str]) -> int:
    """``python -m helpers reports [--only NAME] [--target T] [--index]``."""
    from tqdm.auto import tqdm

    parser = argparse.ArgumentParser(prog="python -m helpers reports")
    parser.add_argument("--only", help="render one notebook (notebooks/<NAME>.py)")
    parser.add_argument("--target", help="for 03_model: one target (default: every target)")
    parser.add_argument("--index", action="store_true", help="only write reports/index.html")
    args = parser.parse_args(argv)
    out_dir = cfg_reports_dir(cfg)
    if args.index:
        path = write_index(out_dir)
        print(f"wrote {path}")
        return 0
    jobs = report_jobs(cfg, args.only, args.target)
    failures = []
    for name, target in tqdm(jobs, desc="reports", unit="report"):
        try:
            path = render_report(name, cfg, target)
            tqdm.write(f"wrote {path}")
        except MimamoriError as exc:
            if args.only:
                raise
            failures.append(str(exc))
            tqdm.write(f"FAILED {_output_stem(name, target)}: {exc}")
    if not args.only:
        write_index(out_dir)
    if failures:
        raise MimamoriError(f"{len(failures)} of {len(jobs)} reports failed; first: {failures[0]}")
    return 0


# --------------------------------------------------------------------------- PII scan


@dataclass(frozen=True)
class Finding:
    """One thing in a report that must not be there (``masked``: the hit, masked)."""

    file: str
    kind: str
    masked: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.file}: {self.kind} {self.masked}" + (f" ({self.detail})" if self.detail else "")


def mask(value: str) -> str:
    """Show a hit without repeating it: first 2 characters + ***."""
    return str(value)[:2] + "***"


_WS = re.compile(r"\s+")
MIN_TEXT_LEN = 3       # names/kana shorter than this after removing spaces are not searched
MIN_ADDRESS_LEN = 6
MIN_CODE_LEN = 6


def normalise_text(value: str) -> str:
    """NFKC (full-width digits/letters → ASCII, half-width kana → full) without whitespace."""
    return _WS.sub("", unicodedata.normalize("NFKC", str(value)))


@dataclass
class PiiIndex:
    """Real identifiers from data/raw: codes as a set, strings keyed by their first characters."""

    codes: set[str]
    strings: dict[str, list[str]]
    n_strings: int = 0

    @classmethod
    def build(cls, codes: Iterable[str], strings: Iterable[str],
              normalised: bool = False) -> PiiIndex:
        norm = (lambda x: x) if normalised else normalise_text
        code_set = {c for c in (norm(x) for x in codes)
                    if len(c) >= MIN_CODE_LEN and c.isdigit()}
        by_prefix: dict[str, set[str]] = {}
        for s in {norm(x) for x in strings}:
            if len(s) >= MIN_TEXT_LEN and not s.isdigit():
                by_prefix.setdefault(s[:MIN_TEXT_LEN], set()).add(s)
        return cls(code_set, {k: sorted(v, key=len, reverse=True) for k, v in by_prefix.items()},
                   sum(len(v) for v in by_prefix.values()))

    def find_strings(self, text: str) -> list[str]:
        """Every indexed string occurring in ``text`` (already normalised)."""
        hits = []
        k = MIN_TEXT_LEN
        for i in range(len(text) - k + 1):
            cands = self.strings.get(text[i:i + k])
            if cands:
                for s in cands:
                    if text.startswith(s, i):
                        hits.append(s)
                        break
        return hits

    def find_codes(self, text: str) -> list[str]:
        return [m.group(1) for m in _CODE_RE.finditer(text) if m.group(1) in self.codes]


# a digit run that is not part of a hex hash, a decimal or a longer number
_CODE_RE = re.compile(r"(?<![0-9A-Za-z])(?<!\d\.)(\d{6,15})(?![0-9A-Za-z])(?!\.\d)")


def _read_raw_table(path: Path, headers: set[str]) -> pd.DataFrame:
    """Only the PII columns of one raw export (CP932 or UTF-8 CSV, or xlsx), as text."""
    def wanted(col: Any) -> bool:
        return normalise_text(col) in headers

    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        frames = pd.read_excel(path, sheet_name=None, dtype=str)
        return pd.concat([f[[c for c in f.columns if wanted(c)]] for f in frames.values()],
                         ignore_index=True)
    from helpers.ingest.stage import decode_export  # one encoding rule for ingest and the scan

    text, _encoding = decode_export(path.read_bytes(), path)
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, usecols=wanted)


def _pii_columns(path: Path, schema: Any, header_map: Mapping | None) -> pd.DataFrame:
    """PII code/string columns of one export, named by field.

    Our own reader rather than helpers.ingest.read_export: the scan needs only a few columns,
    must still read a file ingest would reject (a missing required column can sit beside a
    name column), and pandas' C parser reading only those columns is ~10× faster.
    """
    pii = {f.name: f for f in schema.fields if f.pii and f.type in ("code", "string")}
    header_to_name = {normalise_text(h): f.name for f in pii.values() for h in f.headers}
    for vendor, fname in ((header_map or {}).get(schema.table) or {}).items():
        if fname in pii:
            header_to_name[normalise_text(vendor)] = fname
    frame = _read_raw_table(path, set(header_to_name))
    frame.columns = [header_to_name[normalise_text(c)] for c in frame.columns]
    # two headers for one field (e.g. 宛名番号 and 住民コード): keep both as rows
    return pd.concat([frame.iloc[:, [i]].set_axis([c], axis=1)
                      for i, c in enumerate(frame.columns)], ignore_index=True) \
        if frame.columns.duplicated().any() else frame


def load_pii_index(raw_dir: str | Path, schemas: Mapping[str, Any] | None = None,
                   header_map: Mapping | None = None) -> PiiIndex:
    """Collect every `pii: true` code, name, kana and address value in data/raw's exports.

    Dates (birth dates) and dropped free text are not searched: dates collide with ordinary
    report dates and free text is never copied into reports by construction.
    """
    from helpers.ingest.stage import find_exports  # the same file -> table rule as ingest
    from helpers.schema import load_schemas

    raw_dir = Path(raw_dir)
    schemas = schemas or load_schemas()
    codes: list[pd.Series] = []
    strings: list[pd.Series] = []
    found, _unmatched = find_exports(raw_dir, dict(schemas))
    exports = [(schemas[table], path) for table, paths in found.items() for path in paths]
    for schema, path in exports:
        frame = _pii_columns(path, schema, header_map)
        for f in schema.fields:
            if f.name not in frame.columns:
                continue
            values = frame[f.name].dropna().astype(str)
            if f.type == "code":
                codes.append(values)
            else:
                strings.append(values)
                if "address" in f.name or "住所" in f.title:
                    # also identifying without the city part or the building name
                    unique = values.drop_duplicates()
                    street = unique.str.normalize("NFKC").str.split(r"\s").str[0]
                    for variant in (unique, street):
                        strings.append(variant.map(strip_municipality))
                    strings.append(street[street.str.len() >= MIN_ADDRESS_LEN])
    return PiiIndex.build(_normalised_unique(codes), _normalised_unique(strings),
                          normalised=True)


def _normalised_unique(parts: list[pd.Series]) -> list[str]:
    """`normalise_text` of every value, vectorised, deduplicated, blanks dropped."""
    if not parts:
        return []
    values = pd.Series(pd.concat(parts, ignore_index=True).unique(), dtype="string")
    values = values.str.normalize("NFKC").str.replace(r"\s+", "", regex=True)
    return [v for v in values.dropna().unique() if v]


_MUNICIPALITY = re.compile(r"^(?:[^\d]{2,3}?[都道府県])?(?:[^\d]+?郡[^\d]+?[町村]|[^\d]+?市(?:[^\d]+?区)?|"
                           r"[^\d]+?区)")


def strip_municipality(address: str) -> str:
    """The part of an address after prefecture and city/ward ("" if that leaves too little)."""
    norm = normalise_text(address)
    rest = _MUNICIPALITY.sub("", norm, count=1)
    return rest if rest != norm and len(rest) >= MIN_ADDRESS_LEN else ""


class _ReportParser(HTMLParser):
    """Collect text (and attribute values) and the cells of count tables."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.small_cells: list[tuple[str, str]] = []  # (cell text, context)
        self._skip = 0
        self.headlines: list[str] = []
        self._headline_depth = 0  # >0 while inside a data-headline div
        self._tables: list[dict[str, Any]] = []
        self._cell: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "style":
            self._skip += 1
        if tag == "div" and (self._headline_depth or a.get("data-headline") == "1"):
            if not self._headline_depth:
                self.headlines.append("")
            self._headline_depth += 1
        for key, value in attrs:
            if value and key not in ("src", "href", "style", "class"):
                self.texts.append(value)
        if tag == "table":
            self._tables.append({"count": a.get("data-count-table") == "1", "caption": "",
                                 "marked": False, "cells": [], "in_caption": False})
        elif tag == "caption" and self._tables:
            self._tables[-1]["in_caption"] = True
        elif tag in ("td", "th") and self._tables:
            marked = "data-count" in a
            self._tables[-1]["marked"] |= marked
            self._cell = {"text": "", "marked": marked, "th": tag == "th"}

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._skip = max(0, self._skip - 1)
        elif tag == "div" and self._headline_depth:
            self._headline_depth -= 1
        elif tag == "caption" and self._tables:
            self._tables[-1]["in_caption"] = False
        elif tag in ("td", "th") and self._tables and self._cell is not None:
            self._tables[-1]["cells"].append(self._cell)
            self._cell = None
        elif tag == "table" and self._tables:
            table = self._tables.pop()
            if table["count"]:
                for cell in table["cells"]:
                    if cell["th"] or (table["marked"] and not cell["marked"]):
                        continue
                    self.small_cells.append((cell["text"], table["caption"].strip()))

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.texts.append(data)
        if self._headline_depth:
            self.headlines[-1] += data
        if self._tables:
            if self._tables[-1]["in_caption"]:
                self._tables[-1]["caption"] += data
            if self._cell is not None:
                self._cell["text"] += data


def _small_count(text: str, threshold: int) -> int | None:
    value = unicodedata.normalize("NFKC", text).strip().replace(",", "")
    if re.fullmatch(r"\d+(?:\.0+)?", value):
        n = int(float(value))
        if 1 <= n <= threshold:
            return n
    return None


# "4 人", "3件": a small count of people/cases written into a headline sentence
_HEADLINE_COUNT = re.compile(r"(?<![\d.,])(\d{1,2})\s*(?:人|件|名|世帯|例|children|cases|people)")
TEXT_SUFFIXES = (".html", ".htm", ".csv", ".json", ".md", ".txt", ".tsv", ".svg", ".xml")


def scan_text(name: str, text: str, index: PiiIndex | None, threshold: int,
              is_html: bool) -> list[Finding]:
    """Findings in one report's text (pure; used by `scan_reports`)."""
    findings: list[Finding] = []
    if is_html:
        parser = _ReportParser()
        parser.feed(text)
        parser.close()
        chunks = parser.texts
        for cell, caption in parser.small_cells:
            n = _small_count(cell, threshold)
            if n is not None:
                findings.append(Finding(name, "unsuppressed small count", str(n),
                                        f"count table {caption[:60]!r}"))
        for headline in parser.headlines:
            for m in _HEADLINE_COUNT.finditer(unicodedata.normalize("NFKC", headline)):
                if 1 <= int(m.group(1)) <= threshold:
                    findings.append(Finding(name, "small count in headline", m.group(0),
                                            "suppress it (e.g. <10) before set_headline"))
    else:
        chunks = [text]
    if index is not None:
        seen: set[tuple[str, str]] = set()
        for chunk in chunks:
            norm_keep_ws = unicodedata.normalize("NFKC", chunk)
            for code in index.find_codes(norm_keep_ws):
                if ("code", code) not in seen:
                    seen.add(("code", code))
                    findings.append(Finding(name, "real code", mask(code)))
            for hit in index.find_strings(normalise_text(chunk)):
                if ("text", hit) not in seen:
                    seen.add(("text", hit))
                    findings.append(Finding(name, "name/kana/address", mask(hit)))
    return findings


def scan_reports(reports_dir: str | Path, raw_dir: str | Path | None, threshold: int = 9,
                 index: PiiIndex | None = None) -> list[Finding]:
    """Every finding in every file under ``reports_dir`` (empty list = clean).

    With ``raw_dir`` missing only small counts are checked. Binary files (images, xlsx,
    parquet) cannot be searched and are reported as findings of kind "unscannable file".
    """
    reports_dir = Path(reports_dir)
    if index is None and raw_dir is not None and Path(raw_dir).is_dir():
        index = load_pii_index(raw_dir)
    findings: list[Finding] = []
    for path in sorted(p for p in reports_dir.rglob("*") if p.is_file()):
        rel = str(path.relative_to(reports_dir))
        if path.name.startswith(".") or "cache" in path.relative_to(reports_dir).parts:
            continue
        suffix = path.suffix.lower()
        if suffix not in TEXT_SUFFIXES:
            if suffix not in (".png", ".jpg", ".jpeg", ".gif"):
                findings.append(Finding(rel, "unscannable file", suffix,
                                        "only text reports may go under reports/"))
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        findings += scan_text(rel, text, index, threshold, suffix in (".html", ".htm", ".svg"))
    return findings


def check_reports_main(cfg: dict, argv: list[str]) -> int:
    """``python -m helpers check-reports``: exit 1 naming file and (masked) string per hit."""
    import time

    parser = argparse.ArgumentParser(prog="python -m helpers check-reports")
    parser.add_argument("--reports", default=None, help="folder to scan (default reports/)")
    args = parser.parse_args(argv)
    reports = Path(args.reports) if args.reports else cfg_reports_dir(cfg)
    raw = cfg_data_dir(cfg) / "raw"
    threshold = _threshold(cfg)
    if not reports.is_dir():
        raise MimamoriError(f"{reports}: reports folder not found")
    start = time.perf_counter()
    index = None
    if raw.is_dir():
        index = load_pii_index(raw, header_map=cfg.ingest.header_map)
        print(f"check-reports: {len(index.codes):,} codes and {index.n_strings:,} names/"
              f"addresses from {raw}")
    else:
        print(f"check-reports: {raw} not found; checking small counts only (no names/codes)")
    findings = scan_reports(reports, None, threshold, index=index)
    n_files = sum(1 for p in reports.rglob("*") if p.is_file())
    for f in findings:
        print(f"  {f}")
    elapsed = time.perf_counter() - start
    if findings:
        print(f"check-reports: FAILED: {len(findings)} finding(s) in {n_files} files "
              f"({elapsed:.1f} s)")
        return 1
    print(f"check-reports: OK: {n_files} files clean ({elapsed:.1f} s)")
    return 0
