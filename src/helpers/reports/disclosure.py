"""Disclosure control: the one place that decides which figures a report may show.

Results circulated outside the analysis team must not identify anyone, so every table, figure
and sentence of a report passes through the rules below (README "Reading the reports" states
them for a reviewer). T is ``reports.small_cell_threshold`` in config/reports.yaml (9).

1. **Primary suppression.** A count of 1..T is shown as ``<T+1`` ("<10"). Zero is shown:
   "nobody" identifies nobody.
2. **Secondary (complementary) suppression.** No hidden count may be worked out from the other
   figures of the same report. A table states its additive structure: total rows and columns
   (found by their label, 合計 / total), columns that add up to another (``sums``) and margins
   known from elsewhere in the report (``universe`` / ``margins``: every total printed anywhere
   in the report is treated as known). `audit` solves that linear system with
   ``scipy.optimize.linprog`` for the smallest and largest value each hidden count can take (as
   τ-ARGUS-style audits do); while a hidden count's feasible interval is narrower than 1..T,
   `protect` hides another count of at least T+1 (shown as "x").
3. **Derived figures.** A rate, ratio, mean of a yes/no item, precision, lift or difference is
   hidden ("*") when any count it is made from is hidden; and any fraction that, multiplied by a
   count shown in the same row or sentence, pins a count of 1..T is hidden or banded
   (`pinned_count`), whether or not it was declared.
4. **Headline and text figures** go through `count_text` / `share_text`: small ones are shown
   as a band (``<10``, ``<0.10``).
5. **Charts** use `visible_counts`, `precision_curve_from` and `pr_curve_from`: no point, bar,
   annotation or curve start shows or implies a count of 1..T.

The same `audit` runs in ``python -m helpers check-reports`` (helpers.reports.scan) on the
rendered HTML, where the structure is read back from the page: the scan attacks what the
report shows with what the report says about itself.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from helpers import MimamoriError

VISIBLE, PRIMARY, SECONDARY, UNKNOWN = 0, 1, 2, 3
SECONDARY_LABEL = "x"
DERIVED_LABEL = "*"
MISSING_LABEL = "–"
# a row or column whose label (brackets aside) says it is the sum of the others
TOTAL_RE = re.compile(r"^(?:合計|総数|総計|小計|計|全体|total|subtotal|overall|all)\b", re.I)
_BRACKETS = re.compile(r"[（(][^（）()]*[）)]")
_EPS = 1e-6


# ----------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rules:
    """The disclosure settings of one run (config/reports.yaml, nowhere else)."""

    threshold: int
    enabled: bool = True
    secondary: bool = True
    min_values: int = 5  # a hidden count must keep at least this many possible values

    @classmethod
    def from_cfg(cls, cfg: Any) -> Rules:
        r = cfg.reports
        return cls(
            int(r.small_cell_threshold),
            bool(r.suppress_small_cells),
            bool(r.secondary_suppression),
            int(r.min_feasible_values),
        )

    @property
    def protection(self) -> int:
        """How many of the values 1..T a hidden count must still be able to take."""
        return max(1, min(self.min_values, self.threshold))

    @property
    def small_label(self) -> str:
        """Label of a suppressed count: counts 1..9 are shown as "<10"."""
        return f"<{self.threshold + 1}"

    def is_small(self, n: Any) -> bool:
        """True if ``n`` is a count of 1..T that suppression hides (False when it is off)."""
        if not self.enabled or n is None or (isinstance(n, float) and math.isnan(n)):
            return False
        try:
            value = float(n)
        except (TypeError, ValueError):
            return False
        return 1 <= value <= self.threshold


def small_mask(values: Any, rules: Rules) -> np.ndarray:
    """Boolean array: which values are counts of 1..T (all False when suppression is off)."""
    v = pd.to_numeric(pd.Series(np.asarray(values, dtype=object).ravel()), errors="coerce")
    v = v.to_numpy(dtype=float)
    if not rules.enabled:
        return np.zeros(len(v), dtype=bool)
    return (v >= 1) & (v <= rules.threshold)


# ----------------------------------------------------------------------- linear structure
@dataclass(frozen=True)
class Relation:
    """``Σ coef · cell = rhs`` over cells (row, column) of one table.

    ``rhs`` None: the right-hand side is not known to a reader, so the relation cannot be used.
    """

    terms: tuple[tuple[int, int, float], ...]
    rhs: float | None
    what: str
    kind: str = "stated"  # "label": read from a 合計/total label, may not be a real total


@dataclass
class Grid:
    """The count cells of one table: values (NaN = unknown to the reader) and their status."""

    values: np.ndarray
    status: np.ndarray
    rows: list[str]
    cols: list[str]

    def where(self, r: int, c: int) -> str:
        return f"row {self.rows[r]!r}, column {self.cols[c]!r}"


@dataclass(frozen=True)
class Exposure:
    """A hidden count whose feasible interval is narrower than 1..T (it gives itself away)."""

    row: int
    col: int
    low: float
    high: float

    def interval(self) -> str:
        lo, hi = math.ceil(self.low - _EPS), math.floor(self.high + _EPS)
        return f"{lo}" if lo == hi else f"{lo}..{hi}"


def _bounds(status: int, threshold: int) -> tuple[float, float | None]:
    if status == PRIMARY:
        return 1.0, float(threshold)
    if status == SECONDARY:
        return float(threshold + 1), None
    return 0.0, None


def _reduced(
    grid: Grid, relations: Sequence[Relation]
) -> list[tuple[dict[tuple[int, int], float], float, Relation]]:
    """Relations over hidden cells only: visible cells moved to the right-hand side."""
    out = []
    for rel in relations:
        if rel.rhs is None:
            continue
        const = float(rel.rhs)
        hidden: dict[tuple[int, int], float] = {}
        usable = True
        for r, c, coef in rel.terms:
            st = grid.status[r, c]
            if st == VISIBLE:
                v = grid.values[r, c]
                if np.isnan(v):
                    usable = False
                    break
                const -= coef * v
            else:
                hidden[(r, c)] = hidden.get((r, c), 0.0) + coef
        hidden = {k: v for k, v in hidden.items() if abs(v) > _EPS}
        if usable and hidden:
            out.append((hidden, const, rel))
    return out


def _components(reduced: list) -> list[tuple[list[tuple[int, int]], list]]:
    """Groups of hidden cells linked by relations, each with its relations."""
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(x: tuple[int, int]) -> tuple[int, int]:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for hidden, _, _ in reduced:
        cells = list(hidden)
        for other in cells[1:]:
            parent[find(other)] = find(cells[0])
        find(cells[0])
    groups: dict[tuple[int, int], tuple[list, list]] = {}
    for cell in parent:
        groups.setdefault(find(cell), ([], []))[0].append(cell)
    for item in reduced:
        groups[find(next(iter(item[0])))][1].append(item)
    return [(sorted(cells), rels) for cells, rels in groups.values()]


class Inconsistent(MimamoriError):
    """The stated structure does not hold for the figures (no feasible solution)."""


def _solve_component(
    grid: Grid,
    cells: list[tuple[int, int]],
    rels: list,
    threshold: int,
    only: set[tuple[int, int]] | None,
    protection: int,
) -> list[Exposure]:
    from scipy.optimize import linprog

    index = {cell: i for i, cell in enumerate(cells)}
    a_eq = np.zeros((len(rels), len(cells)))
    b_eq = np.zeros(len(rels))
    for j, (hidden, const, _rel) in enumerate(rels):
        for cell, coef in hidden.items():
            a_eq[j, index[cell]] = coef
        b_eq[j] = const
    bounds = [_bounds(int(grid.status[c]), threshold) for c in cells]
    out = []
    for cell in cells:
        if grid.status[cell] != PRIMARY or (only is not None and cell not in only):
            continue
        objective = np.zeros(len(cells))
        objective[index[cell]] = 1.0
        ends = []
        for sign in (1.0, -1.0):
            res = linprog(sign * objective, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
            if res.status == 2:
                raise Inconsistent(
                    f"{grid.where(*cell)}: the stated totals do not add up "
                    f"({'; '.join(sorted({r.what for _, _, r in rels}))})"
                )
            ends.append(sign * res.fun if res.status == 0 else sign * -np.inf)
        low, high = ends[0], ends[1]
        n_values = math.floor(min(high, threshold) + _EPS) - math.ceil(max(low, 1) - _EPS) + 1
        if n_values < protection:
            out.append(Exposure(cell[0], cell[1], low, high))
    return out


def audit(
    grid: Grid,
    relations: Sequence[Relation],
    threshold: int,
    protection: int,
    only: Iterable[tuple[int, int]] | None = None,
) -> list[Exposure]:
    """Hidden counts (``<10``) that every visible cell and every known total narrow down to
    fewer than ``protection`` of the values 1..T. Empty list: nothing can be worked out."""
    only_set = set(only) if only is not None else None
    found: list[Exposure] = []
    for cells, rels in _components(_reduced(grid, relations)):
        if only_set is not None and not only_set.intersection(cells):
            continue
        if any(grid.status[c] == PRIMARY for c in cells):
            found += _solve_component(grid, cells, rels, threshold, only_set, protection)
    return sorted(found, key=lambda e: (e.row, e.col))


def check_relations(values: np.ndarray, relations: Sequence[Relation], where: str) -> None:
    """Every stated relation must hold on the true figures (else the declaration is wrong)."""
    for rel in relations:
        if rel.rhs is None:
            continue
        terms = [coef * values[r, c] for r, c, coef in rel.terms]
        if any(np.isnan(t) for t in terms):
            continue
        total = float(np.sum(terms))
        if abs(total - rel.rhs) > 1e-6 * max(1.0, abs(rel.rhs)):
            raise MimamoriError(
                f"{where}: {rel.what} does not hold "
                f"(parts add up to {total:g}, expected {rel.rhs:g})"
            )


def _total_cells(relations: Sequence[Relation]) -> set[tuple[int, int]]:
    return {(r, c) for rel in relations for r, c, coef in rel.terms if coef < 0}


def _candidates(
    grid: Grid, relations: Sequence[Relation], exposed: Exposure, threshold: int
) -> list[tuple[int, int]]:
    """Visible counts >= T+1 that share a relation with the exposed cell's group of hidden cells."""
    comp = {(exposed.row, exposed.col)}
    for members, _ in _components(_reduced(grid, relations)):
        if (exposed.row, exposed.col) in members:
            comp = set(members)
    totals = _total_cells(relations)
    found = set()
    for rel in relations:
        cells = {(r, c) for r, c, _ in rel.terms}
        if rel.rhs is None or not cells & comp:
            continue
        for cell in cells:
            v = grid.values[cell]
            if grid.status[cell] == VISIBLE and not np.isnan(v) and v >= threshold + 1:
                found.add(cell)
    return sorted(found, key=lambda c: (c in totals, grid.values[c], c))


def protect(
    grid: Grid,
    relations: Sequence[Relation],
    threshold: int,
    protection: int,
    where: str = "table",
    max_tries: int = 25,
) -> Grid:
    """Hide further counts (SECONDARY) until `audit` finds nothing; returns the new grid.

    Greedy, as in τ-ARGUS' hypercube method: for the first exposed cell try the candidates
    (non-total cells first, smallest first) until one makes it safe, else hide the candidate
    with the most room and go on. Raises MimamoriError when nothing is left to hide.
    """
    check_relations(grid.values, relations, where)
    grid = Grid(grid.values, grid.status.copy(), grid.rows, grid.cols)
    for _ in range(grid.values.size + 1):
        exposures = audit(grid, relations, threshold, protection)
        if not exposures:
            return grid
        exposed = exposures[0]
        cands = _candidates(grid, relations, exposed, threshold)
        if not cands:
            raise MimamoriError(
                f"{where}: the count at {grid.where(exposed.row, exposed.col)} can be worked out "
                f"({exposed.interval()}) from the totals and nothing else can be hidden to "
                "protect it; merge small categories or drop the total"
            )
        chosen = None
        for cand in cands[:max_tries]:
            grid.status[cand] = SECONDARY
            if not audit(grid, relations, threshold, protection, [(exposed.row, exposed.col)]):
                chosen = cand
                break
            grid.status[cand] = VISIBLE
        if chosen is None:
            chosen = max(cands, key=lambda c: grid.values[c])
            grid.status[chosen] = SECONDARY
    raise MimamoriError(f"{where}: secondary suppression did not converge")  # pragma: no cover


# ------------------------------------------------------------------------ table structure
@dataclass
class Structure:
    """What a table says about its own arithmetic (declared by the caller or read from labels).

    ``sums``: {column: [columns adding up to it]} within each row. ``group_by``: label columns
    whose value splits the rows into independent parts. ``margins``: {count column: known sum}
    per part (a number, or None when the reader does not know it). Total rows/columns are found
    by label (TOTAL_RE) unless ``total_rows`` is given.
    """

    columns: list[str]
    count_cols: list[str]
    row_labels: list[str]
    groups: list[str] = field(default_factory=list)
    sums: dict[str, list[str]] = field(default_factory=dict)
    margins: dict[str, dict[str, float | None]] = field(default_factory=dict)
    total_rows: list[int] | None = None
    partition: list[str] = field(default_factory=list)  # count columns every group adds up alike


def is_total_label(text: Any) -> bool:
    """ "合計（total）", "Total", "全体": a label that says its row/column sums the others."""
    bare = _BRACKETS.sub("", str(text)).strip()
    return bool(TOTAL_RE.match(bare)) and len(bare) <= 12


def total_row_positions(row_labels: Sequence[str]) -> list[int]:
    """Rows one of whose label cells (joined by " / ") says total."""
    return [
        i
        for i, lab in enumerate(row_labels)
        if any(is_total_label(part) for part in str(lab).split(" / "))
    ]


def segments(
    n_rows: int, totals: Sequence[int], groups: Sequence[str]
) -> list[tuple[list[int], int | None]]:
    """(part rows, total row or None) for each independent part of a table.

    With ``groups`` (one value per row) each group is a part, with its total row if it has one.
    Without, one total row sums every other row; several total rows each sum the rows since the
    previous total (sub-totals).
    """
    tot = set(totals)
    if groups:
        order = list(dict.fromkeys(groups))
        out = []
        for g in order:
            rows = [i for i in range(n_rows) if groups[i] == g]
            parts = [i for i in rows if i not in tot]
            trow = [i for i in rows if i in tot]
            out.append((parts, trow[0] if len(trow) == 1 else None))
        return out
    if len(tot) <= 1:
        return [([i for i in range(n_rows) if i not in tot], next(iter(tot), None))]
    out, start = [], 0
    for t in sorted(tot):
        out.append((list(range(start, t)), t))
        start = t + 1
    if start < n_rows:
        out.append((list(range(start, n_rows)), None))
    return out


def segment_key(groups: Sequence[str], part_rows: Sequence[int], i: int) -> str:
    """Name of one part of a table: its group value, else its position."""
    return groups[part_rows[0]] if groups and part_rows else str(i)


def relations_for(s: Structure) -> list[Relation]:
    """The linear relations a reader can write down for a table with this structure."""
    col_at = {c: i for i, c in enumerate(s.count_cols)}
    totals = s.total_rows if s.total_rows is not None else total_row_positions(s.row_labels)
    groups = s.groups if s.groups else []
    rels: list[Relation] = []
    for i, (part_rows, trow) in enumerate(segments(len(s.row_labels), totals, groups)):
        label = f"group {groups[part_rows[0]]!r}: " if groups and part_rows else ""
        key = segment_key(groups, part_rows, i)
        for col, j in col_at.items():
            if trow is not None and part_rows:
                terms = tuple((r, j, 1.0) for r in part_rows) + ((trow, j, -1.0),)
                rels.append(Relation(terms, 0.0, f"{label}total row of column {col!r}", "label"))
            margin = s.margins.get(col, {})
            if part_rows and key in margin:
                rhs = margin[key]
                rels.append(
                    Relation(
                        tuple((r, j, 1.0) for r in part_rows),
                        rhs,
                        f"{label}column {col!r} adds up to a total printed elsewhere in the report",
                    )
                )
    total_cols = [c for c in s.count_cols if is_total_label(c)]
    sums = dict(s.sums)
    for tc in total_cols:
        sums.setdefault(tc, [c for c in s.count_cols if c not in total_cols])
    for whole, parts in sums.items():
        if whole not in col_at or not all(p in col_at for p in parts):
            continue
        for r in range(len(s.row_labels)):
            terms = tuple((r, col_at[p], 1.0) for p in parts) + ((r, col_at[whole], -1.0),)
            rels.append(
                Relation(
                    terms,
                    0.0,
                    f"row {s.row_labels[r]!r}: {whole!r} = " + " + ".join(repr(p) for p in parts),
                    "label" if whole in total_cols else "stated",
                )
            )
    return rels + partition_equalities(s.groups, [col_at[c] for c in s.partition], s.count_cols)


def partition_equalities(
    groups: Sequence[str], cols: Sequence[int], names: Sequence[str]
) -> list[Relation]:
    """Groups that split one population add up alike: Σ first group − Σ other group = 0."""
    order = list(dict.fromkeys(groups))
    rows = {g: [i for i, x in enumerate(groups) if x == g] for g in order}
    rels = []
    for j in cols:
        for g in order[1:]:
            terms = tuple((i, j, 1.0) for i in rows[order[0]]) + tuple(
                (i, j, -1.0) for i in rows[g]
            )
            rels.append(
                Relation(
                    terms,
                    0.0,
                    f"column {names[j]!r}: group {g!r} adds up like group {order[0]!r}",
                    "partition",
                )
            )
    return rels


# --------------------------------------------------------------------- derived fractions
_FRACTION = re.compile(r"^\s*([+-]?)(\d*)\.(\d+)\s*(%?)\s*$")
_PERCENT_INT = re.compile(r"^\s*(\d+)\s*%\s*$")
# a decimal or a percentage inside longer text ("0.033 [0.000, 0.100]", "6.3%"); not a
# threshold in a rule ("> 0.5", "≤ 4.5") and not a band ("<0.1")
FRACTION_TOKEN = re.compile(r"(?<![\d.,<>≤≥])(?<![<>≤≥] )(\d*\.\d+(?:\s*%)?|\d+\s*%)(?![\d.])")


def fraction_interval(text: str) -> tuple[float, float] | None:
    """The interval a displayed number ("0.077", "6.3%", "12%", "4.98") stands for, or None."""
    t = str(text).replace(",", "").replace("％", "%")
    m = _FRACTION.match(t)
    if m:
        sign, whole, decimals, pct = m.groups()
        if sign == "-":
            return None
        value = float(f"{whole or '0'}.{decimals}")
        half = 0.5 * 10 ** -len(decimals)
        scale = 0.01 if pct else 1.0
        return max(0.0, (value - half) * scale), (value + half) * scale
    m = _PERCENT_INT.match(t)
    if m:
        value = float(m.group(1))
        return max(0.0, (value - 0.5) / 100), (value + 0.5) / 100
    return None


def pinned_count(
    fraction_text: str, n: float, threshold: int, shares_only: bool = True
) -> int | None:
    """A count of 1..T that ``fraction × n`` gives away, else None.

    The displayed figure stands for an interval (its rounding); times ``n`` that covers some
    whole numbers. If they all lie in 1..T and do not cover all of 1..T, the reader learns more
    than "<10" — the smallest such number is returned. ``shares_only``: only figures below 1
    (shares of ``n``) are tried, as a reader pairing figures at random would.
    """
    span = fraction_interval(fraction_text)
    if span is None or not n or n <= 0 or (shares_only and (span[0] >= 1 or n <= threshold)):
        return None
    lo, hi = span[0] * n, span[1] * n
    first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
    if first > last or first < 1 or last > threshold:
        return None
    if first <= 1 and last >= threshold:
        return None
    return first


def small_ratio(fraction_text: str, threshold: int) -> str | None:
    """ "3/7" when a displayed figure strictly between 0 and 1 is a ratio of two whole numbers
    up to T (within its rounding), else None: beside a hidden count it gives that count away
    (precision 0.429 over a hidden list length is 3 of 7)."""
    span = fraction_interval(fraction_text)
    if span is None or span[1] <= 0 or span[0] >= 1:
        return None
    for d in range(2, threshold + 1):
        for num in range(1, d):
            if span[0] - 1e-12 <= num / d <= span[1] + 1e-12 and math.gcd(num, d) == 1:
                return f"{num}/{d}"
    return None


def band_fractions(text: str, multiplier: float, rules: Rules) -> tuple[str, bool]:
    """Replace every figure in ``text`` whose ``figure × multiplier`` is a count of 1..T (or
    pins one) by its band ("<0.33"); returns the new text and whether anything changed."""
    if not rules.enabled or not multiplier:
        return text, False
    changed = False

    def repl(m: re.Match[str]) -> str:
        nonlocal changed
        token = m.group(1)
        span = fraction_interval(token)
        if span is None:
            return token
        mid = (span[0] + span[1]) / 2 * multiplier
        if (
            rules.is_small(round(mid))
            or pinned_count(token, multiplier, rules.threshold, shares_only=False) is not None
        ):
            changed = True
            bound = (rules.threshold + 1) / multiplier
            return f"<{bound * 100:.2g}%" if token.strip().endswith("%") else f"<{bound:.2g}"
        return token

    return FRACTION_TOKEN.sub(repl, str(text)), changed


# ---------------------------------------------------------------------------- words
_NUM = r"(\d{1,3}(?:[,，]\d{3})+|\d+)"
_START = r"(?<![\d.])(?<!\d[,，])"  # not the tail of a longer number
_END = r"(?!\d|\.\d|[,，]\d{3})"  # not the head of one
_WORD_AFTER = (
    r"(?:人(?!目|以上|以下|未満|あたり|当たり|分|前)|件(?!目)|名(?!前|称|簿)|世帯|例(?!え)|"
    r"児童|事例|children\b|child\b|cases?\b|people\b|persons?\b|households?\b|"
    r"records?\b|rows?\b|events?\b|hits?\b|positives?\b)"
)
_WORD_BEFORE = (
    r"(?:人数|件数|児童数|事例数|該当数|世帯数|要支援|\bn|\bN|\bevents|\bcases|\bchildren|"
    r"\bcount|\bhits|\bcaught|\bmissed|\btp|\bfp|\bfn|\bpositives)"
)
_RANGE = r"(?:[〜~～–\-−]|\s+to\s+|から)"
_COUNT_AFTER_RE = re.compile(
    rf"{_START}(?:{_NUM}\s*{_RANGE}\s*)?{_NUM}{_END}\s*"
    rf"{_WORD_AFTER}",
    re.I,
)
_COUNT_BEFORE_RE = re.compile(rf"{_WORD_BEFORE}\s*[=:：]\s*{_NUM}{_END}(?!\s*{_RANGE})")
# a result written as a setting: "high_positive": 1, "low_reviewed": 4 (a settings dump)
_COUNT_KEY_RE = re.compile(
    r"[A-Za-z_]*?(?:positives?|reviewed|events|caught|missed|hits|cases|children|selected|"
    rf"flagged|count)[\"']?\s*[:=]\s*{_NUM}{_END}"
)
_NOT_A_COUNT_BEFORE = re.compile(r"(?:第|上位|top\s?|rank\s?|No\.?\s?|#)$", re.I)
# a list length or a group size written beside a figure: "上位100人", "precision@100", "k = 30"
_SIZE_RE = re.compile(
    rf"(?:上位|top\s?|@|\bk\s*=\s*|\bn\s*=\s*){_NUM}|{_NUM}\s*"
    rf"(?:人|件|名|行|children|cases|people|child-years|児童年|rows)",
    re.I,
)


def _as_int(text: str) -> int:
    return int(unicodedata.normalize("NFKC", text).replace(",", ""))


def _count_matches(text: str, threshold: int) -> list[tuple[int, int, str]]:
    """(start, end, number text) of integers 1..T (or ranges inside 1..T) next to a count word."""
    hits = []
    for m in _COUNT_AFTER_RE.finditer(text):
        lo_text, hi_text = m.group(1), m.group(2)
        before = text[max(0, m.start() - 6) : m.start()]
        if _NOT_A_COUNT_BEFORE.search(before) or re.search(rf"{_RANGE}\s*$", before):
            continue
        hi = _as_int(hi_text)
        lo = _as_int(lo_text) if lo_text else hi
        if lo >= 1 and hi <= threshold and not (lo <= 1 and hi >= threshold):
            start = m.start(1) if lo_text else m.start(2)
            hits.append((start, m.end(2), m.group(0).strip()))
    for pattern in (_COUNT_BEFORE_RE, _COUNT_KEY_RE):
        for m in pattern.finditer(text):
            if 1 <= _as_int(m.group(1)) <= threshold:
                hits.append((m.start(1), m.end(1), m.group(0).strip()))
    return sorted(set(hits))


def count_words(text: str, threshold: int) -> list[str]:
    """Integers 1..T (or ranges inside 1..T) next to a count word ("4人", "n = 3", "5 cases")."""
    return [hit for _, _, hit in _count_matches(unicodedata.normalize("NFKC", text), threshold)]


def sizes_in(text: str, threshold: int) -> list[int]:
    """List lengths and group sizes (> T) written in ``text``: "上位100人", "@30", "54 children"."""
    norm = unicodedata.normalize("NFKC", text)
    found = [_as_int(next(g for g in m.groups() if g)) for m in _SIZE_RE.finditer(norm)]
    return sorted({n for n in found if n > threshold})


def _derived_matches(text: str, threshold: int) -> list[tuple[int, int, str, int]]:
    sizes = sizes_in(text, threshold)
    hits = []
    for m in FRACTION_TOKEN.finditer(text):
        for n in sizes:
            if pinned_count(m.group(1), n, threshold) is not None:
                hits.append((m.start(1), m.end(1), m.group(1).strip(), n))
                break
    return hits


def derived_in_text(text: str, threshold: int) -> list[str]:
    """Fractions in a sentence that, times a list length / group size in it, pin a count 1..T."""
    norm = unicodedata.normalize("NFKC", text)
    return [f"{tok} × {n:,}" for _, _, tok, n in _derived_matches(norm, threshold)]


def protect_text(text: str, rules: Rules) -> str:
    """A sentence (headline, caption) with small counts shown as "<10" and fractions that would
    pin one shown as a band: the text figures of a report pass through here."""
    if not rules.enabled:
        return text
    out = str(text)
    for start, end, _hit in sorted(_count_matches(out, rules.threshold), reverse=True):
        out = out[:start] + rules.small_label + out[end:]
    for start, end, tok, n in sorted(_derived_matches(out, rules.threshold), reverse=True):
        band = (rules.threshold + 1) / n
        out = (
            out[:start]
            + (f"<{band * 100:.2g}%" if tok.endswith("%") else f"<{band:.2g}")
            + out[end:]
        )
    return out


# -------------------------------------------------------------------------- text figures
def count_text(n: Any, rules: Rules) -> str:
    """A count for running text: "<10" when small, "—" when missing, else "1,234"."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "—"
    value = int(round(float(n)))
    return rules.small_label if rules.is_small(value) else f"{value:,}"


def share_band(denominator: float, rules: Rules) -> str:
    """The band shown instead of a share whose numerator is a count of 1..T: "<0.10"."""
    bound = (rules.threshold + 1) / float(denominator)
    return f"<{bound:.2g}" if bound < 1 else "<1"


def share_text(value: Any, denominator: Any, rules: Rules, digits: int = 3) -> str:
    """A share of ``denominator`` people (precision at k, a rate) for text or tables.

    When ``value × denominator`` is a count of 1..T — or the printed figure would pin one —
    the share is shown as a band ("<0.10"), never as the figure itself.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    v = float(value)
    text = f"{v:.{digits}f}"
    if not rules.enabled or denominator is None or not float(denominator):
        return text
    den = float(denominator)
    if rules.is_small(round(v * den)) or pinned_count(text, den, rules.threshold) is not None:
        return share_band(den, rules)
    return text


# ---------------------------------------------------------------------------- charts
def visible_counts(values: Any, rules: Rules) -> tuple[np.ndarray, np.ndarray]:
    """Bar heights to draw and which bars stand for a hidden count of 1..T.

    Hidden bars are drawn at height T+1 ("somewhere below 10"), hatched, with no value, so the
    bar neither shows nor bounds the count more tightly than the "<10" label does.
    """
    v = np.asarray(values, dtype=float)
    small = small_mask(v, rules)
    return np.where(small, float(rules.threshold + 1), v), small


def precision_curve_from(curve: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """A precision-vs-k curve (columns k, precision[, hits]) starting where hits >= T+1.

    Hits at k are cumulative: every point before the first k with T+1 hits would show a count
    of 1..T (precision 0.40 at k = 10 is 4 children), so the curve starts after them.
    """
    out = curve.copy()
    hits = out["hits"] if "hits" in out else (out["precision"] * out["k"]).round()
    if not rules.enabled:
        return out
    keep = (hits >= rules.threshold + 1).to_numpy()
    return out[keep].reset_index(drop=True)


def pr_curve_from(y: Any, score: Any, rules: Rules) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall points of a PR curve after the first T+1 true cases.

    The start of an ordinary PR curve tells whether the top-ranked child is a true case
    (precision 1.0 at the first point); points with fewer than T+1 true positives are dropped.
    Returns (precision, recall) at the thresholds where the ranking changes.
    """
    y = np.asarray(y, dtype=float)
    s = np.asarray(score, dtype=float)
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    tp = np.cumsum(ys)
    n = np.arange(1, len(ys) + 1)
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    tp, n = tp[last_of_tie], n[last_of_tie]
    total = max(float(y.sum()), 1.0)
    keep = tp >= (rules.threshold + 1 if rules.enabled else 1)
    return tp[keep] / n[keep], tp[keep] / total


def hidden_points_note(rules: Rules) -> str:
    """The caption line every chart with hidden points carries."""
    t = rules.threshold
    return f"1〜{t}人に当たる点・棒は非表示または斜線（points or bars for counts 1–{t} hidden or hatched）"


# ---------------------------------------------------------------- relations in the data
def infer_sums(
    values: np.ndarray, names: Sequence[str], max_terms: int = 4, min_rows: int = 2
) -> dict[str, list[str]]:
    """Columns that equal the sum of 2..max_terms others in every row where all are known.

    What a reader with a calculator finds by trying ("rows in = kept + rejected + duplicates").
    A relation needs ``min_rows`` rows where its total is not zero, and every part must be
    non-zero somewhere, so columns of zeros do not make relations by themselves.
    """
    from itertools import combinations

    out: dict[str, list[str]] = {}
    n_cols = len(names)
    if values.shape[0] < min_rows or n_cols < 3:
        return out
    nonzero = np.nan_to_num(values) != 0
    for j in range(n_cols):
        total = values[:, j]
        others = [k for k in range(n_cols) if k != j and nonzero[:, k].any()]
        for size in range(2, min(max_terms, len(others)) + 1):
            for parts in combinations(others, size):
                block = values[:, list(parts)]
                rows = ~np.isnan(total) & ~np.isnan(block).any(axis=1)
                if (rows & (total != 0)).sum() < min_rows:
                    continue
                if np.allclose(block[rows].sum(axis=1), total[rows]):
                    out.setdefault(names[j], [names[k] for k in parts])
                    break
            if names[j] in out:
                break
    return out


def infer_partition(
    df: pd.DataFrame, label_cols: Sequence[str], values: np.ndarray, counts: Sequence[str]
) -> tuple[list[str], list[str]]:
    """A label column whose groups each add up to the same total (fairness by sex, by
    nationality, ...: every attribute splits the same children), and the count columns for
    which they do. A reader who sees one group in full knows the total of every other group.
    """
    for col in label_cols:
        keys = df[col].astype(str)
        n_groups = keys.nunique()
        if n_groups < 2 or n_groups == len(df):
            continue
        sums = (
            pd.DataFrame(np.nan_to_num(values), columns=list(counts))
            .groupby(keys.to_numpy(), sort=False)
            .sum()
        )
        same = [c for c in counts if sums[c].nunique() == 1 and sums[c].iloc[0] > 0]
        if same:
            return [col], same
    return [], []


# ------------------------------------------------------------------------------ tables
Source = str | int | float  # a count column of the table, or a count printed elsewhere


@dataclass
class Protected:
    """A table after disclosure control: what to display, and what the page says about it.

    ``meta``: the structure written into the page (data-* attributes) so that the scan can
    attack the table with the same relations the suppression protected it against.
    """

    frame: pd.DataFrame
    status: pd.DataFrame  # per count column: VISIBLE / PRIMARY / SECONDARY / UNKNOWN
    structure: Structure
    meta: dict[str, Any]
    labels_used: set[str] = field(default_factory=set)
    multipliers: dict[str, list[float | None]] = field(default_factory=dict)


def count_matrix(df: pd.DataFrame, counts: Sequence[str], where: str) -> np.ndarray:
    """The count columns as floats (NaN = missing); text, negatives and fractions rejected."""
    out = np.empty((len(df), len(counts)))
    for j, col in enumerate(counts):
        raw = df[col]
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        bad = values.isna() & raw.notna()
        wrong = (values < 0) | (values.notna() & (values != np.floor(values)))
        for mask, why in ((bad, "is not a count"), (wrong, "is not a non-negative whole number")):
            if mask.any():
                row = int(np.flatnonzero(mask.to_numpy())[0])
                raise MimamoriError(f"{where}: row {row}, column {col!r}: {raw.iloc[row]!r} {why}")
        out[:, j] = values.to_numpy()
    return out


def label_columns(df: pd.DataFrame, exclude: Iterable[str]) -> list[str]:
    """Columns that label rows (text), as a reader of the page would take them."""
    skip = set(exclude)
    return [c for c in df.columns if c not in skip and not pd.api.types.is_numeric_dtype(df[c])]


def row_labels(df: pd.DataFrame, exclude: Iterable[str]) -> list[str]:
    cols = label_columns(df, exclude)
    if not cols:
        return [str(i) for i in range(len(df))]
    return [" / ".join(str(v) for v in row) for row in df[cols].itertuples(index=False)]


def _check_columns(df: pd.DataFrame, where: str, *groups: Iterable[Any]) -> None:
    for group in groups:
        for col in group:
            if isinstance(col, str) and col not in df.columns:
                raise MimamoriError(
                    f"{where}: column {col!r} not in table (columns: {list(df.columns)})"
                )


Margin = str | Mapping[str, float]  # "known, whatever it is" or {part: the value printed}


def _structure(
    df: pd.DataFrame,
    counts: list[str],
    exclude: list[str],
    sums: dict[str, list[str]],
    group_by: list[str],
    margins: Mapping[str, Margin],
    values: np.ndarray,
    where: str,
) -> Structure:
    labels = row_labels(df, [*counts, *exclude])
    groups = df[group_by].astype(str).agg(" / ".join, axis=1).tolist() if group_by else []
    s = Structure(list(df.columns), counts, labels, groups, sums)
    parts = segments(len(df), total_row_positions(labels), groups)
    for col, spec in margins.items():  # totals a reader knows from elsewhere
        j = counts.index(col)
        known: dict[str, float | None] = {}
        for i, (rows, _) in enumerate(parts):
            part, total = segment_key(groups, rows, i), float(np.nansum(values[rows, j]))
            if isinstance(spec, str):
                known[part] = total
            elif part in spec:
                if abs(spec[part] - total) > 1e-9:
                    raise MimamoriError(
                        f"{where}: column {col!r} (part {part!r}) adds up to "
                        f"{total:g}, but the report printed {spec[part]:g} for "
                        "it; the declared margin is wrong"
                    )
                known[part] = total
        if known:
            s.margins[col] = known
    return s


def _true_relations(s: Structure, values: np.ndarray, where: str) -> list[Relation]:
    """Declared relations must hold (else an error); rows labelled as totals that do not add
    up are not totals and are dropped."""
    rels = []
    for rel in relations_for(s):
        try:
            check_relations(values, [rel], where)
        except MimamoriError:
            if rel.kind == "label":
                continue
            raise
        rels.append(rel)
    return rels


def protect_table(
    df: pd.DataFrame,
    counts: Sequence[str],
    rules: Rules,
    *,
    derived: Mapping[str, Source | Sequence[Source]] | None = None,
    shares: Mapping[str, str | float] | None = None,
    fixed: Iterable[str] = (),
    sums: Mapping[str, Sequence[str]] | None = None,
    group_by: Sequence[str] | None = None,
    margins: Mapping[str, Margin] | None = None,
    group_derived: Mapping[str, Sequence[str]] | None = None,
    where: str = "table",
) -> Protected:
    """Primary, secondary and derived suppression of one table (returns a display copy).

    ``counts``: count columns. ``derived``: {column: what it is computed from} — count columns
    of this table or counts printed elsewhere; hidden ("*") in every row where one of them is
    hidden or small. ``shares``: {column: n} — the figure times n is a count (precision × list
    length, a mean of a yes/no item × group size; n a number or a count column); banded where
    that count is 1..T (applied to the displayed text by `guard_texts`). ``fixed``: figures not
    computed from counts (settings, test statistics). ``sums``: {column: columns adding up to
    it in each row} (relations that hold in the data are also found by `infer_sums`).
    ``group_by``: columns splitting the rows into parts, each with its own totals.
    ``margins``: {count column: totals known from elsewhere in the report}: {part: value}
    as printed (parts not listed are unknown), or any string for "known in every part".
    Total rows are read from their labels (合計 / total).
    ``group_derived``: {column: counts} for figures compared across the rows of a part (a
    ratio to the reference group): hidden in the whole part when one of those counts is
    hidden in any of its rows.
    """
    counts = list(counts)
    derived_n = {
        k: [v] if isinstance(v, str | int | float) else list(v) for k, v in (derived or {}).items()
    }
    shares = dict(shares or {})
    margins = dict(margins or {})
    group_cols = list(group_by or [])
    sums_d = {k: list(v) for k, v in (sums or {}).items()}
    _check_columns(
        df,
        where,
        counts,
        derived_n,
        shares,
        fixed,
        group_cols,
        sums_d,
        margins,
        *sums_d.values(),
        *derived_n.values(),
        [v for v in shares.values() if isinstance(v, str)],
    )
    _check_derived_sources(
        [*derived_n.items(), *(group_derived or {}).items()], counts, shares, where
    )
    values = count_matrix(df, counts, where)
    found = infer_sums(values, counts)
    all_sums = {**found, **sums_d}
    same: list[str] = []
    if not group_cols:  # rows that split one population several ways: each way adds up to it
        exclude = [*counts, *derived_n, *shares, *fixed]
        group_cols, same = infer_partition(df, label_columns(df, exclude), values, counts)
    s = _structure(
        df, counts, [*derived_n, *shares, *fixed], all_sums, group_cols, margins, values, where
    )
    s.partition = same
    status = np.where(np.isnan(values), UNKNOWN, VISIBLE).astype(np.int8)
    if rules.enabled:
        status[(values >= 1) & (values <= rules.threshold)] = PRIMARY
    grid = Grid(values, status, s.row_labels, counts)
    if rules.enabled and rules.secondary:
        grid = protect(
            grid, _true_relations(s, values, where), rules.threshold, rules.protection, where
        )
    by_part = {k: list(v) for k, v in (group_derived or {}).items()}
    labels = label_columns(df, [*counts, *derived_n, *shares, *fixed])
    meta = {
        "counts": counts,
        "sums": all_sums,
        "group-by": group_cols,
        "partition": same,
        # the row's name (a text first column) and its group are labels, not figures
        "labels": [*[c for c in labels[:1] if c == df.columns[0]], *group_cols],
        "derived": sorted({*derived_n, *by_part}),
        "shares": sorted(shares),
        "fixed": sorted(fixed),
        "derived_sources": {k: [x for x in v if isinstance(x, str)] for k, v in derived_n.items()},
    }
    out = _display(df, counts, derived_n, grid, s, rules, meta)
    _hide_in_parts(out, by_part, s)
    _set_multipliers(out, df, shares)
    return out


def _set_multipliers(out: Protected, df: pd.DataFrame, shares: dict[str, str | float]) -> None:
    """Per row, the n that turns each share column into a count (banded by `guard_texts`)."""
    for col, spec in shares.items():
        mult = (
            pd.to_numeric(df[spec], errors="coerce")
            if isinstance(spec, str)
            else pd.Series(float(spec), index=df.index)
        )
        out.multipliers[col] = [None if pd.isna(v) else float(v) for v in mult]


def _check_derived_sources(
    items: Sequence[tuple[str, Sequence[Source]]],
    counts: list[str],
    shares: dict[str, str | float],
    where: str,
) -> None:
    for col, sources in items:
        if not {x for x in sources if isinstance(x, str)} <= set(counts) | set(shares):
            raise MimamoriError(
                f"{where}: derived column {col!r} refers to {sources}, which "
                "are not all listed in counts or shares"
            )


def _display(
    df: pd.DataFrame,
    counts: list[str],
    derived: dict[str, list[Source]],
    grid: Grid,
    s: Structure,
    rules: Rules,
    meta: dict[str, Any],
) -> Protected:
    out = df.copy()
    used: set[str] = set()
    status = pd.DataFrame(grid.status, columns=counts, index=df.index)
    for j, col in enumerate(counts):
        shown = pd.Series(
            [pd.NA if np.isnan(v) else int(v) for v in grid.values[:, j]],
            index=df.index,
            dtype=object,
        )
        for code, text in ((PRIMARY, rules.small_label), (SECONDARY, SECONDARY_LABEL)):
            mask = grid.status[:, j] == code
            if mask.any():
                shown[mask] = text
                used.add(text)
        out[col] = shown
    for col, sources in derived.items():
        cols = [x for x in sources if isinstance(x, str)]
        mask = (
            status[cols].isin([PRIMARY, SECONDARY]).any(axis=1)
            if cols
            else pd.Series(False, index=df.index)
        )
        if any(rules.is_small(x) for x in sources if not isinstance(x, str)):
            mask[:] = True
        if mask.any():
            column = out[col].astype(object)
            column[mask] = DERIVED_LABEL
            out[col] = column
            used.add(DERIVED_LABEL)
    return Protected(out, status, s, meta, used)


def _hide_in_parts(out: Protected, group_derived: dict[str, list[str]], s: Structure) -> None:
    """Hide ``group_derived`` columns in every row of a part where one of their counts is
    hidden in any row."""
    if not group_derived:
        return
    keys = pd.Series(s.groups if s.groups else ["all"] * len(out.frame), index=out.frame.index)
    for col, sources in group_derived.items():
        cols = [c for c in sources if c in out.status.columns]
        hidden_row = out.status[cols].isin([PRIMARY, SECONDARY]).any(axis=1)
        mask = hidden_row.groupby(keys).transform("any").astype(bool)
        if mask.any():
            column = out.frame[col].astype(object)
            column[mask] = DERIVED_LABEL
            out.frame[col] = column
            out.labels_used.add(DERIVED_LABEL)


def guard_texts(
    texts: list[list[str]],
    columns: Sequence[str],
    protected: Protected,
    rules: Rules,
    sizes: Sequence[float] = (),
) -> tuple[list[list[str]], set[str]]:
    """Last look at the displayed text of a table, row by row.

    Declared ``shares`` are banded where they stand for a count of 1..T (or pin one). Any other
    figure that, times a count shown in the same row or a list length / group size in the
    caption (``sizes``), pins a count of 1..T is hidden ("*") — whether or not it was declared
    as derived: a mean of a yes/no item × its group size, precision × list length. A figure
    not declared at all is hidden in every row with a hidden count (`_rows_with_hidden_counts`).
    """
    if not rules.enabled:
        return texts, set()
    meta = protected.meta
    counts = set(meta["counts"])
    skip = counts | set(meta["derived"]) | set(meta["fixed"]) | set(meta.get("labels", ()))
    share_cols = protected.multipliers
    on_shares = {
        c: [x for x in src if x in share_cols] for c, src in meta.get("derived_sources", {}).items()
    }
    used: set[str] = set()
    out = []
    affected = _rows_with_hidden_counts(protected)
    for r, row in enumerate(texts):
        row = list(row)
        shown = [
            float(protected.frame[c].iloc[r])
            for c in counts
            if isinstance(protected.frame[c].iloc[r], int | np.integer)
        ]
        banded: set[str] = set()
        for j, col in enumerate(columns):
            if col in share_cols:
                mult = share_cols[col][r]
                if mult is not None and rules.is_small(mult):
                    row[j], changed = DERIVED_LABEL, True
                else:
                    row[j], changed = band_fractions(row[j], mult or 0.0, rules)
                if changed:
                    banded.add(col)
                    used.add("band" if row[j] != DERIVED_LABEL else DERIVED_LABEL)
            elif col not in skip and (
                _pins_any(row[j], [*shown, *sizes], rules)
                or (affected[r] and any(FRACTION_TOKEN.finditer(str(row[j]))))
            ):
                row[j] = DERIVED_LABEL
                used.add(DERIVED_LABEL)
        for j, col in enumerate(columns):  # a ratio of a banded share would give it back
            if set(on_shares.get(col, ())) & banded:
                row[j] = DERIVED_LABEL
                used.add(DERIVED_LABEL)
        out.append(row)
    return out, used


def _rows_with_hidden_counts(protected: Protected) -> list[bool]:
    """Rows holding a hidden count — or, in a table whose groups split one population, rows
    of a group holding one (a ratio to the reference group uses the other rows' counts).

    A figure not declared as derived, a share or fixed may be made from any count of its row,
    so it is hidden in these rows: the conservative reading of "hidden with its counts".
    """
    status = protected.status
    hidden = (
        status.isin([PRIMARY, SECONDARY]).any(axis=1)
        if len(status.columns)
        else pd.Series(False, index=status.index)
    )
    groups = protected.structure.groups
    if groups and protected.meta.get("partition"):
        hidden = hidden.groupby(np.asarray(groups)).transform("any")
    return [bool(x) for x in hidden]


def _pins_any(text: str, ns: Sequence[float], rules: Rules) -> bool:
    for m in FRACTION_TOKEN.finditer(str(text)):
        if any(pinned_count(m.group(1), n, rules.threshold) is not None for n in ns):
            return True
    return False


def suppression_note(rules: Rules, used: Iterable[str] | None = None) -> str:
    """The legend under a table: what each label means (only those in ``used`` if given)."""
    t = rules.threshold
    parts = {
        rules.small_label: f"1〜{t}件（人）は秘匿（counts 1–{t} hidden）",
        SECONDARY_LABEL: f"差し引きで秘匿値が分からないよう秘匿した{t + 1}以上の値（a count of "
        f"{t + 1} or more hidden so that a hidden count cannot be worked out "
        "from totals）",
        DERIVED_LABEL: "秘匿した件数から計算される値のため非表示（figure computed from a hidden "
        "count）",
    }
    used_set = set(parts) if used is None else set(used)
    shown = [f"{k}: {v}" for k, v in parts.items() if k in used_set]
    return "; ".join(shown) if shown else f"1〜{t}件の値はありません（no counts of 1–{t}）"
