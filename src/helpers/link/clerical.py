"""Clerical review of uncertain pairs (目視確認): the workbook staff fill in, read back as
strictly as the review verdicts, and the decision file that makes every decision stick.

``data/private/linkage_review.xlsx`` shows each pending pair side by side (source record and
registry person), the comparison levels and the probability, with a 判定 column that takes
同一 (same person) or 別人 (different) from a drop-down; a blank is "not decided yet". The
pairs written are remembered in ``linkage_review_pairs.parquet``; reading back, a row whose
pair cells changed, a missing row or an answer other than 同一/別人 is an error naming the
cell. Decisions go into ``linkage_decisions.parquet`` keyed by (table, record id, resident
code) together with a fingerprint of the pseudonym key: a decision file made under another
key is refused (its record ids would not be this key's).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd

from helpers import MimamoriError
from helpers import io as hio
from helpers.ingest.masking import make_private, private_dir

ANSWERS = {"同一": "same", "別人": "different"}
JUDGE = "判定（同一／別人）"
PAIR_COLUMNS = {
    "pair_id": "ペアID",
    "table": "台帳",
    "record_id": "元レコードID",
    "resident_code": "宛名番号",
    "match_probability": "一致確率",
}
SHOWN = {
    "src_name": "元:氏名",
    "reg_name": "住基:氏名",
    "src_kana": "元:カナ",
    "reg_kana": "住基:カナ",
    "src_birth": "元:生年月日",
    "reg_birth": "住基:生年月日",
    "src_sex": "元:性別",
    "reg_sex": "住基:性別",
    "src_address": "元:住所",
    "reg_address": "住基:住所",
    "src_guardian": "元:保護者",
    "levels": "比較水準",
}
DECISION_COLUMNS = ["table", "record_id", "resident_code", "decision", "decided_on", "key_fp"]


def key_fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"linkage-decisions:" + key).hexdigest()[:16]


def pair_id(table: str, record_id: str, resident_code: str) -> str:
    return hashlib.sha256(f"{table}|{record_id}|{resident_code}".encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- decisions
def load_decisions(path: Path, key_fp: str) -> pd.DataFrame:
    """Staff decisions so far; refused when made under another pseudonym key."""
    if not path.exists():
        return pd.DataFrame(columns=DECISION_COLUMNS)
    dec = pd.read_parquet(path)
    missing = [c for c in DECISION_COLUMNS if c not in dec]
    if missing:
        raise MimamoriError(f"{path}: not a linkage decision file (no columns {missing})")
    other = sorted(set(dec["key_fp"]) - {key_fp})
    if other:
        raise MimamoriError(
            f"{path}: these decisions were made with a different pseudonym key (fingerprint "
            f"{other[0]}, this run's {key_fp}); their record ids do not match this key's. Use the "
            "key they were made with, or move the file away to decide the pairs again"
        )
    return dec[DECISION_COLUMNS]


def save_decisions(dec: pd.DataFrame, path: Path) -> Path:
    private_dir(path.parent)
    dec = dec.sort_values(["table", "record_id", "resident_code"], kind="stable")
    return make_private(hio.write_parquet(dec.reset_index(drop=True), path))


def merge_decisions(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Later decisions on the same pair replace earlier ones."""
    both = pd.concat([old, new], ignore_index=True)
    return both.drop_duplicates(["table", "record_id", "resident_code"], keep="last")


# ----------------------------------------------------------------------------- the workbook
def write_workbook(pending: pd.DataFrame, book: Path, manifest: Path) -> Path | None:
    """The pending pairs (columns: PAIR_COLUMNS keys + SHOWN keys) as the clerical workbook,
    owner-only; none pending: an old workbook and its manifest are removed."""
    from openpyxl import Workbook
    from openpyxl.worksheet.datavalidation import DataValidation

    private_dir(book.parent)
    if pending.empty:
        for p in (book, manifest):
            p.unlink(missing_ok=True)
        return None
    cols = [*PAIR_COLUMNS, *SHOWN]
    wb = Workbook()
    ws = wb.active
    ws.title = "名寄せ確認"
    ws.append([*(PAIR_COLUMNS | SHOWN).values(), JUDGE])
    for row in pending[cols].itertuples(index=False, name=None):
        ws.append([None if pd.isna(v) else v for v in row] + [None])
    judge_col = ws.cell(row=1, column=len(cols) + 1).column_letter
    dv = DataValidation(
        type="list",
        formula1='"同一,別人"',
        allow_blank=True,
        error="同一 か 別人 を選んでください",
        showErrorMessage=True,
    )
    dv.add(f"{judge_col}2:{judge_col}{len(pending) + 1}")
    ws.add_data_validation(dv)
    ws.freeze_panes = "F2"
    with hio.atomic_path(book) as tmp:
        wb.save(tmp)
    make_private(book)
    make_private(hio.write_parquet(pending[list(PAIR_COLUMNS)].reset_index(drop=True), manifest))
    return book


def _cell(v: object) -> str:
    return "" if v is None else str(v).strip()


def read_workbook(book: Path, manifest: Path, key_fp: str, today: str) -> pd.DataFrame:
    """The decisions a filled workbook holds (blank = not yet); every bad cell is an error."""
    from openpyxl import load_workbook

    expected = pd.read_parquet(manifest)
    ws = load_workbook(book, read_only=True, data_only=True).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    header = [_cell(h) for h in rows[0]] if rows else []
    want = [*PAIR_COLUMNS.values()]
    errors = [f"{book.name}: header {h!r} missing" for h in [*want, JUDGE] if h not in header]
    if errors:
        raise MimamoriError("clerical workbook rejected:\n  " + "\n  ".join(errors))
    at = {h: i for i, h in enumerate(header)}
    seen: set[str] = set()
    out = []
    by_id = expected.set_index("pair_id")
    for n, row in enumerate(rows[1:], start=2):
        pid = _cell(row[at["ペアID"]])
        if not pid and not any(_cell(v) for v in row):
            continue
        if pid not in by_id.index or pid in seen:
            errors.append(
                f"{book.name} row {n} column ペアID: {pid!r} is not a pair this "
                "workbook was written with (changed or duplicated row)"
            )
            continue
        seen.add(pid)
        exp = by_id.loc[pid]
        for key in ("table", "record_id", "resident_code"):
            if _cell(row[at[PAIR_COLUMNS[key]]]) != str(exp[key]):
                errors.append(
                    f"{book.name} row {n} column {PAIR_COLUMNS[key]}: changed from "
                    f"{exp[key]!r} to {row[at[PAIR_COLUMNS[key]]]!r}"
                )
        answer = _cell(row[at[JUDGE]])
        if answer and answer not in ANSWERS:
            errors.append(f"{book.name} row {n} column {JUDGE}: {answer!r} is not 同一 or 別人")
        elif answer:
            out.append(
                {
                    "table": exp["table"],
                    "record_id": exp["record_id"],
                    "resident_code": exp["resident_code"],
                    "decision": ANSWERS[answer],
                    "decided_on": today,
                    "key_fp": key_fp,
                }
            )
    errors += [
        f"{book.name}: pair {p} (row {i + 2} when written) is missing"
        for i, p in enumerate(expected["pair_id"])
        if p not in seen
    ]
    if errors:
        raise MimamoriError(
            "clerical workbook rejected; fix these cells and run again:\n  " + "\n  ".join(errors)
        )
    return pd.DataFrame(out, columns=DECISION_COLUMNS)


def collect(book: Path, manifest: Path, decisions: Path, key_fp: str) -> pd.DataFrame:
    """Read a filled workbook (if any) into the decision file; the decisions so far."""
    dec = load_decisions(decisions, key_fp)
    if book.exists() and manifest.exists():
        new = read_workbook(book, manifest, key_fp, dt.date.today().isoformat())
        if len(new):
            dec = merge_decisions(dec, new)
            save_decisions(dec, decisions)
    return dec
