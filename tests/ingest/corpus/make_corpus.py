"""Regenerate the bad-input corpus: `python tests/ingest/corpus/make_corpus.py`.

Each file is a broken export of one table; expected.yaml says which file name it is dropped in
as, which exports it replaces and which words the whole-file error message must contain.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).parent
HEADER = "宛名番号,氏名,氏名カナ,生年月日,性別,国籍,住所,小学校区,転入日,転出日,死亡日"
ROWS = [
    "10000001,山田太郎,ヤマダタロウ,H27.4.1,男,日本,東京都千代田区,E01,,,",
    "10000002,鈴木花子,スズキハナコ,令和2年5月3日,女,日本,大阪市北区,E02,,,",
    "10000003,佐藤次郎,サトウジロウ,2016/07/15,男,日本,京都市左京区,E01,,,",
]


def csv_text(header: str = HEADER, rows: list[str] = ROWS) -> str:
    return "\r\n".join([header, *rows]) + "\r\n"


def main() -> None:
    files = {
        "residents_eucjp.csv": csv_text().encode("euc_jp"),
        "residents_utf16.csv": csv_text().encode("utf-16"),
        "residents_truncated.csv": (csv_text(rows=ROWS[:2]) + '10000003,"佐藤').encode("cp932"),
        "residents_ragged.csv": (csv_text(rows=ROWS[:2]) + "10000003,佐藤次郎,サトウ").encode(
            "cp932"
        ),
        "residents_header_only.csv": (HEADER + "\r\n").encode("cp932"),
        "residents_empty.csv": b"",
        "residents_blank_lines_only.csv": b"\r\n\r\n  \r\n",
        "residents_missing_column.csv": csv_text(
            HEADER.replace(",生年月日", ""),
            [",".join(r.split(",")[:3] + r.split(",")[4:]) for r in ROWS],
        ).encode("cp932"),
        "residents_renamed_column.csv": csv_text(HEADER.replace("生年月日", "誕生日")).encode(
            "cp932"
        ),
        "residents_cp932.csv": csv_text().encode("cp932"),
        "school_register_corrupt.xlsx": b"PK\x03\x04 this is not really a workbook"
        + os.urandom(0)
        + b"\x00" * 64,
        "school_register_not_zip.xlsx": "学籍番号,学年\n1,2\n".encode(),
    }
    for name, data in files.items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
