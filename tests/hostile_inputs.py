"""Hostile or odd inputs: a corpus of dataset changes, and what must happen to each.

Every case changes a fresh copy of a small generated dataset (12 short clips,
one metadata CSV, a noise folder and a folder *outside* the dataset) in one way
a new user might, then runs the real core pipeline up to validation
(``snapshot_step`` + ``validate_step`` on a local folder) and compares what
happened with what must happen:

- ``quarantine``: the named CSV rows are quarantined with the given reason code
  and a reason that contains a phrase naming the problem; every other row passes;
- ``accept``: every row passes (odd but valid input);
- ``refuse``: the whole dataset is refused with a clear error (``DatasetError``,
  ``PipelineError`` or a failed validation verdict) whose message contains the phrase.

Each run is classified as ``handled`` (what must happen happened), ``crash``
(any other exception: a traceback for the user), ``hang`` (no answer within the
time limit), ``misleading`` (quarantined or refused, but for the wrong reason, or
good rows quarantined with it) or ``silent`` (a bad row accepted, or a bad dataset
run). Independently, every file under the case folder is hashed before and after
(symbolic links by their target, special files by their type): any difference is
a ``modified`` file.

``python -m tests.hostile_inputs`` prints one line per case and the summary
counts (the README's reliability figure comes from it); ``--json`` writes them as
JSON. ``tests/unit/spira_lib/validation/test_hostile_inputs.py`` runs the corpus.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

SR = 8000
N_CLIPS = 12
CLIP_S = 0.6
HEADER = ["file_path", "class", "sexo", "idade", "nivel_falta_de_ar", "speaker_id", "hospital"]
META = "metadata.csv"
# Small clips and windows so the corpus runs in seconds; every row of the base dataset passes.
CONFIG = {
    "audio.min_duration_s": 0.5,
    "model.window_s": 0.5,
    "validation.min_clips": 1,
    "validation.min_clips_per_class": 1,
    "validation.max_quarantined_fraction": 1.0,
}
# Set only where the config has the field (the corpus also runs against code that predates it).
OPTIONAL_CONFIG = {"audio.max_clip_s": 30.0}
TIMEOUT_S = 20.0
OUTCOMES = ("handled", "crash", "hang", "misleading", "silent")


# --------------------------------------------------------------------------- audio helpers
def voice(seed: int, seconds: float = CLIP_S, sr: int = SR, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 0.2 * rng.standard_normal((int(round(seconds * sr)), channels))
    return x.clip(-0.9, 0.9).astype(np.float32)


def encode(wave: np.ndarray, sr: int = SR, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def clip_bytes(i: int) -> bytes:
    return encode(voice(1000 + i))


def _wav_with(field_offset: int, fmt: str, value: int, seed: int = 1) -> bytes:
    data = bytearray(clip_bytes(seed))
    data[field_offset : field_offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(data)


def _flac_claiming(total_frames: int, seed: int = 1) -> bytes:
    """A valid FLAC whose STREAMINFO says it holds ``total_frames`` frames."""
    data = bytearray(encode(voice(seed), fmt="FLAC", subtype="PCM_16"))
    word = int.from_bytes(data[18:26], "big")  # sample rate/channels/bits + 36-bit total samples
    word = (word & ~((1 << 36) - 1)) | (total_frames & ((1 << 36) - 1))
    data[18:26] = word.to_bytes(8, "big")
    return bytes(data)


# --------------------------------------------------------------------------- the base dataset
def base_rows() -> list[dict[str, str]]:
    rows = []
    for i in range(N_CLIPS):
        label = i % 2
        rows.append({
            "file_path": f"audio/c{i:02d}.wav", "class": str(label), "sexo": "M" if i % 4 < 2 else "F",
            "idade": str(30 + 3 * i), "nivel_falta_de_ar": str(1 + i % 3 if label else 0),
            "speaker_id": f"s{i:02d}", "hospital": "HC" if i < 6 else "HU",
        })  # fmt: skip
    return rows


def render_csv(rows: list[dict[str, str]], header: list[str] = HEADER, sep: str = ",", newline: str = "\n") -> str:
    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if (sep in v or '"' in v or "\n" in v) else v

    lines = [sep.join(header)] + [sep.join(cell(r.get(h, "")) for h in header) for r in rows]
    return newline.join(lines) + newline


def make_base(folder: Path) -> None:
    """The dataset every case starts from: ``data/`` (the dataset) and ``outside/`` (a neighbour folder)."""
    data = folder / "data"
    (data / "audio").mkdir(parents=True)
    (data / "noises").mkdir()
    for i in range(N_CLIPS):
        (data / "audio" / f"c{i:02d}.wav").write_bytes(clip_bytes(i))
    (data / "noises" / "ward.wav").write_bytes(encode(voice(999, seconds=1.0)))
    (data / META).write_text(render_csv(base_rows()), encoding="utf-8")
    (folder / "outside").mkdir()
    (folder / "outside" / "secret.wav").write_bytes(clip_bytes(77))


@dataclass
class Ctx:
    """What a case's change gets: the dataset folder, a folder outside it, and the base rows."""

    root: Path
    rows: list[dict[str, str]] = field(default_factory=base_rows)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    def clip(self, i: int) -> Path:
        return self.data / "audio" / f"c{i:02d}.wav"

    def set_cells(self, i: int, **cells: str) -> None:
        """Rewrite metadata.csv with row ``i`` (0-based) changed."""
        self.rows[i].update(cells)
        self.write_meta()

    def write_meta(self, text: str | None = None, *, encoding: str = "utf-8", name: str = META) -> None:
        (self.data / name).write_bytes((render_csv(self.rows) if text is None else text).encode(encoding))

    def replace_clip(self, i: int, data: bytes) -> None:
        self.clip(i).write_bytes(data)


# --------------------------------------------------------------------------- expectations
@dataclass(frozen=True)
class Expect:
    kind: str  # "quarantine", "accept" or "refuse"
    rows: dict[str, str] = field(default_factory=dict)  # "csv:row" -> reason code (quarantine)
    phrase: str = ""  # must appear in each reason (quarantine) or in the error (refuse); case-insensitive
    n_rows: int = N_CLIPS  # metadata rows the dataset holds after the change


def quarantine(rows: dict[int, str] | dict[str, str], phrase: str, n_rows: int = N_CLIPS) -> Expect:
    named = {(f"{META}:{k}" if isinstance(k, int) else k): v for k, v in rows.items()}
    return Expect("quarantine", named, phrase, n_rows)


def accept(n_rows: int = N_CLIPS) -> Expect:
    return Expect("accept", n_rows=n_rows)


def refuse(phrase: str) -> Expect:
    return Expect("refuse", phrase=phrase)


@dataclass(frozen=True)
class Case:
    name: str
    change: Callable[[Ctx], None]
    expect: Expect
    why: str = ""
    needs_non_root: bool = False


CASES: list[Case] = []


def case(name: str, expect: Expect, why: str = "", *, needs_non_root: bool = False):
    def register(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        CASES.append(Case(name, fn, expect, why or (fn.__doc__ or "").strip(), needs_non_root))
        return fn

    return register


# --------------------------------------------------------------------------- links and special files
@case("symlinked_audio_files", accept())
def _(c: Ctx) -> None:
    """Every clip is a symbolic link into a folder outside the dataset (data-versioning tools do this)."""
    store = c.outside / "blobs"
    store.mkdir()
    for i in range(N_CLIPS):
        target = store / f"blob{i:02d}"
        shutil.move(c.clip(i), target)
        c.clip(i).symlink_to(target)


@case("symlinked_audio_folder", accept())
def _(c: Ctx) -> None:
    """The audio folder itself is a symbolic link to a folder outside the dataset."""
    shutil.move(c.data / "audio", c.outside / "audio")
    (c.data / "audio").symlink_to(c.outside / "audio", target_is_directory=True)


@case("relative_symlink_inside", accept())
def _(c: Ctx) -> None:
    """A clip is a relative link to a file elsewhere in the dataset that no CSV lists."""
    (c.data / "raw").mkdir()
    shutil.move(c.clip(0), c.data / "raw" / "c00.wav")
    c.clip(0).symlink_to(Path("..") / "raw" / "c00.wav")


@case("symlinked_csv", accept())
def _(c: Ctx) -> None:
    """The metadata CSV is a link to a file outside the dataset."""
    shutil.move(c.data / META, c.outside / META)
    (c.data / META).symlink_to(c.outside / META)


@case("broken_symlink_unlisted", accept())
def _(c: Ctx) -> None:
    """A dangling link that no CSV mentions."""
    (c.data / "audio" / "junk.wav").symlink_to(c.root / "nowhere" / "junk.wav")


@case("self_symlink_unlisted", accept())
def _(c: Ctx) -> None:
    """A link to itself (ELOOP) that no CSV mentions."""
    (c.data / "loop.wav").symlink_to("loop.wav")


@case("symlink_folder_loop", accept())
def _(c: Ctx) -> None:
    """A folder link back to the dataset root (a walk that follows links must not loop)."""
    (c.data / "audio" / "back").symlink_to("..", target_is_directory=True)


@case("symlink_to_filesystem_root", accept())
def _(c: Ctx) -> None:
    """Folder links to / and to /proc inside the dataset: walking them would list the whole machine."""
    (c.data / "everything").symlink_to("/", target_is_directory=True)
    (c.data / "processes").symlink_to("/proc", target_is_directory=True)


@case("broken_symlink_listed", quarantine({1: "symlink"}, "symbolic link"))
def _(c: Ctx) -> None:
    """A listed clip is a dangling link (its target was never fetched)."""
    c.clip(0).unlink()
    c.clip(0).symlink_to(c.outside / "cache" / "missing-blob")


@case("self_symlink_listed", quarantine({1: "symlink"}, "symbolic link"))
def _(c: Ctx) -> None:
    """A listed clip is a link to itself."""
    c.clip(0).unlink()
    c.clip(0).symlink_to("c00.wav")


@case("fifo_listed", quarantine({1: "not_a_file"}, "named pipe"))
def _(c: Ctx) -> None:
    """A listed clip is a FIFO: opening it for reading would block forever."""
    c.clip(0).unlink()
    os.mkfifo(c.clip(0))


@case("fifo_unlisted", accept())
def _(c: Ctx) -> None:
    """A FIFO named .wav and one named .csv that no CSV mentions."""
    os.mkfifo(c.data / "audio" / "pipe.wav")
    os.mkfifo(c.data / "pipe.csv")


@case("socket_listed", quarantine({1: "not_a_file"}, "socket"))
def _(c: Ctx) -> None:
    """A listed clip is a Unix socket."""
    c.clip(0).unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(c.clip(0)))


@case("folder_as_file_path", quarantine({1: "not_a_file"}, "folder"))
def _(c: Ctx) -> None:
    """file_path names a folder."""
    (c.data / "audio" / "c00").mkdir()
    c.set_cells(0, file_path="audio/c00")


@case("noise_folder_as_file_path", quarantine({1: "not_a_file"}, "folder"))
def _(c: Ctx) -> None:
    """file_path names the noise folder."""
    c.set_cells(0, file_path="noises")


@case("noise_file_as_clip", quarantine({1: "bad_path"}, "noise"))
def _(c: Ctx) -> None:
    """file_path names a ward-noise recording: a noise file must not become a labelled clip."""
    c.set_cells(0, file_path="noises/ward.wav")


@case("csv_as_file_path", quarantine({1: "bad_path"}, "metadata csv"))
def _(c: Ctx) -> None:
    """file_path names the metadata CSV itself."""
    c.set_cells(0, file_path=META)


@case("permission_denied", quarantine({1: "unreadable"}, "permission denied"), needs_non_root=True)
def _(c: Ctx) -> None:
    """A listed clip cannot be read by this user."""
    c.clip(0).chmod(0)


@case("sparse_2gb_file", quarantine({1: "too_large"}, "larger than"))
def _(c: Ctx) -> None:
    """A listed clip is a 2 GB file (sparse on disk): refused from its size, never read."""
    with open(c.clip(0), "r+b") as fh:
        fh.truncate(2 * 1024**3)


@case("sparse_2gb_csv", refuse("larger than"))
def _(c: Ctx) -> None:
    """A 2 GB CSV beside the metadata (sparse on disk)."""
    with open(c.data / "dump.csv", "wb") as fh:
        fh.truncate(2 * 1024**3)


@case("symlink_to_dev_zero", quarantine({1: "not_a_file"}, "character device"))
def _(c: Ctx) -> None:
    """A listed clip is a link to /dev/zero: reading it would never end."""
    c.clip(0).unlink()
    c.clip(0).symlink_to("/dev/zero")


@case("broken_folder_symlink", quarantine({i: "symlink" for i in range(1, N_CLIPS + 1)}, "broken symbolic link"))
def _(c: Ctx) -> None:
    """The audio folder is a link to a cache folder that is not there (a data-versioning checkout without its cache)."""
    shutil.rmtree(c.data / "audio")
    (c.data / "audio").symlink_to(c.outside / "cache" / "audio", target_is_directory=True)


# --------------------------------------------------------------------------- paths
@case("dotdot_escapes_dataset", quarantine({1: "bad_path"}, "outside the dataset"))
def _(c: Ctx) -> None:
    """file_path climbs out of the dataset to a real audio file."""
    c.set_cells(0, file_path="../outside/secret.wav")


@case("dotdot_stays_inside", accept())
def _(c: Ctx) -> None:
    """file_path with '..' that stays inside the dataset."""
    c.set_cells(0, file_path="audio/../audio/./c00.wav")


@case("absolute_path", quarantine({1: "bad_path"}, "absolute"))
def _(c: Ctx) -> None:
    """file_path is an absolute path to an existing clip."""
    c.set_cells(0, file_path=str(c.clip(0)))


@case("windows_backslashes", accept())
def _(c: Ctx) -> None:
    """file_path written with Windows separators."""
    c.set_cells(0, file_path="audio\\c00.wav")


@case("url_file_path", quarantine({1: "bad_path"}, "url"))
def _(c: Ctx) -> None:
    """file_path is a URL."""
    c.set_cells(0, file_path="s3://bucket/audio/c00.wav")


@case("hidden_file_listed", quarantine({1: "bad_path"}, "hidden"))
def _(c: Ctx) -> None:
    """file_path points into a hidden folder (hidden files are not part of a dataset)."""
    (c.data / ".trash").mkdir()
    shutil.move(c.clip(0), c.data / ".trash" / "c00.wav")
    c.set_cells(0, file_path=".trash/c00.wav")


@case("nfd_file_name", accept())
def _(c: Ctx) -> None:
    """The file name on disk is Unicode NFD (as macOS writes it), the CSV says NFC."""
    name = "ação.wav"
    shutil.move(c.clip(0), c.data / "audio" / unicodedata.normalize("NFD", name))
    c.set_cells(0, file_path=f"audio/{unicodedata.normalize('NFC', name)}")


@case("letter_case_mismatch", quarantine({1: "missing_file"}, "letter case"))
def _(c: Ctx) -> None:
    """The CSV says C00.WAV, the disk has c00.wav (made on a case-insensitive file system)."""
    c.set_cells(0, file_path="audio/C00.WAV")


@case("non_utf8_file_name", quarantine({1: "bad_path"}, "utf-8"))
def _(c: Ctx) -> None:
    """The file name on disk is cp1252 bytes (unzipped from a Windows archive), the CSV says 'áudio.wav'."""
    os.rename(c.clip(0), os.path.join(os.fsencode(c.data / "audio"), "áudio.wav".encode("cp1252")))
    c.rows[0]["file_path"] = "audio/áudio.wav"
    c.write_meta(encoding="cp1252")


@case("non_utf8_unlisted_names", accept())
def _(c: Ctx) -> None:
    """A file and a CSV whose names are not UTF-8, that nothing refers to."""
    audio = os.fsencode(c.data / "audio")
    with open(os.path.join(audio, b"r\xe9sum\xe9.wav"), "wb") as fh:
        fh.write(clip_bytes(50))
    with open(os.path.join(os.fsencode(c.data), b"notes-\xff.txt"), "wb") as fh:
        fh.write(b"x")


# --------------------------------------------------------------------------- CSV format
@case("csv_utf8_bom_crlf", accept())
def _(c: Ctx) -> None:
    """Excel's 'CSV UTF-8': a byte-order mark and CRLF line ends."""
    c.write_meta("\ufeff" + render_csv(c.rows, newline="\r\n"))


@case("csv_semicolon_decimal_comma", accept())
def _(c: Ctx) -> None:
    """pt-BR Excel: ';' separator and '45,5' ages."""
    c.rows[0]["idade"] = "45,5"
    c.write_meta(render_csv(c.rows, sep=";"))


@case("csv_utf16", accept())
def _(c: Ctx) -> None:
    """Excel's 'Unicode text': UTF-16 with a BOM, tab-separated."""
    c.write_meta(render_csv(c.rows, sep="\t"), encoding="utf-16")


@case("csv_cp1252_accents", accept())
def _(c: Ctx) -> None:
    """A cp1252 CSV with accented hospital names."""
    c.rows[0]["hospital"] = "São Paulo"
    c.write_meta(encoding="cp1252")


@case("csv_empty_beside_good", refuse("empty"))
def _(c: Ctx) -> None:
    """A 0-byte CSV beside the good one."""
    (c.data / "new.csv").write_bytes(b"")


@case("csv_header_only_beside_good", accept())
def _(c: Ctx) -> None:
    """A CSV with only the header row beside the good one."""
    (c.data / "new.csv").write_text(",".join(HEADER) + "\n")


@case("csv_header_only_alone", refuse("no metadata rows"))
def _(c: Ctx) -> None:
    """The only CSV has a header and no rows."""
    c.write_meta(",".join(HEADER) + "\n")


@case("no_csv_at_all", refuse("no metadata csv"))
def _(c: Ctx) -> None:
    """The dataset folder has audio but no CSV."""
    (c.data / META).unlink()


@case("csv_missing_column", refuse("missing required column"))
def _(c: Ctx) -> None:
    """A second CSV lacks the 'class' column."""
    (c.data / "other.csv").write_text("file_path,sexo,idade,nivel_falta_de_ar\naudio/c00.wav,M,40,0\n")


@case("csv_duplicate_header", refuse("duplicate column"))
def _(c: Ctx) -> None:
    """'class' appears twice in the header."""
    c.write_meta(render_csv(c.rows, header=[*HEADER[:2], "class", *HEADER[2:]]))


@case("csv_binary", refuse("nul bytes"))
def _(c: Ctx) -> None:
    """A binary file named .csv (a spreadsheet saved as .xlsx then renamed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>" * 50)
    (c.data / "sheet.csv").write_bytes(buf.getvalue() + bytes(range(256)))


@case("csv_nul_byte_in_cell", refuse("nul bytes"))
def _(c: Ctx) -> None:
    """One NUL byte in a cell of the metadata CSV."""
    c.set_cells(0, hospital="H\x00C")


@case("csv_huge_line", refuse("cannot be parsed"))
def _(c: Ctx) -> None:
    """One 300 kB cell: more than a CSV field may hold."""
    c.set_cells(0, hospital="H" * 300_000)


@case("csv_long_cell", quarantine({1: "bad_value"}, "characters"))
def _(c: Ctx) -> None:
    """A 5,000-character hospital name (pasted text)."""
    c.set_cells(0, hospital="H" * 5000)


@case("csv_unquoted_comma", quarantine({1: "bad_row"}, "but the header has"))
def _(c: Ctx) -> None:
    """A hospital name with an unquoted comma shifts the row's cells."""
    text = render_csv(c.rows).replace("s00,HC", "s00,Hospital das Clínicas, SP", 1)
    c.write_meta(text)


@case("csv_unclosed_quote", refuse("never closed"))
def _(c: Ctx) -> None:
    """A cell opens a quote that is never closed: the rest of the file would become one cell."""
    c.write_meta(render_csv(c.rows).replace("s05,HC", 's05,"HC', 1))


@case("csv_multiline_note", accept())
def _(c: Ctx) -> None:
    """A properly quoted multi-line cell in a column SPIRA does not use."""
    for r in c.rows:
        r["notes"] = "tosse\nfebre" if r is c.rows[-1] else "-"
    c.write_meta(render_csv(c.rows, header=[*HEADER, "notes"]))


@case("csv_short_row", accept())
def _(c: Ctx) -> None:
    """A row without its trailing optional cells (spreadsheets drop empty trailing cells)."""
    text = render_csv(c.rows).replace(",s00,HC\n", "\n", 1)
    c.write_meta(text)


@case("csv_blank_lines_and_empty_rows", accept())
def _(c: Ctx) -> None:
    """Blank lines and ',,,,,,' rows between records."""
    text = render_csv(c.rows).replace("\n", "\n\n,,,,,,\n", 3)
    c.write_meta(text)


@case("csv_in_hidden_folder", accept())
def _(c: Ctx) -> None:
    """A broken CSV inside .ipynb_checkpoints is not metadata."""
    (c.data / ".ipynb_checkpoints").mkdir()
    (c.data / ".ipynb_checkpoints" / "metadata-checkpoint.csv").write_text("garbage\n")


@case("folder_named_csv", accept())
def _(c: Ctx) -> None:
    """A folder whose name ends in .csv."""
    (c.data / "exports.csv").mkdir()


@case("csv_excel_sep_line", accept())
def _(c: Ctx) -> None:
    """Excel's 'sep=;' first line, then a ';'-separated table."""
    c.write_meta("sep=;\n" + render_csv(c.rows, sep=";"))


@case("csv_repeated_header", accept())
def _(c: Ctx) -> None:
    """Two exports concatenated with their headers."""
    text = render_csv(c.rows[:6]) + render_csv(c.rows[6:])
    c.write_meta(text)


@case("file_path_spelled_oddly", accept())
def _(c: Ctx) -> None:
    """'./', doubled slashes and outer spaces in file_path."""
    c.rows[0]["file_path"], c.rows[1]["file_path"], c.rows[2]["file_path"] = "./audio/c00.wav", "audio//c01.wav", "  audio/c02.wav "
    c.write_meta()


@case("csv_extra_columns", accept())
def _(c: Ctx) -> None:
    """Columns SPIRA does not use (notes, a hospital record number)."""
    for i, r in enumerate(c.rows):
        r["observacoes"], r["prontuario"] = "tosse seca", f"{1000 + i}"
    c.write_meta(render_csv(c.rows, header=[*HEADER, "observacoes", "prontuario"]))


@case("csv_in_subfolder", accept())
def _(c: Ctx) -> None:
    """The CSV lives in lists/ and points at ../audio/ (file_path is relative to the CSV's folder)."""
    (c.data / "lists").mkdir()
    for r in c.rows:
        r["file_path"] = "../" + r["file_path"]
    c.write_meta(name=f"lists/{META}")
    (c.data / META).unlink()


# --------------------------------------------------------------------------- cells
@case("formula_in_sexo", quarantine({1: "bad_value"}, "formula"))
def _(c: Ctx) -> None:
    """A spreadsheet formula in 'sexo' (it would reach the model card and slice tables)."""
    c.set_cells(0, sexo='=HYPERLINK("http://evil.example","M")')


@case("formula_in_hospital", quarantine({1: "bad_value"}, "formula"))
def _(c: Ctx) -> None:
    """A DDE payload in 'hospital'."""
    c.set_cells(0, hospital="+cmd|' /C calc'!A0")


@case("formula_in_speaker_id", quarantine({1: "bad_value"}, "formula"))
def _(c: Ctx) -> None:
    """'@SUM(...)' as a speaker id."""
    c.set_cells(0, speaker_id="@SUM(1+1)")


@case("formula_in_file_path", quarantine({1: "bad_value"}, "formula"))
def _(c: Ctx) -> None:
    """A formula as file_path."""
    c.set_cells(0, file_path="=1+1")


@case("control_characters_in_cell", quarantine({1: "bad_value"}, "control character"))
def _(c: Ctx) -> None:
    """A terminal escape sequence in 'hospital'."""
    c.set_cells(0, hospital="\x1b[31mHC")


@case("sexo_unknown_value", quarantine({1: "bad_value"}, "sexo"))
def _(c: Ctx) -> None:
    """'sexo' outside the vocabulary."""
    c.set_cells(0, sexo="X")


@case("sexo_spellings", accept())
def _(c: Ctx) -> None:
    """'masculino', 'Feminino', ' f ' and blank are all fine."""
    c.rows[0]["sexo"], c.rows[1]["sexo"], c.rows[2]["sexo"], c.rows[3]["sexo"] = "masculino", "Feminino", " f ", ""
    c.write_meta()


@case("dash_as_no_value", accept())
def _(c: Ctx) -> None:
    """'-' typed for unknown sex, age, level and hospital (not a formula)."""
    c.set_cells(0, sexo="-", idade="-", nivel_falta_de_ar="-", hospital="-")


@case("dyspnea_text", quarantine({2: "bad_value"}, "nivel_falta_de_ar"))
def _(c: Ctx) -> None:
    """'nivel_falta_de_ar' is a word."""
    c.set_cells(1, nivel_falta_de_ar="muito")


@case("dyspnea_negative", quarantine({2: "bad_value"}, "nivel_falta_de_ar"))
def _(c: Ctx) -> None:
    """'nivel_falta_de_ar' is negative."""
    c.set_cells(1, nivel_falta_de_ar="-1")


@case("label_float_text", accept())
def _(c: Ctx) -> None:
    """Labels written '1.0' / '0.0' (a pandas export) and ' 1 '."""
    c.rows[0]["class"], c.rows[1]["class"], c.rows[3]["class"] = "0.0", "1.0", " 1 "
    c.write_meta()


@case("label_yes", quarantine({1: "bad_label"}, "'yes'"))
def _(c: Ctx) -> None:
    """A label 'yes'."""
    c.set_cells(0, **{"class": "yes"})


@case("label_blank", quarantine({1: "bad_label"}, "missing label"))
def _(c: Ctx) -> None:
    """An empty label."""
    c.set_cells(0, **{"class": ""})


@case("label_two", quarantine({1: "bad_label"}, "expected 0 or 1"))
def _(c: Ctx) -> None:
    """A label '2'."""
    c.set_cells(0, **{"class": "2"})


@case("age_negative", quarantine({1: "bad_age"}, "outside the accepted range"))
def _(c: Ctx) -> None:
    """Age -5."""
    c.set_cells(0, idade="-5")


@case("age_200", quarantine({1: "bad_age"}, "outside the accepted range"))
def _(c: Ctx) -> None:
    """Age 200."""
    c.set_cells(0, idade="200")


@case("age_text", quarantine({1: "bad_age"}, "non-numeric age"))
def _(c: Ctx) -> None:
    """Age 'quarenta'."""
    c.set_cells(0, idade="quarenta")


@case("speaker_id_with_spaces_and_blank_hospital", accept())
def _(c: Ctx) -> None:
    """Speaker ids with inner/outer spaces, a blank hospital."""
    c.rows[0]["speaker_id"], c.rows[1]["hospital"] = " s 00 ", ""
    c.write_meta()


@case("split_unknown", quarantine({1: "bad_split"}, "unknown split"))
def _(c: Ctx) -> None:
    """A 'split' column with an unknown value."""
    for r in c.rows:
        r["split"] = "train"
    c.rows[0]["split"] = "holdout"
    c.write_meta(render_csv(c.rows, header=[*HEADER, "split"]))


@case("speaker_in_two_splits", quarantine({1: "speaker_leak", 2: "speaker_leak"}, "more than one split"))
def _(c: Ctx) -> None:
    """One speaker's clips given to train and to test."""
    for r in c.rows:
        r["split"] = "train"
    c.rows[1]["speaker_id"], c.rows[1]["split"] = c.rows[0]["speaker_id"], "test"
    c.write_meta(render_csv(c.rows, header=[*HEADER, "split"]))


@case("duplicate_row", quarantine({f"{META}:13": "duplicate"}, "duplicate", n_rows=N_CLIPS + 1))
def _(c: Ctx) -> None:
    """The same row twice."""
    c.rows.append(dict(c.rows[0]))
    c.write_meta()


@case("same_audio_conflicting_labels", quarantine({1: "label_conflict", 13: "label_conflict"}, "labels disagree", n_rows=N_CLIPS + 1))
def _(c: Ctx) -> None:
    """The same clip listed as patient and as control."""
    c.rows.append(dict(c.rows[0], **{"class": "1" if c.rows[0]["class"] == "0" else "0", "speaker_id": "sx"}))
    c.write_meta()


# --------------------------------------------------------------------------- audio content
@case("wav_header_claims_more", quarantine({1: "truncated"}, "truncated"))
def _(c: Ctx) -> None:
    """A WAV whose data chunk says 100x more bytes than the file holds."""
    data = bytearray(clip_bytes(0))
    pos = data.index(b"data")
    (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
    data[pos + 4 : pos + 8] = struct.pack("<I", size * 100)
    c.replace_clip(0, bytes(data))


@case("flac_header_claims_more", quarantine({1: "truncated"}, "truncated"))
def _(c: Ctx) -> None:
    """A FLAC whose STREAMINFO claims 2^36 - 1 frames (about 98 days at 8 kHz)."""
    c.replace_clip(0, _flac_claiming((1 << 36) - 1, seed=1000))


@case("flac_cut_short", quarantine({1: "truncated"}, "truncated"))
def _(c: Ctx) -> None:
    """A FLAC upload cut in half."""
    data = encode(voice(1000), fmt="FLAC")
    c.replace_clip(0, data[: len(data) // 2])


@case("wav_odd_encodings", accept())
def _(c: Ctx) -> None:
    """8-bit unsigned, µ-law, A-law, 24-bit, 32-bit int, 64-bit float and IMA ADPCM WAVs."""
    for i, subtype in enumerate(["PCM_U8", "ULAW", "ALAW", "PCM_24", "PCM_32", "DOUBLE", "IMA_ADPCM"]):
        c.replace_clip(i, encode(voice(1000 + i), subtype=subtype))


@case("flac_and_ogg_named_wav", accept())
def _(c: Ctx) -> None:
    """FLAC and Ogg Vorbis content in files named .wav (content decides, not the name)."""
    c.replace_clip(0, encode(voice(1000), fmt="FLAC"))
    c.replace_clip(1, encode(voice(1001), fmt="OGG", subtype="VORBIS"))


@case("mp3_named_ogg", accept())
def _(c: Ctx) -> None:
    """An MP3 named .ogg (libsndfile decodes MPEG audio)."""
    shutil.move(c.clip(0), c.data / "audio" / "c00.ogg")
    (c.data / "audio" / "c00.ogg").write_bytes(encode(voice(1000, sr=16000), sr=16000, fmt="MP3", subtype="MPEG_LAYER_III"))
    c.set_cells(0, file_path="audio/c00.ogg")


@case("float_wav_inf", quarantine({1: "nan_samples"}, "infinite"))
def _(c: Ctx) -> None:
    """A float WAV with an Inf sample."""
    w = voice(1000)
    w[100, 0] = np.inf
    c.replace_clip(0, encode(w, subtype="FLOAT"))


@case("float_wav_nan", quarantine({1: "nan_samples"}, "nan"))
def _(c: Ctx) -> None:
    """A float WAV with NaN samples."""
    w = voice(1000)
    w[10:20, 0] = np.nan
    c.replace_clip(0, encode(w, subtype="FLOAT"))


@case("one_sample_clip", quarantine({1: "too_short"}, "shorter than"))
def _(c: Ctx) -> None:
    """A clip of one sample."""
    c.replace_clip(0, encode(np.array([[0.5]], dtype=np.float32)))


@case("zero_frame_wav", quarantine({1: "zero_length"}, "zero-length"))
def _(c: Ctx) -> None:
    """A valid WAV header with no samples."""
    c.replace_clip(0, encode(np.zeros((0, 1), dtype=np.float32)))


@case("empty_file", quarantine({1: "empty_file"}, "0 bytes"))
def _(c: Ctx) -> None:
    """A 0-byte clip."""
    c.replace_clip(0, b"")


@case("wav_96k_6ch", accept())
def _(c: Ctx) -> None:
    """96 kHz, 6 channels."""
    c.replace_clip(0, encode(voice(1000, sr=96000, channels=6), sr=96000))


@case("sample_rate_zero", quarantine({1: "bad_sample_rate"}, "sample rate"))
def _(c: Ctx) -> None:
    """A WAV header with sample rate 0."""
    c.replace_clip(0, _wav_with(24, "<I", 0, seed=0))


@case("sample_rate_1hz", quarantine({1: "bad_sample_rate"}, "sample rate"))
def _(c: Ctx) -> None:
    """A WAV header with sample rate 1 Hz (4,800 samples become 80 minutes)."""
    c.replace_clip(0, _wav_with(24, "<I", 1, seed=0))


@case("sample_rate_absurd", quarantine({1: "bad_sample_rate"}, "sample rate"))
def _(c: Ctx) -> None:
    """A WAV header with a 2 GHz sample rate."""
    c.replace_clip(0, _wav_with(24, "<I", 2_000_000_000, seed=0))


@case("other_containers_named_wav", accept())
def _(c: Ctx) -> None:
    """AIFF, Sony Wave64, RF64 and Ogg Opus content (libsndfile reads them all)."""
    c.replace_clip(0, encode(voice(1000), fmt="AIFF"))
    c.replace_clip(1, encode(voice(1001), fmt="W64"))
    c.replace_clip(2, encode(voice(1002), fmt="RF64"))
    c.replace_clip(3, encode(voice(1003, sr=48000), sr=48000, fmt="OGG", subtype="OPUS"))


@case("zero_channels", quarantine({1: "unreadable"}, "channel"))
def _(c: Ctx) -> None:
    """A WAV header with 0 channels."""
    c.replace_clip(0, _wav_with(22, "<H", 0, seed=0))


@case("zip_named_wav", quarantine({1: "unreadable"}, "unreadable audio"))
def _(c: Ctx) -> None:
    """A zip archive renamed .wav."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("c00.wav", clip_bytes(0))
    c.replace_clip(0, buf.getvalue())


@case("text_named_wav", quarantine({1: "unreadable"}, "unreadable audio"))
def _(c: Ctx) -> None:
    """An HTML error page saved as .wav (a failed download)."""
    c.replace_clip(0, b"<html><body>403 Forbidden</body></html>\n" * 20)


@case("too_long_clip", quarantine({1: "too_long"}, "longer than"))
def _(c: Ctx) -> None:
    """A 31 s clip where the configured limit is 30 s."""
    c.replace_clip(0, encode(voice(1000, seconds=31.0), subtype="PCM_U8"))


@case("wav_streaming_placeholder_sizes", accept())
def _(c: Ctx) -> None:
    """A WAV written by a streaming recorder: RIFF and data sizes 0xFFFFFFFF."""
    data = bytearray(clip_bytes(0))
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    pos = data.index(b"data")
    data[pos + 4 : pos + 8] = struct.pack("<I", 0xFFFFFFFF)
    c.replace_clip(0, bytes(data))


@case("stereo_opposite_phase", quarantine({1: "silent"}, "cancel out"))
def _(c: Ctx) -> None:
    """A stereo clip whose right channel is the left one inverted: its mono mix, what the model hears, is silence."""
    left = voice(1000)
    c.replace_clip(0, encode(np.hstack([left, -left])))


@case("silent_and_clipped", quarantine({1: "silent", 2: "clipped"}, "clip"))
def _(c: Ctx) -> None:
    """A digitally silent clip and a clipped one."""
    c.replace_clip(0, encode(np.zeros((SR, 1), dtype=np.float32)))
    c.replace_clip(1, encode(np.sign(voice(1001)) * 1.0))


# --------------------------------------------------------------------------- running a case
def tree_state(root: Path) -> dict[str, str]:
    """Path -> a fingerprint of every entry under ``root`` (content for files, target for links)."""
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, os.fsencode(root)).decode("utf-8", "backslashreplace")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                state[rel] = "link:" + os.readlink(full).decode("utf-8", "backslashreplace")
            elif stat.S_ISREG(st.st_mode):
                state[rel] = f"file:{st.st_size}:{_sha256_file(full, st)}"
            elif stat.S_ISDIR(st.st_mode):
                state[rel] = "dir"
            else:
                state[rel] = f"special:{stat.S_IFMT(st.st_mode):o}"
    return state


def _sha256_file(path: bytes, st: os.stat_result) -> str:
    if not st.st_mode & 0o444:
        os.chmod(path, st.st_mode | 0o400)  # only a non-root run needs this; put back below
        try:
            return _sha256_file(path, os.lstat(path))
        finally:
            os.chmod(path, stat.S_IMODE(st.st_mode))
    h = hashlib.sha256()
    if st.st_blocks * 512 < st.st_size // 2:  # sparse: hash the allocated picture cheaply but exactly
        h.update(f"sparse:{st.st_size}:{st.st_blocks}".encode())
        with open(path, "rb") as fh:
            h.update(fh.read(1 << 20))
        return h.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Result:
    name: str
    outcome: str  # one of OUTCOMES, or "skipped"
    detail: str = ""
    modified: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "outcome": self.outcome, "detail": self.detail, "modified": self.modified, "seconds": round(self.seconds, 2)}


def _config():
    from spira_lib.config import AudioConfig, load_config

    overrides = dict(CONFIG)
    for dotted, value in OPTIONAL_CONFIG.items():
        if dotted.split(".")[1] in AudioConfig.model_fields:
            overrides[dotted] = value
    return load_config(None, overrides)


def _pipeline_to_validation(data: Path, registry: Path) -> tuple[dict[str, tuple[str, str]], set[str], bool, str]:
    """(csv:row -> (code, reason) of the quarantine, csv:row of the good rows, verdict ok, verdict message)."""
    from spira_lib.pipeline import RunSpec
    from spira_lib.pipeline import layout as L
    from spira_lib.pipeline.data_steps import snapshot_step, validate_step

    spec = RunSpec(data_uri=str(data), registry_uri=str(registry), config=_config())
    snap = snapshot_step(spec)
    checked = validate_step(spec, snap)
    ws = spec.workspace()
    quarantined = {f"{q['csv']}:{q['row']}": (q["kind"], q["reason"]) for q in L.get_json(ws.store, checked.quarantine_key, [])}
    good = L.get_frame(ws.store, checked.good_key)
    good_rows = {f"{csv}:{row}" for csv, row in good.select("source_csv", "row").iter_rows()}
    return quarantined, good_rows, bool(checked.ok), checked.message


def _unblock_fifos(root: Path) -> None:
    """Open every FIFO under ``root`` for writing and close it, so a reader stuck on it gets EOF."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass


def judge(expect: Expect, run: tuple | None, error: BaseException | None) -> tuple[str, str]:
    """(outcome, detail) of one run against what must happen."""
    from spira_lib.dataset import DatasetError
    from spira_lib.pipeline import PipelineError

    clear = isinstance(error, (DatasetError, PipelineError))
    if error is not None and not clear:
        return "crash", f"{type(error).__name__}: {error}"[:300]
    message = str(error) if error is not None else ""
    quarantined, good, ok, verdict = run if run is not None else ({}, set(), False, "")
    if expect.kind == "refuse":
        refusal = message or ("" if ok else verdict)
        if not refusal:
            return "silent", f"dataset accepted ({len(good)} good rows)"
        if expect.phrase.lower() in refusal.lower():
            return "handled", refusal[:200]
        return "misleading", f"refused, but the message lacks {expect.phrase!r}: {refusal[:200]}"
    if error is not None:
        return "misleading", f"the whole dataset was refused: {message[:200]}"
    for row, code in expect.rows.items():
        if row in good:
            return "silent", f"{row} accepted"
        got = quarantined.get(row)
        if got is None:
            return "misleading", f"{row} is neither accepted nor quarantined"
        if got[0] != code or expect.phrase.lower() not in got[1].lower():
            return "misleading", f"{row} quarantined as {got[0]}: {got[1][:200]}"
    others = {r: q for r, q in quarantined.items() if r not in expect.rows}
    if others:
        row, (code, reason) = sorted(others.items())[0]
        return "misleading", f"{len(others)} other row(s) quarantined, e.g. {row} as {code}: {reason[:160]}"
    expected_good = expect.n_rows - len(expect.rows)
    if len(good) != expected_good:
        return "misleading", f"{len(good)} good rows, expected {expected_good}"
    if expect.kind == "accept":
        return "handled", f"{len(good)} rows accepted"
    return "handled", "; ".join(f"{r}: {quarantined[r][0]}: {quarantined[r][1][:120]}" for r in expect.rows)


def run_case(c: Case, workdir: Path, base: Path, timeout: float = TIMEOUT_S) -> Result:
    if c.needs_non_root and hasattr(os, "geteuid") and os.geteuid() == 0:
        return Result(c.name, "skipped", "needs a non-root user (root reads any file)")
    import spira_lib.pipeline.data_steps  # noqa: F401 - imported before the clock starts (torch takes seconds)

    folder = workdir / c.name
    shutil.copytree(base, folder, symlinks=True)
    ctx = Ctx(folder)
    c.change(ctx)
    before = tree_state(folder)
    box: dict = {}

    def target() -> None:
        try:
            box["run"] = _pipeline_to_validation(ctx.data, workdir / f"{c.name}.registry")
        except BaseException as exc:  # noqa: BLE001 - the corpus measures every failure
            box["error"] = exc

    t0 = time.perf_counter()
    worker = threading.Thread(target=target, daemon=True, name=f"case-{c.name}")
    worker.start()
    worker.join(timeout)
    seconds = time.perf_counter() - t0
    if worker.is_alive():
        _unblock_fifos(folder)
        worker.join(5)
        outcome, detail = "hang", f"no answer within {timeout:.0f} s"
    else:
        outcome, detail = judge(c.expect, box.get("run"), box.get("error"))
    after = tree_state(folder)
    modified = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return Result(c.name, outcome, detail, modified, seconds)


def run_corpus(workdir: Path, names: list[str] | None = None, timeout: float = TIMEOUT_S) -> list[Result]:
    base = workdir / "_base"
    make_base(base)
    chosen = [c for c in CASES if names is None or c.name in names]
    return [run_case(c, workdir, base, timeout) for c in chosen]


def summary(results: list[Result]) -> dict:
    counts = Counter(r.outcome for r in results)
    return {
        "cases": len(results),
        "tried": sum(counts[o] for o in OUTCOMES),
        **{o: counts[o] for o in OUTCOMES},
        "skipped": counts["skipped"],
        "modified_files": sum(len(r.modified) for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write per-case results and the summary here")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="spira-hostile-") as tmp:
        results = run_corpus(Path(tmp), args.only, args.timeout)
    width = max(len(r.name) for r in results)
    for r in results:
        mod = f"  MODIFIED {r.modified}" if r.modified else ""
        print(f"{r.name:<{width}}  {r.outcome:<10}  {r.detail[:150]}{mod}")
    totals = summary(results)
    print(json.dumps(totals))
    if args.json:
        args.json.write_text(json.dumps({"summary": totals, "cases": [r.to_dict() for r in results]}, indent=1))
    bad = totals["crash"] + totals["hang"] + totals["misleading"] + totals["silent"] + totals["modified_files"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
