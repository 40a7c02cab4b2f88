"""Cell normalisation shared by the readers and the validator.

Exports carry full-width digits and letters (１２３, ＡＢ), full-width spaces, line breaks
inside cells and thousands separators. These are spellings, not different values, so they
are normalised; anything that is still not a valid value afterwards is reported, never
guessed. Every function here works on whole pandas columns.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Full-width ASCII (U+FF01..U+FF5E) → ASCII, ideographic space (U+3000) → space.
_WIDTH_TABLE = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_WIDTH_TABLE[0x3000] = 0x20
_LINEBREAKS = r"\r\n|\r|\n|\u2028|\u2029|\x0b|\x0c|\x85"


def to_halfwidth(text: str) -> str:
    """Full-width ASCII letters, digits, symbols and spaces → their ASCII forms; the rest kept."""
    return text.translate(_WIDTH_TABLE)


def normalize_cells(series: pd.Series) -> pd.Series:
    """Width-normalise, turn in-cell line breaks into spaces, strip; blank → <NA>.

    Internal spaces are kept (a code with a space inside stays invalid rather than being
    silently repaired).
    """
    s = pd.Series(series, copy=False).astype("string")
    s = s.str.translate(_WIDTH_TABLE)
    s = s.str.replace(_LINEBREAKS, " ", regex=True).str.strip()
    return s.mask(s == "")


# What ``normalize_cells`` changes, as one RE2 pattern (pyarrow): a blank, a full-width
# character or ideographic space anywhere, a line break anywhere, whitespace (``str.isspace``)
# at either end. A cell without any of these is returned as it is.
_SPACES = (
    r"\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
_CHANGED_RE2 = (
    r"^$|[\x{ff01}-\x{ff5e}\x{3000}\r\n\x{2028}\x{2029}\x0b\x0c\x{85}]"
    rf"|^[{_SPACES}]|[{_SPACES}]$"
)


def cells_changed_by_normalize(cells: pa.Array) -> np.ndarray:
    """Per text (no nulls): whether ``normalize_cells`` would change it; one pyarrow pass."""
    hit = pc.match_substring_regex(cells, _CHANGED_RE2)
    return hit.to_numpy(zero_copy_only=False).astype(bool)


# What else ``normalize_cells`` changes besides an ideographic space inside the text
_NOT_INNER_SPACE_RE2 = (
    r"^$|[\x{ff01}-\x{ff5e}\r\n\x{2028}\x{2029}\x0b\x0c\x{85}]"
    rf"|^[{_SPACES}]|[{_SPACES}]$"
)


def normalize_changed(cells: pa.Array, changed: np.ndarray) -> np.ndarray:
    """``normalize_cells`` of the ``changed`` texts (object array, None for a blank). A text
    whose only change is an ideographic space inside it (a name: 山田　太郎) is handled in one
    pyarrow pass; the others one by one."""
    part = cells.filter(pa.array(changed))
    inner = ~pc.match_substring_regex(part, _NOT_INNER_SPACE_RE2).to_numpy(zero_copy_only=False)
    out = np.empty(len(part), dtype=object)
    if inner.any():
        spaced = pc.replace_substring(part.filter(pa.array(inner)), "\u3000", " ")
        out[inner] = spaced.to_numpy(zero_copy_only=False)
    if not inner.all():
        rest = pd.Series(part.filter(pa.array(~inner)).to_numpy(zero_copy_only=False))
        out[~inner] = normalize_cells(rest).to_numpy(object, na_value=None)
    return out


def nfkc(series: pd.Series) -> pd.Series:
    """``series.astype("string").str.normalize("NFKC")``: texts of ASCII only (codes, dates,
    numbers: nearly all) are NFKC already and are kept as they are (one pyarrow pass); only
    the others are normalised one by one."""
    s = pd.Series(series, copy=False).astype("string")
    if not len(s):
        return s.str.normalize("NFKC")
    cells = pa.array(s.to_numpy(object), pa.string(), from_pandas=True)
    other = ~pc.fill_null(pc.string_is_ascii(cells), True).to_numpy(zero_copy_only=False)
    if not other.any():
        return s.copy()
    out = s.copy()
    out[other] = s[other].str.normalize("NFKC")
    return out


def normalize_key(text: str) -> str:
    """Matching form of a header or enum spelling: NFKC, no whitespace, case-folded."""
    t = unicodedata.normalize("NFKC", str(text))
    return "".join(t.split()).casefold()


def normalize_keys(series: pd.Series) -> pd.Series:
    """Vectorised ``normalize_key``."""
    s = pd.Series(series, copy=False).astype("string").str.normalize("NFKC")
    return s.str.replace(r"\s+", "", regex=True).str.casefold()


# 1ヶ月 / 1ケ月 / 1カ月 / 1ヵ月 / 1箇月 are one spelling of 1か月; 3〜4 / 3～4 / 3ー4 of 3-4
_MONTH_KA = r"(?<=\d)[ヶケカヵ箇个](?=月)"
_RANGE_DASH = r"(?<=\d)[~〜～‐‑–—―ー－-](?=\d)"


def spelling_key(text: str) -> str:
    """Matching form of an enum spelling: ``normalize_key`` plus the か / range-dash folds."""
    return normalize_spellings(pd.Series([text], dtype="string")).iloc[0]


def normalize_spellings(series: pd.Series) -> pd.Series:
    """Vectorised ``spelling_key``."""
    s = normalize_keys(series)
    return s.str.replace(_MONTH_KA, "か", regex=True).str.replace(_RANGE_DASH, "-", regex=True)


_GROUPED = r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$"
_PLAIN = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$"


_CURRENCY = r"^[¥\\$]\s*|\s*円$"


def parse_numbers(
    series: pd.Series, integer: bool = False, unit: str | None = None
) -> tuple[pd.Series, pd.Series]:
    """Text → float64 values and an error reason per cell (None when fine or blank).

    Accepts full-width digits, correctly grouped thousands separators (1,234,567 /
    １，２３４), a currency sign or 円 ("10,000円", "¥10,000") and the field's own ``unit``
    written after the number ("14.2kg"); ``0`` stays zero, blank stays missing. With
    ``integer=True`` a fractional value is an error (``12.0`` is accepted as 12).
    """
    s = nfkc(normalize_cells(series))
    s = s.str.replace(_CURRENCY, "", regex=True)
    if unit:
        unit_re = re.escape(unicodedata.normalize("NFKC", unit))
        s = s.str.replace(rf"(?<=\d)\s*{unit_re}$", "", regex=True)
    grouped = s.str.match(_GROUPED).fillna(False).astype(bool)
    s = s.where(~grouped, s.str.replace(",", "", regex=False))
    plain = s.str.match(_PLAIN).fillna(False).astype(bool)
    values = pd.to_numeric(s.where(plain), errors="coerce").astype("float64")
    errors = pd.Series(None, index=s.index, dtype=object)
    present = s.notna().to_numpy()
    bad = present & ~plain.to_numpy()
    errors[bad] = "not a number"
    if integer:
        frac = present & plain.to_numpy() & (np.floor(values.to_numpy()) != values.to_numpy())
        errors[frac] = "not a whole number"
        values[frac] = np.nan
    values[bad] = np.nan
    return values, errors.astype(object).where(errors.notna(), None)
