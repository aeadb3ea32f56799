"""Every committed file under results/ names the ``python -m ...`` command that regenerates it (issue 7).

JSON: a top-level ``"command"`` string; markdown: the command in the text; PNG: a tEXt/iTXt chunk (matplotlib
writes ``savefig(metadata={"Description": "made by: <command>"})`` as tEXt).
"""

import json
import pathlib
import re
import struct
import zlib

import pytest

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"
COMMAND = re.compile(r"python -m [A-Za-z_][\w.]*")
FILES = sorted(p for p in RESULTS.rglob("*") if p.suffix in (".md", ".json", ".png") and p.is_file())


def png_text(data: bytes) -> dict[str, str]:
    """Keyword -> text of a PNG's tEXt, zTXt and iTXt chunks (PNG spec §11.3.4)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file (bad signature)")
    out, pos = {}, 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            out[key.decode("latin-1")] = text.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\0")  # language tag
            _, _, text = rest.partition(b"\0")  # translated keyword
            out[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        elif kind == b"IEND":
            break
    return out


def named_command(path: pathlib.Path) -> str | None:
    """The ``python -m ...`` command a results file names, or None."""
    if path.suffix == ".json":
        payload = json.loads(path.read_text())
        text = payload.get("command", "") if isinstance(payload, dict) else ""
    elif path.suffix == ".md":
        text = path.read_text()
    else:
        text = "\n".join(png_text(path.read_bytes()).values())
    found = COMMAND.search(text if isinstance(text, str) else "")
    return found.group(0) if found else None


def test_png_text_reads_matplotlib_metadata(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    fig.savefig(tmp_path / "a.png", metadata={"Description": "made by: python -m experiments.x --y=1"})
    fig.savefig(tmp_path / "b.png")
    assert named_command(tmp_path / "a.png") == "python -m experiments.x"
    assert named_command(tmp_path / "b.png") is None
    (tmp_path / "c.json").write_text(json.dumps({"commandx": "python -m a"}))
    assert named_command(tmp_path / "c.json") is None


def test_results_folder_has_files():
    assert FILES, f"no .md/.json/.png files under {RESULTS}"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(RESULTS)) for p in FILES])
def test_results_file_names_its_command(path):
    assert named_command(path), (
        f"{path.relative_to(RESULTS.parent)} does not name the `python -m ...` command that regenerates it "
        '(JSON: top-level "command"; markdown: in the text; PNG: savefig metadata={"Description": ...})'
    )
