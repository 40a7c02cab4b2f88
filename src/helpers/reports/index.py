"""reports/index.html: every report with its title, headline, run date and provenance."""

from __future__ import annotations

import html
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from helpers.io import write_text
from helpers.reports.api import NOTICE_EN, NOTICE_JA, _esc, page_html


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
        inner = re.sub(
            r"<span class=['\"]mm-headline-label['\"]>.*?</span>", "", m.group(1), flags=re.S
        )
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
    summaries = [
        report_summary(p)
        for p in sorted(Path(reports_dir).glob("*.html"))
        if p.name != "index.html"
    ]
    rows = []
    for s in summaries:
        warn = " <strong>（秘匿なし: private）</strong>" if s["suppression_off"] else ""
        rows.append(
            f"<tr><td><a href='{_esc(s['file'])}'>{_esc(s['title'])}</a>{warn}</td>"
            f"<td>{_esc(s['headline'] or '–')}</td><td>{_esc(s['run_date'])}</td>"
            f"<td>{_esc(s['provenance'])}</td><td class='num'>{s['size_kb']:,} KB</td></tr>"
        )
    body = (
        "<h1>Mimamori 報告書一覧（reports）</h1>"
        f"<p class='mm-meta'>作成日時（generated）: {datetime.now():%Y-%m-%d %H:%M} ・ "
        f"報告書 {len(summaries)} 本（reports）</p>"
        f"<div class='mm-notice'><p>{_esc(NOTICE_JA)}</p><p>{_esc(NOTICE_EN)}</p></div>"
        "<table class='mm-table' data-index='1'><thead><tr><th>報告書（report）</th>"
        "<th>要点（headline）</th><th>作成日時（run date）</th><th>データ（data）</th>"
        "<th>大きさ（size）</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    return page_html(body, "Mimamori 報告書一覧（reports）", cls="mm-report mm-index")


def write_index(reports_dir: str | Path) -> Path:
    """Write reports/index.html listing every report in the folder."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    return write_text(index_html(reports_dir), reports_dir / "index.html")
