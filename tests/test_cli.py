"""`python -m shared predict` over files and folders, as a user runs it."""

import csv
import io
import subprocess
import sys

from PIL import Image

from tests.conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_predict_writes_one_row_per_face_and_one_per_failure(tmp_path, images, tiny_model_dir):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "astronaut.jpg").write_bytes(images["astronaut"])
    (folder / "sub" / "cat.jpg").write_bytes(images["chelsea"])
    (folder / "broken.png").write_bytes(b"not a png at all")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "new" / "out.csv"  # folders of --csv are created
    done = run("predict", str(folder), "--model", str(tiny_model_dir), "--csv", str(out))
    assert done.returncode == 0, done.stderr
    with out.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["path", "face", "x", "y", "w", "h", "p_fake", "label", "error"]
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert len(rows) == 3
    assert by_name["astronaut.jpg"]["face"] == "0" and by_name["astronaut.jpg"]["error"] == ""
    assert 0 <= float(by_name["astronaut.jpg"]["p_fake"]) <= 1
    assert by_name["cat.jpg"]["error"] == "no_face" and by_name["cat.jpg"]["face"] == ""
    assert by_name["broken.png"]["error"] == "not_an_image"


def test_predict_to_stdout_and_missing_path(tmp_path, tiny_model_dir):
    img = tmp_path / "grey.png"
    Image.new("RGB", (50, 50), "grey").save(img)
    done = run("predict", str(img), "--model", str(tiny_model_dir))
    assert done.returncode == 0
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert rows[0]["error"] == "no_face"
    missing = run("predict", str(tmp_path / "nope.jpg"), "--model", str(tiny_model_dir))
    assert missing.returncode == 2 and "nope.jpg does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_serve_without_a_model_says_how_to_get_one(tmp_path):
    done = run("serve", "--model", str(tmp_path / "empty"), "--port", "0")
    assert done.returncode == 1
    assert "make model" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
