"""CSV folders: windows by column or file name, file records, unchanged inputs, errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from etl_assets.sources import csv
from etl_assets.sources.base import SourceDataError
from etl_assets.transform.normalize import normalize
from etl_assets_tests.sources.conftest import request, source

ITEMS = (
    "sku,qty,updated_at\n"
    "A,1,2025-01-04 23:59:59\n"
    "B,2,2025-01-05 00:00:00\n"
    "C,3,2025-01-08T17:00:00Z\n"
    "D,,2025-01-11 23:59:59\n"
    "E,5,2025-01-12 00:00:00\n"
)
COLUMNS = [
    {"name": "sku"},
    {"name": "qty", "type": "integer"},
    {"name": "updated_at", "type": "timestamp"},
]


def items(folder: Path, **kw):
    fields = {
        "kind": "csv",
        "path": str(folder / "*.csv"),
        "timestamp_column": "updated_at",
        "columns": COLUMNS,
        "primary_key": ["sku"],
    }
    return source(**{**fields, **kw})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_rows_in_the_window_and_a_record_of_each_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(ITEMS)
    (tmp_path / "b.csv").write_text("sku,qty,updated_at\nF,6,2025-01-06 12:00:00\n")
    ex = csv.extract(items(tmp_path), request())
    f = ex.frame
    # Naive times are New York wall-clock; 17:00Z is noon there.
    assert f["sku"].tolist() == ["B", "C", "D", "F"]
    assert f["qty"].tolist()[:2] == ["2", "3"] and pd.isna(f["qty"][2]) and f["qty"][3] == "6"
    assert str(f["qty"].dtype) == "string"  # raw keeps the file's text
    assert ex.inputs["files"] == [
        {
            "path": str(tmp_path / "a.csv"),
            "sha256": sha(ITEMS.encode()),
            "size": len(ITEMS),
            "rows": 5,
        },
        {
            "path": str(tmp_path / "b.csv"),
            "sha256": sha(b"sku,qty,updated_at\nF,6,2025-01-06 12:00:00\n"),
            "size": 43,
            "rows": 1,
        },
    ]
    assert ex.inputs["rows"] == 4
    assert ex.inputs["window_start"] == "2025-01-05T00:00:00-05:00"


def test_filename_date_picks_the_windows_files(tmp_path: Path) -> None:
    for day in range(3, 14):
        (tmp_path / f"orders_202501{day:02d}.csv").write_text(f"sku,qty\nS{day},{day}\n")
    (tmp_path / "orders_latest.csv").write_text("sku,qty\nX,0\n")  # no date: never read
    src = items(
        tmp_path,
        timestamp_column=None,
        filename_date="orders_%Y%m%d.csv",
        columns=[{"name": "sku"}, {"name": "qty"}],
    )
    ex = csv.extract(src, request())
    assert ex.frame["sku"].tolist() == [f"S{d}" for d in range(5, 12)]
    assert [Path(f["path"]).name for f in ex.inputs["files"]] == [
        f"orders_202501{d:02d}.csv" for d in range(5, 12)
    ]
    wider = csv.extract(
        items(
            tmp_path,
            timestamp_column=None,
            filename_date="orders_%Y%m%d.csv",
            columns=[{"name": "sku"}, {"name": "qty"}],
            lookback="1d",
        ),
        request(),
    )
    assert wider.frame["sku"].tolist() == [f"S{d}" for d in range(4, 12)]


def test_full_mode_reads_every_row(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(ITEMS)
    ex = csv.extract(items(tmp_path, mode="full", timestamp_column=None), request())
    assert ex.frame["sku"].tolist() == ["A", "B", "C", "D", "E"]


def test_same_files_same_hashes_are_unchanged_without_parsing(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a.csv").write_text(ITEMS)
    first = csv.extract(items(tmp_path), request())
    previous = {**first.inputs, "unchanged": False}  # as the raw asset records it

    def no_parsing(*args, **kw):
        raise AssertionError("an unchanged extract must not parse")

    monkeypatch.setattr(csv, "read_file", no_parsing)
    again = csv.extract(items(tmp_path), request(previous_inputs=previous))
    assert again.unchanged is True and again.frame is None
    assert again.inputs["files"] == first.inputs["files"]
    assert again.inputs["rows"] == 3
    monkeypatch.undo()

    (tmp_path / "a.csv").write_text(ITEMS.replace("C,3", "C,30"))
    changed = csv.extract(items(tmp_path), request(previous_inputs=previous))
    assert changed.unchanged is False
    assert changed.frame["qty"].tolist()[1] == "30"
    assert changed.inputs["files"][0]["sha256"] == sha(ITEMS.replace("C,3", "C,30").encode())

    previous = changed.inputs
    (tmp_path / "b.csv").write_text("sku,qty,updated_at\n")
    added = csv.extract(items(tmp_path), request(previous_inputs=previous))
    assert added.unchanged is False and len(added.inputs["files"]) == 2

    previous = added.inputs
    other_options = csv.extract(items(tmp_path, lookback="1h"), request(previous_inputs=previous))
    assert other_options.unchanged is False
    assert other_options.frame["sku"].tolist() == ["A", "B", "C", "D"]


def test_compression_encoding_delimiter_quoting_and_no_header(tmp_path: Path) -> None:
    text = 'sku;name;updated_at\nA;"Crème; brûlée";2025-01-06 10:00:00\n'
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(text.encode("latin-1")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "inner.csv",
            'sku;name;updated_at\nB;"say ""hi""";2025-01-07 10:00:00\n'.encode("latin-1"),
        )
    (tmp_path / "b.csv.zip").write_bytes(buf.getvalue())
    cols = [{"name": "sku"}, {"name": "name"}, {"name": "updated_at", "type": "timestamp"}]
    src = items(
        tmp_path, path=str(tmp_path / "*.csv.*"), delimiter=";", encoding="latin-1", columns=cols
    )
    ex = csv.extract(src, request())
    assert ex.frame["sku"].tolist() == ["A", "B"]
    assert ex.frame["name"].tolist() == ["Crème; brûlée", 'say "hi"']
    assert ex.inputs["files"][0]["size"] == (tmp_path / "a.csv.gz").stat().st_size

    (tmp_path / "c.csv").write_text("Z|9|2025-01-06 01:00:00\n")
    src = items(tmp_path, path=str(tmp_path / "c.csv"), delimiter="|", header=False)
    assert csv.extract(src, request()).frame.to_dict("records") == [
        {"sku": "Z", "qty": "9", "updated_at": "2025-01-06 01:00:00"}
    ]


def test_fsspec_urls(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/etl-csv-test/in/a.csv", ITEMS.encode())
    try:
        ex = csv.extract(items(tmp_path, path="memory://etl-csv-test/in/*.csv"), request())
        assert ex.frame["sku"].tolist() == ["B", "C", "D"]
        assert ex.inputs["files"][0]["path"] == "/etl-csv-test/in/a.csv"
        assert ex.inputs["files"][0]["sha256"] == sha(ITEMS.encode())
    finally:
        fs.rm("/etl-csv-test", recursive=True)


def test_batches_are_cut_per_file_and_share_one_schema(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "sku,qty,updated_at\n" + "".join(f"A{i},{i},2025-01-06\n" for i in range(5))
    )
    (tmp_path / "b.csv").write_text(
        "sku,qty,updated_at\n" + "".join(f"B{i},{i}.5,2025-01-07\n" for i in range(3))
    )
    ex = csv.extract(items(tmp_path, columns=None, batch_size=2), request())
    frames = list(ex.frame)
    assert [len(f) for f in frames] == [2, 2, 1, 2, 1]
    assert {tuple(map(str, f.dtypes)) for f in frames} == {("string", "string", "string")}
    assert pd.concat(frames)["qty"].tolist() == ["0", "1", "2", "3", "4", "0.5", "1.5", "2.5"]
    assert ex.inputs["rows"] == 8
    (tmp_path / "c.csv").write_text("sku,amount\nC,1\n")
    with pytest.raises(
        SourceDataError, match=r"c\.csv: columns sku, amount differ from the first file's"
    ):
        list(
            csv.extract(
                items(tmp_path, columns=None, mode="full", timestamp_column=None, batch_size=2),
                request(),
            ).frame
        )


@pytest.mark.parametrize(
    ("content", "encoding", "message"),
    [
        (
            b"sku,qty,updated_at\nA,1,2025-01-06\nB\xe9,2,2025-01-06\n",
            "utf-8",
            "{path}: line 3: bytes are not valid utf-8 (b'\\xe9,2,'); set the source's encoding",
        ),
        (
            b"sku,qty,updated_at\nA,1,2025-01-06\nB,2,2025-01-06\nC,3,2025-01-06,extra\n",
            "utf-8",
            "{path}: line 4: expected 3 fields, found 4",
        ),
        (
            b"sku,updated_at\nA,2025-01-06\n",
            "utf-8",
            "{path}: line 1: header lacks column(s) qty (found sku, updated_at)",
        ),
    ],
)
def test_parse_errors_name_the_file_and_line(
    tmp_path: Path, content: bytes, encoding: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(SourceDataError) as e:
        csv.extract(items(tmp_path, encoding=encoding), request())
    assert str(e.value) == message.format(path=path)


def test_a_bad_timestamp_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("sku,qty,updated_at\nA,1,yesterday\n")
    with pytest.raises(SourceDataError) as e:
        csv.extract(items(tmp_path), request())
    assert str(e.value) == (
        f"{tmp_path / 'a.csv'}: column 'updated_at': 1 row(s) cannot be read as timestamp, "
        "e.g. 'yesterday' (first at row 1)"
    )


def test_broken_archives(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(SourceDataError, match=r"a\.csv\.gz: not a valid gzip file"):
        csv.extract(items(tmp_path, path=str(tmp_path / "*.gz")), request())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("one.csv", "x\n")
        zf.writestr("two.csv", "y\n")
    (tmp_path / "b.zip").write_bytes(buf.getvalue())
    with pytest.raises(SourceDataError, match=r"b\.zip: a zip must hold exactly one CSV, found 2"):
        csv.extract(items(tmp_path, path=str(tmp_path / "*.zip")), request())


def test_no_files_and_a_missing_timestamp_column(tmp_path: Path) -> None:
    ex = csv.extract(items(tmp_path), request())
    assert list(ex.frame.columns) == ["sku", "qty", "updated_at"] and len(ex.frame) == 0
    assert ex.inputs["files"] == [] and ex.inputs["rows"] == 0
    (tmp_path / "a.csv").write_text("sku,qty\nA,1\n")
    with pytest.raises(SourceDataError) as e:
        csv.extract(items(tmp_path, columns=None), request())
    assert str(e.value) == (
        f"{tmp_path / 'a.csv'}: timestamp_column 'updated_at' is not in the data (found sku, qty)"
    )


def test_a_short_row_without_a_header_is_measured_against_the_columns(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("A,1,2025-01-06\nB,2\n")
    with pytest.raises(SourceDataError) as e:
        csv.extract(items(tmp_path, header=False), request())
    assert str(e.value) == f"{tmp_path / 'a.csv'}: line 2: expected 3 fields, found 2"


NULLISH = "sku,note\nA,N/A\nB,NULL\nC,\nD,-\nE,nan\n"


def test_default_null_tokens_become_null(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(NULLISH)
    src = items(tmp_path, mode="full", timestamp_column=None, columns=[{"name": "sku"}, {"name": "note"}])
    notes = csv.extract(src, request()).frame["note"].tolist()
    assert [pd.isna(v) for v in notes] == [True, True, True, False, True]


def test_without_default_na_only_the_declared_tokens_are_null(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(NULLISH)
    src = items(
        tmp_path, mode="full", timestamp_column=None, columns=[{"name": "sku"}, {"name": "note"}],
        keep_default_na=False, na_values=["-", ""],
    )
    out = normalize(csv.extract(src, request()).frame, src, "UTC").frame
    assert out["sku"].tolist() == ["A", "B", "C", "D", "E"]
    notes = out["note"].tolist()
    assert notes[:2] == ["N/A", "NULL"] and pd.isna(notes[2]) and pd.isna(notes[3])
    assert notes[4] == "nan"


def test_na_values_add_to_the_defaults_and_change_the_read(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(NULLISH)
    cols = [{"name": "sku"}, {"name": "note"}]
    plain = items(tmp_path, mode="full", timestamp_column=None, columns=cols)
    first = csv.extract(plain, request())
    src = items(tmp_path, mode="full", timestamp_column=None, columns=cols, na_values=["-"])
    # Other null tokens give other rows: the same files are parsed again, not skipped.
    ex = csv.extract(src, request(previous_inputs=first.inputs))
    assert not ex.unchanged
    assert [pd.isna(v) for v in ex.frame["note"].tolist()] == [True, True, True, True, True]
