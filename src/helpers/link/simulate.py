"""Simulated clerical review (模擬) for the synthetic city: staff answers taken from the truth.

On the synthetic city nobody can sit down with the clerical workbook, so
``python -m helpers link --simulate-clerical`` fills its 判定 column the way a careful clerk
would — 同一 when the candidate is the record's true person (``_truth/identity_links.csv``),
別人 otherwise — and the next ingest reads it back through exactly the path staff answers take
(strict cell checks, the decision file, "never asked twice"). Refused on real data: there the
workbook goes to staff.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers import MimamoriError
from helpers.config import Settings
from helpers.ingest.masking import make_private
from helpers.link.clerical import JUDGE
from helpers.link.evaluate import read_truth
from helpers.paths import Paths


def true_codes_by_record(key_master: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """The true resident code of each source record id (rows of one record agree)."""
    km = key_master.astype({"source_row": "string", "file": "string"})
    tr = truth.astype({"source_row": "string", "file": "string"})
    rows = km.merge(tr, on=["table", "file", "source_row"], suffixes=("", "_true"))
    return rows.groupby("record_id")["resident_code_true"].agg(
        lambda s: s.mode().iat[0] if s.notna().any() else pd.NA
    )


def answers_for(pairs: pd.DataFrame, true_code: pd.Series) -> pd.Series:
    """同一 / 別人 for each pending pair (``record_id``, ``resident_code``)."""
    truth = pairs["record_id"].map(true_code)
    same = truth.notna() & (truth.astype("string") == pairs["resident_code"].astype("string"))
    return same.map({True: "同一", False: "別人"})


def fill_workbook(book: Path, answers: list[str]) -> None:
    """Write ``answers`` into the 判定 column, row by row, leaving every other cell as is."""
    from openpyxl import load_workbook

    wb = load_workbook(book)
    ws = wb.worksheets[0]
    header = [c.value for c in ws[1]]
    col = header.index(JUDGE) + 1
    if ws.max_row - 1 != len(answers):
        raise MimamoriError(f"{book.name}: {ws.max_row - 1} rows, {len(answers)} answers")
    for i, answer in enumerate(answers, start=2):
        ws.cell(row=i, column=col, value=answer)
    wb.save(book)
    make_private(book)


def simulate_clerical(cfg: Settings, P: Paths) -> dict[str, int]:
    """Fill the pending clerical workbook from the truth; the counts answered."""
    if not cfg.run.synthetic:
        raise MimamoriError(
            "link --simulate-clerical: refused: run.synthetic is false (on real data the "
            f"workbook {P.linkage_review.name} goes to staff)"
        )
    if not P.linkage_review.exists():
        return {"same": 0, "different": 0}
    truth = read_truth(P.raw, P)
    if truth is None:
        raise MimamoriError(f"{P.truth_identity}: not found (the synthetic city's true links)")
    pairs = pd.read_parquet(P.linkage_review_pairs)
    answers = answers_for(pairs, true_codes_by_record(pd.read_parquet(P.key_master), truth))
    fill_workbook(P.linkage_review, answers.tolist())
    return {"same": int((answers == "同一").sum()), "different": int((answers == "別人").sum())}
