"""Reviewer workbooks out, filled verdict sheets back in.

Reviewers (schools) get one workbook each with pseudonym, grade and the reference's questions,
in a shuffled order and with no score, arm, rank or reason, so the sheet cannot tell them which
children the system ranked high. Filled sheets come back as xlsx or CSV and are validated cell
by cell: a problem names file, sheet, row and cell, and nothing is dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from helpers import MimamoriError
from helpers.io import save_workbook

YES, NO = "有", "無"
# (key, header) in sheet order; reviewers see only these.
REVIEWER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("no", "番号"),
    ("pseudonym", "仮名ID"),
    ("school_code", "学校"),
    ("grade", "学年"),
    ("family_concern", "家庭状況で気になること（有/無）"),
    ("family_concern_detail", "家庭状況で気になることの内容"),
    ("child_complaint", "本人からの訴え（有/無）"),
    ("child_complaint_detail", "本人からの訴えの内容"),
    ("other", "その他"),
)
ANSWER_COLUMNS = ("family_concern", "child_complaint")
FREE_TEXT_COLUMNS = ("family_concern_detail", "child_complaint_detail", "other")
REQUIRED_COLUMNS = ("pseudonym", *ANSWER_COLUMNS)
HEADER_OF = dict(REVIEWER_COLUMNS)
INSTRUCTION_SHEET = "記入方法"
INSTRUCTIONS = (
    "この名簿の児童について、学校で把握している様子を記入してください。",
    "「家庭状況で気になること」「本人からの訴え」は 有 または 無 を選択してください（空欄不可）。",
    "有 の場合は内容欄に具体的な様子を記入してください。その他の気付きは「その他」欄へ。",
    "名簿の順番に意味はありません。仮名IDは変更しないでください。",
    "記入後、このファイルをそのまま返送してください。",
)
# Staff copy: the capacity list with its scores and reasons (pseudonyms only).
STAFF_COLUMNS: tuple[tuple[str, str], ...] = (
    ("list_rank", "順位"),
    ("child_id", "仮名ID"),
    ("school_code", "学校"),
    ("grade", "学年"),
    ("age", "年齢"),
    ("score", "スコア"),
    ("probability", "推定確率"),
    ("risk_ratio", "リスク比"),
    ("reason_1", "理由1"),
    ("reason_2", "理由2"),
    ("reason_3", "理由3"),
)
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")


def sheet_title(name: str) -> str:
    """An Excel-safe sheet name (<= 31 characters, no []:*?/\\)."""
    return _BAD_SHEET_CHARS.sub("_", str(name))[:31] or "sheet"


def _style_header(ws, n_cols: int) -> None:
    fill = PatternFill("solid", fgColor="DDEBF7")
    for col in range(1, n_cols + 1):
        cell = ws.cell(row=1, column=col)
        cell.font = Font(bold=True)
        cell.fill = fill
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    ws.freeze_panes = "A2"


def grade_text(grade: pd.Series) -> pd.Series:
    """Grades as reviewers write them ("3", not "3.0"); blank when unknown."""
    numeric = pd.to_numeric(grade, errors="coerce")
    if numeric.notna().sum() == grade.notna().sum() and (numeric.dropna() % 1 == 0).all():
        return numeric.astype("Int64").astype("string").fillna("")
    return grade.astype("string").fillna("")


def reviewer_frame(sample: pd.DataFrame) -> pd.DataFrame:
    """The reviewer-visible columns of (part of) a blinded sample, keeping its (shuffled) order.

    Only pseudonym, school and grade are taken from the sample; the answer columns start blank.
    """
    out = pd.DataFrame(
        {
            "no": range(1, len(sample) + 1),
            "pseudonym": sample["child_id"].astype(str).to_numpy(),
            "school_code": sample["school_code"].astype("string").fillna("").to_numpy(),
            "grade": grade_text(sample["grade"]).to_numpy(),
        }
    )
    for key in (*ANSWER_COLUMNS, *FREE_TEXT_COLUMNS):
        out[key] = ""
    return out


def write_reviewer_workbook(frame: pd.DataFrame, path: str | Path, school: str) -> Path:
    """One school's workbook: a sheet of children with 有/無 dropdowns, and an instruction sheet.

    ``frame`` has the ``REVIEWER_COLUMNS`` keys (answers blank, or filled by the simulator).
    """
    extra = set(frame.columns) - set(HEADER_OF)
    if extra:  # blinding guard: nothing but the reviewer columns may reach a school
        raise MimamoriError(
            f"review: reviewer sheet for {school} would carry columns {sorted(extra)}"
        )
    wb = Workbook()
    ws = wb.active
    ws.title = sheet_title(school)
    keys = [k for k, _ in REVIEWER_COLUMNS]
    ws.append([HEADER_OF[k] for k in keys])
    for row in frame.loc[:, keys].itertuples(index=False):
        ws.append([None if (isinstance(v, str) and v == "") else v for v in row])
    _style_header(ws, len(keys))
    widths = {
        "no": 6,
        "pseudonym": 20,
        "school_code": 10,
        "grade": 6,
        "family_concern": 16,
        "family_concern_detail": 36,
        "child_complaint": 14,
        "child_complaint_detail": 36,
        "other": 36,
    }
    for i, key in enumerate(keys, start=1):
        ws.column_dimensions[get_column_letter(i)].width = widths[key]
    last = max(len(frame) + 1, 2)
    dv = DataValidation(
        type="list",
        formula1=f'"{YES},{NO}"',
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="入力エラー",
        error=f"{YES} または {NO} を選択してください",
    )
    ws.add_data_validation(dv)
    for key in ANSWER_COLUMNS:
        letter = get_column_letter(keys.index(key) + 1)
        dv.add(f"{letter}2:{letter}{last}")
    info = wb.create_sheet(INSTRUCTION_SHEET)
    for line in INSTRUCTIONS:
        info.append([line])
    info.column_dimensions["A"].width = 100
    return save_workbook(wb, path)


def write_staff_workbook(capacity_list: pd.DataFrame, path: str | Path) -> Path:
    """The staff copy of the capacity list: ranks, scores and reason codes, pseudonyms only."""
    wb = Workbook()
    ws = wb.active
    ws.title = "職員用リスト"
    cols = [(k, h) for k, h in STAFF_COLUMNS if k in capacity_list.columns]
    ws.append([h for _, h in cols])
    for row in capacity_list.loc[:, [k for k, _ in cols]].itertuples(index=False):
        ws.append([None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in row])
    _style_header(ws, len(cols))
    note = wb.create_sheet("注意")
    note.append(["スコアは支援の必要性を判断する人の補助であり、判断そのものではありません。"])
    note.append(["(The score supports and never replaces a human assessment.)"])
    return save_workbook(wb, path)


# ------------------------------------------------------------------------------ reading back
@dataclass
class VerdictSheet:
    """One returned sheet: its cells by key, and where each key's column sits in the sheet."""

    file: str
    sheet: str
    frame: pd.DataFrame  # one row per non-blank data row; column ``_row`` = sheet row
    letters: dict[str, str]  # key -> column letter in this sheet


def _header_keys(header: list, where: str) -> dict[str, int]:
    """Map this sheet's header cells to column keys (Japanese header or the key itself)."""
    lookup = {h: k for k, h in REVIEWER_COLUMNS} | {k: k for k, _ in REVIEWER_COLUMNS}
    positions: dict[str, int] = {}
    for i, cell in enumerate(header):
        key = lookup.get(_text(cell))
        if key and key not in positions:
            positions[key] = i
    missing = [HEADER_OF[k] for k in REQUIRED_COLUMNS if k not in positions]
    if missing:
        raise MimamoriError(
            f"{where}: row 1: missing column(s) {missing} (the header row was changed?)"
        )
    return positions


def _text(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _sheet_from_rows(rows: list[list], file: str, sheet: str) -> VerdictSheet | None:
    where = f"{file}: sheet {sheet}"
    if not rows or all(_text(c) == "" for c in rows[0]):
        return None
    positions = _header_keys(list(rows[0]), where)
    records: list[dict[str, object]] = []
    for offset, row in enumerate(rows[1:], start=2):
        cells = {k: _text(row[i]) if i < len(row) else "" for k, i in positions.items()}
        if (
            all(v == "" for k, v in cells.items() if k not in ("no", "school_code", "grade"))
            and cells.get("pseudonym", "") == ""
        ):
            continue  # a trailing empty (or numbered but unused) row
        records.append({**cells, "_row": offset})
    frame = pd.DataFrame(records, columns=[*positions, "_row"])
    letters = {k: get_column_letter(i + 1) for k, i in positions.items()}
    return VerdictSheet(file, sheet, frame, letters)


def read_verdict_file(path: str | Path) -> list[VerdictSheet]:
    """Every data sheet of one returned file (xlsx: all sheets except the instructions; CSV: one)."""
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a damaged file
            raise MimamoriError(
                f"{path.name}: cannot be read as an Excel workbook ({exc})"
            ) from None
        sheets = []
        for ws in wb.worksheets:
            if ws.title == INSTRUCTION_SHEET:
                continue
            parsed = _sheet_from_rows(
                [list(r) for r in ws.iter_rows(values_only=True)], path.name, ws.title
            )
            if parsed is not None:
                sheets.append(parsed)
        wb.close()
        return sheets
    if path.suffix.lower() == ".csv":
        for encoding in ("utf-8-sig", "cp932"):
            try:
                raw = pd.read_csv(
                    path, dtype=str, keep_default_na=False, header=None, encoding=encoding
                )
                break
            except UnicodeDecodeError:
                continue
        else:
            raise MimamoriError(f"{path.name}: not UTF-8 or CP932 text")
        parsed = _sheet_from_rows(raw.values.tolist(), path.name, "csv")
        return [parsed] if parsed is not None else []
    raise MimamoriError(f"{path.name}: returned verdicts must be .xlsx or .csv")


def validate_verdicts(
    sheets: list[VerdictSheet], known_pseudonyms: set[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Check every row; return one clean row per child and the list of reported duplicates.

    Errors (all collected, then raised together): unknown pseudonym, a missing answer, an answer
    other than 有/無, rows with answers but no pseudonym, and the same child answered differently
    twice. An identical repeat of a row is kept once and reported.
    """
    problems: list[str] = []
    rows: list[dict] = []
    for s in sheets:
        for rec in s.frame.to_dict("records"):
            r = rec["_row"]
            where = f"{s.file}: sheet {s.sheet}, row {r}"
            pseudonym = rec["pseudonym"]
            if pseudonym == "":
                problems.append(
                    f"{where}, cell {s.letters['pseudonym']}{r}: answers given but {HEADER_OF['pseudonym']} is blank"
                )
                continue
            if pseudonym not in known_pseudonyms:
                problems.append(
                    f"{where}, cell {s.letters['pseudonym']}{r}: unknown pseudonym {pseudonym!r} (not in the blinded sample)"
                )
                continue
            ok = True
            for key in ANSWER_COLUMNS:
                value = rec[key]
                cell = f"{s.letters[key]}{r}"
                if value == "":
                    problems.append(
                        f"{where}, cell {cell} ({HEADER_OF[key]}): missing answer (expected {YES} or {NO})"
                    )
                    ok = False
                elif value not in (YES, NO):
                    problems.append(
                        f"{where}, cell {cell} ({HEADER_OF[key]}): value {value!r} is not {YES} or {NO}"
                    )
                    ok = False
            if ok:
                rows.append(
                    {
                        "child_id": pseudonym,
                        **{k: rec[k] for k in ANSWER_COLUMNS},
                        **{k: rec.get(k, "") for k in FREE_TEXT_COLUMNS},
                        "source": f"{s.file}: sheet {s.sheet}, row {r}",
                    }
                )
    duplicates: list[str] = []
    clean = pd.DataFrame(rows, columns=["child_id", *ANSWER_COLUMNS, *FREE_TEXT_COLUMNS, "source"])
    for child, group in clean.groupby("child_id", sort=True):
        if len(group) < 2:
            continue
        answers = group.loc[:, [*ANSWER_COLUMNS, *FREE_TEXT_COLUMNS]].drop_duplicates()
        places = "; ".join(group["source"])
        if len(answers) > 1:
            problems.append(
                f"pseudonym {child!r} answered differently {len(group)} times: {places}"
            )
        else:
            duplicates.append(
                f"pseudonym {child!r} returned {len(group)} times with the same answers: {places}"
            )
    if problems:
        shown = problems[:50] + (
            [f"... and {len(problems) - 50} more"] if len(problems) > 50 else []
        )
        raise MimamoriError(f"verdicts: {len(problems)} problem(s):\n  " + "\n  ".join(shown))
    clean = clean.drop_duplicates("child_id", keep="first").reset_index(drop=True)
    clean["needs_support"] = (clean["family_concern"] == YES) | (clean["child_complaint"] == YES)
    return clean, duplicates
