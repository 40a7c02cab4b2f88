"""Ingest in row blocks: the streaming reader gives what the whole-file reader gives, keys-only
duplicate checks, exact percentiles from value counts, row-group writing, and the dask engine
writing the same mart as the local one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.config import load_config
from helpers.ingest import blocks, stream
from helpers.ingest.read import read_export
from helpers.ingest.stage import ingest_all
from helpers.ingest.write import ROW_GROUP, _Writer, percentile_from_counts
from helpers.paths import paths
from helpers.schema import load_schema

RES_HEADER = "宛名番号,氏名,氏名カナ,生年月日,性別,国籍,住所,小学校区,転入日,転出日,死亡日"
ROW = "{c},山田太郎,ヤマダタロウ,H27.4.1,男,日本,東京都千代田区,E01,,,"


def _rows(n: int, start: int = 10000001) -> list[str]:
    return [ROW.format(c=start + i) for i in range(n)]


def _write(path: Path, lines: list[str], encoding: str = "cp932", eol: str = "\r\n") -> Path:
    path.write_bytes((eol.join(lines) + eol).encode(encoding))
    return path


def _streamed(path: Path, small_blocks, **kw) -> tuple[pd.DataFrame, dict]:
    src = stream.CsvBlocks(
        path,
        load_schema("residents"),
        kw.get("encoding"),
        None,
        kw.get("skip_rows"),
        kw.get("footer_rows"),
    )
    frames = list(src)
    out = pd.concat(frames, ignore_index=True).astype({"source_row": "int64"})
    return out, src.meta.attrs(path.name)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(stream, "BLOCK_BYTES", 4096)  # many blocks on a small file


PAD = "," * 10  # title and totals lines as wide as the records (ragged ones: whole-file reader)
CASES = {
    "plain": ([RES_HEADER, *_rows(300)], {}),
    "titles_and_footer": (
        [
            "住民記録一覧" + PAD,
            "出力日 2024/04/01" + PAD,
            PAD,
            RES_HEADER,
            *_rows(250),
            PAD,
            "合計 250件" + PAD,
        ],
        {},
    ),
    "blank_lines_between": ([RES_HEADER, *_rows(100), PAD, *_rows(100, 20000001)], {}),
    "skip_rows": (["タイトル" + PAD, RES_HEADER, *_rows(120)], {"skip_rows": 1}),
    "footer_rows": ([RES_HEADER, *_rows(120), "以上" + PAD, "作成者" + PAD], {"footer_rows": 2}),
    "extra_blank_columns": ([RES_HEADER + ",,", *[r + ",," for r in _rows(50)]], {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_streaming_reader_equals_the_whole_file_reader(tmp_path, small_blocks, case):
    lines, kw = CASES[case]
    path = _write(tmp_path / "住民記録.csv", lines)
    whole = read_export(path, load_schema("residents"), **kw)
    got, attrs = _streamed(path, small_blocks, **kw)
    want = whole.astype(object).where(whole.notna(), None)
    got = got.astype(object).where(got.notna(), None)
    pd.testing.assert_frame_equal(got, want.astype({"source_row": object}), check_dtype=False)
    for k in ("encoding", "title_rows", "footer_rows", "blank_rows", "unknown_headers"):
        assert attrs[k] == whole.attrs[k], k


def test_utf8_with_bom_and_encoding_detection(tmp_path):
    lines = [RES_HEADER, *_rows(5)]
    assert stream.probe_csv(_write(tmp_path / "a.csv", lines, "utf-8-sig"), None).encoding == (
        "utf-8-sig"
    )
    assert stream.probe_csv(_write(tmp_path / "b.csv", lines, "utf-8"), None).encoding == "utf-8"
    assert stream.probe_csv(_write(tmp_path / "c.csv", lines, "cp932"), None).encoding == "cp932"
    tsv = _write(tmp_path / "d.csv", [x.replace(",", "\t") for x in lines])
    assert stream.probe_csv(tsv, None).delimiter == "\t"


def test_odd_quotes_and_ragged_lines_fall_back_to_the_whole_file_reader(tmp_path):
    path = _write(tmp_path / "住民記録.csv", [RES_HEADER, *_rows(3), '1000009,"open'])
    with pytest.raises(stream.Fallback):
        stream.CsvBlocks(path, load_schema("residents"), None, None, None, None)
    short = _write(tmp_path / "住民記録2.csv", [RES_HEADER, *_rows(3), "10000009,a", *_rows(2)])
    with pytest.raises(stream.Fallback):
        list(stream.CsvBlocks(short, load_schema("residents"), None, None, None, None))
    job = blocks.FileJob(
        "residents",
        short,
        tmp_path / "s.arrow",
        load_schema("residents"),
        {},
        None,
        None,
        None,
        None,
        ("resident_code",),
    )
    with pytest.raises(MimamoriError, match="row 5 has 2 cells"):  # the whole-file message
        blocks.validate_file(job)


RAGGED = {
    "title_and_totals": [
        "住民記録一覧（2024/04/01現在）",
        "",
        RES_HEADER,
        *_rows(300),
        "合計,300件",
    ],
    "totals_and_blank_lines": [RES_HEADER, *_rows(200), "", "合計,200件", "", ""],
    "title_with_skip_rows": ["一覧", RES_HEADER, *_rows(50), "以上"],
}


@pytest.mark.parametrize("case", sorted(RAGGED))
def test_title_and_totals_lines_of_another_width_stream(tmp_path, small_blocks, case):
    path = _write(tmp_path / "住民記録.csv", RAGGED[case])
    kw = {"skip_rows": 1} if "skip_rows" in case else {}
    whole = read_export(path, load_schema("residents"), **kw)
    got, attrs = _streamed(path, small_blocks, **kw)  # no Fallback raised
    want = whole.astype(object).where(whole.notna(), None)
    got = got.astype(object).where(got.notna(), None)
    pd.testing.assert_frame_equal(got, want.astype({"source_row": object}), check_dtype=False)
    for k in ("title_rows", "footer_rows", "blank_rows"):
        assert attrs[k] == whole.attrs[k], k


def test_percentiles_from_counts_equal_numpy():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 100, 1001):
        data = rng.integers(0, 40, n).astype(float) / 4
        values, counts = np.unique(data, return_counts=True)
        for pct in (0.0, 0.5, 1.0, 50.0, 99.5, 100.0):
            for method in ("lower", "higher"):
                want = float(np.percentile(data, pct, method=method))
                assert percentile_from_counts(values, counts, pct, method) == want


def test_row_hashes_separate_rows_and_ignore_blocks():
    df = pd.DataFrame(
        {"a": pd.array(["x", "y", "x", None], dtype="string"), "b": pd.array([1, 2, 1, None])}
    )
    h1, h2 = blocks.row_hashes(df, ["a", "b"])
    assert h1[0] == h1[2] and h2[0] == h2[2] and len({*h1[:2], h1[3]}) == 3
    g1, _ = blocks.row_hashes(df.iloc[2:].reset_index(drop=True), ["a", "b"])
    assert g1[0] == h1[2]


def test_row_hashes_equal_pandas_hash_of_the_rows_under_each_key():
    df = pd.DataFrame(
        {
            "s": pd.array(["a", None, "b", "a", "ｘ", "長い文"], dtype="string"),
            "i": pd.array([1, None, 3, 1, 2, 2], dtype="Int64"),
            "d": pd.to_datetime(
                ["2020-01-01", None, "2021-01-01", "2020-01-01", None, "2022-02-02"]
            ),
            "b": pd.array([True, None, False, True, False, True], dtype="boolean"),
            "x": [1.5, np.nan, 2.0, 1.5, 0.0, -1.0],
            "o": np.array(["p", "q", None, "p", "r", "s"], dtype=object),
        }
    )
    for names in (list(df.columns), ["s"], ["i", "d"]):
        got = blocks.row_hashes(df, names)
        for key, h in zip(("mimamori-ingst-1", "mimamori-ingst-2"), got, strict=True):
            want = pd.util.hash_pandas_object(df[names], index=False, hash_key=key)
            assert (h == want.to_numpy()).all()


def test_row_group_writer_gives_the_bytes_of_one_write(tmp_path, monkeypatch):
    import helpers.ingest.write as w

    monkeypatch.setattr(w, "ROW_GROUP", 1000)
    df = pd.DataFrame(
        {
            "code": pd.array([f"c{i % 37}" for i in range(2500)], dtype="string"),
            "n": pd.array(np.arange(2500) % 11, dtype="Int64"),
        }
    )
    df.to_parquet(tmp_path / "one.parquet", index=False, row_group_size=1000)
    writer = _Writer(tmp_path / "blocks.parquet")
    for start in range(0, len(df), 333):
        writer.write(df.iloc[start : start + 333])
    writer.close(df.iloc[:0])
    one = (tmp_path / "one.parquet").read_bytes()
    assert (tmp_path / "blocks.parquet").read_bytes() == one
    assert ROW_GROUP == 1024 * 1024


def _mart_hashes(mart: Path) -> dict[str, str]:
    return {
        str(p.relative_to(mart)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(mart.rglob("*"))
        if p.suffix in (".parquet", ".csv")
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    from helpers.synth.stage import generate_city

    root = tmp_path_factory.mktemp("tiny")
    cfg = load_config(profile="tiny", overrides={"run": {"data_dir": str(root / "data")}})
    P = paths(cfg)
    generate_city(cfg, P.raw)
    ingest_all(cfg, P.raw, root / "mart_local")
    return {"root": root, "raw": P.raw, "local": _mart_hashes(root / "mart_local")}


@pytest.mark.slow
def test_spill_files_and_small_blocks_write_the_same_mart(tiny, monkeypatch):
    monkeypatch.setattr(blocks, "SPILL_MIN_BYTES", 0)  # every file spills to disk
    monkeypatch.setattr(stream, "BLOCK_BYTES", 1 << 16)  # in many blocks
    cfg = load_config(profile="tiny", overrides={"run": {"data_dir": str(tiny["root"] / "data")}})
    ingest_all(cfg, tiny["raw"], tiny["root"] / "mart_spilled")
    assert _mart_hashes(tiny["root"] / "mart_spilled") == tiny["local"]


@pytest.mark.slow
def test_one_thread_writes_the_mart_of_two(tiny):
    cfg = load_config(
        profile="tiny",
        overrides={"run": {"data_dir": str(tiny["root"] / "data"), "local_workers": 1}},
    )
    ingest_all(cfg, tiny["raw"], tiny["root"] / "mart_one_thread")
    assert _mart_hashes(tiny["root"] / "mart_one_thread") == tiny["local"]


@pytest.mark.slow
def test_dask_engine_writes_the_local_mart(tiny):
    pytest.importorskip("dask.distributed")
    dask = load_config(
        profile="tiny",
        overrides={
            "run": {
                "data_dir": str(tiny["root"] / "data"),
                "engine": "dask",
                "dask": {"n_workers": 2},
            }
        },
    )
    ingest_all(dask, tiny["raw"], tiny["root"] / "mart_dask")
    assert len(tiny["local"]) > 30
    assert _mart_hashes(tiny["root"] / "mart_dask") == tiny["local"]


def test_code_patterns_read_by_pyarrow_as_by_re():
    from helpers.ingest.validate import _fullmatch

    texts = ["12345678", "１２３４５６７８", "1234567\n", " 12345678", "A-1", "a1", "١٢٣٤٥٦٧٨"]
    texts += ["", None, "ABC12345", "12345678901234567", "9" * 15, "x1", "K1"]
    v = pd.Series(texts, dtype="string")
    for pattern in (r"^\d{8,15}$", r"^[0-9A-Z-]{1,12}$", r"(?i)^[a-z]\d$", r"^(?=\d)\w+$"):
        want = v.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)
        assert (_fullmatch(v, pattern) == want).all(), pattern
