"""Metadata CSVs: discovery, per-row parsing with reason codes, encodings and separators."""
from __future__ import annotations

import polars as pl
import pytest

from spira_lib.adapters.memory import MemoryStore
from spira_lib.dataset import MANIFEST_SCHEMA, DatasetError, find_metadata_csvs, read_metadata
from tests.unit.spira_lib.dataset._helpers import HEADER, csv


def test_read_metadata_builds_canonical_rows():
    store = MemoryStore()
    store.put(
        "hosp/meta.csv",
        csv(
            "audios/p1.wav,1,masculino,45,2,S1,HC,Train",
            "./audios/../audios/c1.flac,0,F,\"33,5\",0,,HC,validation",
            header=HEADER + ",speaker_id,hospital,split",
        ),
    )
    df = read_metadata(store, "hosp/meta.csv")
    assert df.columns == list(MANIFEST_SCHEMA)
    assert df["key"].to_list() == ["hosp/audios/p1.wav", "hosp/audios/c1.flac"]
    assert df["label"].to_list() == [1, 0] and df["label"].dtype == pl.Int8
    assert df["sex"].to_list() == ["M", "F"]
    assert df["age"].to_list() == [45.0, 33.5]
    assert df["dyspnea"].to_list() == ["2", "0"]
    assert df["speaker_id"].to_list() == ["S1", "c1"]  # given, else the file stem
    assert df["speaker_derived"].to_list() == [False, True]
    assert df["hospital"].to_list() == ["HC", "HC"]
    assert df["split"].to_list() == ["train", "eval"]
    assert df["row"].to_list() == [1, 2]
    assert df["source_csv"].to_list() == ["hosp/meta.csv"] * 2
    assert df["problem"].to_list() == [None, None]


@pytest.mark.parametrize(
    "line, problem",
    [
        ("a.wav,2,M,40,1", "invalid label '2' in column 'class' (expected 0 or 1)"),
        ("a.wav,sim,M,40,1", "invalid label 'sim' in column 'class' (expected 0 or 1)"),
        ("a.wav,,M,40,1", "missing label in column 'class'"),
        ("a.wav,1,M,quarenta,1", "non-numeric age 'quarenta' in column 'idade'"),
        ("../outside.wav,1,M,40,1", "file_path '../outside.wav' points outside the dataset"),
        ("/abs/a.wav,1,M,40,1", "file_path '/abs/a.wav' is absolute; it must be relative to the CSV's folder"),
        (",1,M,40,1", "file_path is empty"),
    ],
)
def test_bad_cells_become_row_problems_not_errors(line, problem):
    store = MemoryStore()
    store.put("meta.csv", csv("ok.wav,0,F,20,0", line))
    df = read_metadata(store, "meta.csv")
    assert df.height == 2
    assert df["problem"].to_list() == [None, problem]


def test_blank_rows_are_skipped_but_row_numbers_follow_the_file():
    store = MemoryStore()
    store.put("meta.csv", csv("a.wav,1,M,40,1", "", "b.wav,0,F,30,0", ",,,,"))
    df = read_metadata(store, "meta.csv")
    assert df["key"].to_list() == ["a.wav", "b.wav"]
    assert df["row"].to_list() == [1, 3]
    assert df["problem"].to_list() == [None, None]


def test_missing_required_columns_name_the_csv_and_columns():
    store = MemoryStore()
    store.put("sub/meta.csv", b"file_path,sexo,nivel_falta_de_ar\na.wav,M,1\n")
    with pytest.raises(DatasetError, match=r"'sub/meta.csv' is missing required column\(s\): class, idade"):
        read_metadata(store, "sub/meta.csv")


def test_empty_csv_is_a_dataset_error():
    store = MemoryStore()
    store.put("meta.csv", b"")
    with pytest.raises(DatasetError, match="'meta.csv' is empty"):
        read_metadata(store, "meta.csv")


def test_semicolon_cp1252_csv_from_excel():
    store = MemoryStore()
    text = "File_Path;Class;Sexo;Idade;Nivel_Falta_De_Ar;Hospital\r\nx.wav;1;F;70,0;3;São Paulo\r\n"
    store.put("meta.csv", text.encode("cp1252"))
    df = read_metadata(store, "meta.csv")
    assert df["hospital"].to_list() == ["São Paulo"]
    assert df["age"].to_list() == [70.0]
    assert df["label"].to_list() == [1]


def test_find_metadata_csvs_skips_noise_and_hidden_folders():
    store = MemoryStore()
    for key in ["b/meta.csv", "a.csv", "noises/list.csv", ".ipynb_checkpoints/a-checkpoint.csv", "x.wav"]:
        store.put(key, b"x")
    assert find_metadata_csvs(store) == ["a.csv", "b/meta.csv"]
    assert find_metadata_csvs(store, noise_dir="other") == ["a.csv", "b/meta.csv", "noises/list.csv"]


# --- cells that must not reach the manifest, and CSVs that are not tables --------------------------
@pytest.mark.parametrize(
    "line, code, phrase",
    [
        ('a.wav,1,"=HYPERLINK(""http://x"",""M"")",40,1', "bad_value", "column 'sexo' looks like a spreadsheet formula"),
        ("a.wav,1,M,40,@SUM(1)", "bad_value", "looks like a spreadsheet formula (starts with '@')"),
        ("=cmd|x,1,M,40,1", "bad_value", "column 'file_path' looks like a spreadsheet formula"),
        ("a.wav,1,X,40,1", "bad_value", "unknown value 'X' in column 'sexo' (expected M or F, or blank)"),
        ("a.wav,1,M,40,11", "bad_value", "column 'nivel_falta_de_ar' (expected a number from 0 to 10, or blank)"),
        ("a.wav,1,M,40,grave", "bad_value", "invalid value 'grave' in column 'nivel_falta_de_ar'"),
        ("a.wav,1,M\x1b[2J,40,1", "bad_value", "contains control characters"),
        ("a.wav,1,M,40,1,extra", "bad_row", "row has 6 cells but the header has 5 columns"),
        ("s3://b/a.wav,1,M,40,1", "bad_path", "is a URL"),
    ],
)
def test_bad_cells_are_quarantined_and_never_kept(line, code, phrase):
    store = MemoryStore()
    store.put("meta.csv", csv("ok.wav,0,F,20,0", line))
    df = read_metadata(store, "meta.csv")
    assert df["problem_code"].to_list() == [None, code]
    assert phrase in df["problem"][1]
    kept = [v for v in df.row(1) if isinstance(v, str)]
    assert not any(v.startswith(("=", "@", "+")) or "\x1b" in v for v in kept)


@pytest.mark.parametrize("cell", ["-1", "+5", "-0,5"])
def test_signed_numbers_are_not_formulas(cell):
    store = MemoryStore()
    store.put("meta.csv", csv(f"a.wav,1,M,{cell.replace(',', '.')},1"))
    df = read_metadata(store, "meta.csv")
    assert "formula" not in (df["problem"][0] or "")


def test_known_sex_spellings_and_blank_dyspnea_pass():
    store = MemoryStore()
    store.put("meta.csv", csv("a.wav,1,masculino,40,", "b.wav,0, Feminino ,30,0.5", "c.wav,0,,30,0"))
    df = read_metadata(store, "meta.csv")
    assert df["sex"].to_list() == ["M", "F", None]
    assert df["dyspnea"].to_list() == [None, "0.5", "0"]
    assert df["problem"].to_list() == [None, None, None]


def test_trailing_empty_cells_beyond_the_header_are_not_a_problem():
    store = MemoryStore()
    store.put("meta.csv", csv("a.wav,1,M,40,1,,,"))
    assert read_metadata(store, "meta.csv")["problem"].to_list() == [None]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_csvs_are_read(encoding):
    store = MemoryStore()
    store.put("meta.csv", csv("ação.wav,1,M,40,1").decode().encode(encoding))
    assert read_metadata(store, "meta.csv")["key"].to_list() == ["ação.wav"]


@pytest.mark.parametrize(
    "data, phrase",
    [
        (b"PK\x03\x04\x00\x00binary", "is not a text file: it contains NUL bytes"),
        (csv("a.wav,1,M,4\x0000,1"), "contains NUL bytes"),
        (csv("a.wav,1,M,40,1", "b.wav,1,M,40," + "x" * 200_000), "cannot be parsed near line 3"),
        (b"file_path,class,class,sexo,idade,nivel_falta_de_ar\n", "duplicate column(s): class"),
        (b"\n\n \n", "is empty"),
        (b"sep=;\n", "is empty"),
        (csv("a.wav,1,M,40,1", 'b.wav,1,M,40,"1', "c.wav,0,F,30,0"), "quote opened on line 3 that is never closed"),
    ],
)
def test_csvs_that_are_not_tables_are_dataset_errors(data, phrase):
    store = MemoryStore()
    store.put("meta.csv", data)
    with pytest.raises(DatasetError) as info:
        read_metadata(store, "meta.csv")
    assert phrase in str(info.value)


def test_an_oversized_csv_is_refused_from_its_size_without_reading():
    class NoGet(MemoryStore):
        def get(self, key):
            raise AssertionError("read")

    with pytest.raises(DatasetError, match="is 300 MB, larger than the 200 MB limit"):
        read_metadata(NoGet(), "big.csv", max_bytes=200 * 2**20, size=300 * 2**20)


def test_excel_sep_line_and_a_repeated_header_are_not_records():
    store = MemoryStore()
    text = f"sep=;\n{HEADER.replace(',', ';')}\na.wav;1;M;40;1\n{HEADER.replace(',', ';')}\nb.wav;0;F;30;0\n"
    store.put("meta.csv", text.encode())
    df = read_metadata(store, "meta.csv")
    assert df["key"].to_list() == ["a.wav", "b.wav"] and df["problem"].to_list() == [None, None]


def test_a_dash_is_no_value_not_a_formula():
    store = MemoryStore()
    store.put("meta.csv", csv("a.wav,1,-,-,--"))
    df = read_metadata(store, "meta.csv")
    assert df["problem"].to_list() == [None]
    assert (df["sex"][0], df["age"][0], df["dyspnea"][0]) == (None, None, None)
