"""`python -m training falsify` with a stand-in encoder on real FairFace faces and real dlib."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.__main__ import main
from training.falsify import run as falsify
from training.falsify.encoder import Encoder

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAIRFACE = DATA / "fairface"
ROOT = Path(__file__).resolve().parents[1]
# FairFace val images dlib finds a face in (val/5.jpg, for one, it does not).
FACES = ["val/3.jpg", "val/4.jpg", "val/6.jpg", "val/7.jpg"]


class MirrorEncoder(Encoder):
    """Stand-in for pSp: a deterministic transform (mirror + invert) that counts its calls."""

    name = "mirror"
    calls = 0
    fail_on_mean_below: float | None = None

    def encode(self, face: np.ndarray) -> np.ndarray:
        type(self).calls += 1
        if self.fail_on_mean_below is not None and face.mean() < self.fail_on_mean_below:
            raise RuntimeError("stand-in failure")
        return np.ascontiguousarray(255 - face[:, ::-1])


class OtherEncoder(MirrorEncoder):
    name = "other"


def cli(*argv) -> int:
    return main(["falsify", "--quiet", *map(str, argv)])


def read(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def real_set(tmp_path) -> tuple[Path, dict[str, dict]]:
    """A FairFace-layout root: four real faces, a gray square, a non-image, a missing file."""
    labels_csv = FAIRFACE / "fairface_label_val.csv"
    if not labels_csv.is_file():
        pytest.skip("needs ../shared/data/fairface (the shared data set beside the repository)")
    labels = {r["file"]: r for r in read(labels_csv)}
    root = tmp_path / "fairface"
    (root / "val").mkdir(parents=True)
    for rel in FACES:
        shutil.copy(FAIRFACE / rel, root / rel)
    Image.new("RGB", (224, 224), (128, 128, 128)).save(root / "val" / "gray.jpg")
    (root / "val" / "text.jpg").write_bytes(b"this is not a picture")
    rows = [labels[f] for f in FACES[:2]]
    rows += [
        {"file": "val/gray.jpg", "age": "20-29", "gender": "Male", "race": "White"},
        {"file": "val/text.jpg", "age": "3-9", "gender": "Female", "race": "Black"},
        {"file": "val/gone.jpg", "age": "more than 70", "gender": "Female", "race": "Indian"},
    ]
    rows += [labels[f] for f in FACES[2:]]
    rows.append({"file": "train/1.jpg", "age": "0-2", "gender": "Male", "race": "White"})
    with (root / "fairface_label_val.csv").open("w", newline="") as fh:
        w = csv.DictWriter(
            fh,
            fieldnames=["file", "age", "gender", "race", "service_test"],
            extrasaction="ignore",
            restval="True",
        )
        w.writeheader()
        w.writerows(rows)
    return root, {r["file"]: r for r in rows}


@pytest.mark.slow
def test_falsify_names_labels_failures_and_resumes(real_set, tmp_path, capsys):
    root, labels = real_set
    out = tmp_path / "fakes"
    MirrorEncoder.calls = 0
    enc = f"{__name__}:MirrorEncoder"
    assert cli("--data", root, "--out", out, "--split", "val", "--encoder", enc) == 0
    assert MirrorEncoder.calls == 4
    assert "7 faces: 0 already done, 4 made now, 3 failed now" in capsys.readouterr().out

    pairs = read(out / "pairs.csv")
    assert list(pairs[0]) == ["real_path", "fake_path", "age", "gender", "race", "status"]
    want_order = [f for f in labels if f.startswith("val/")]
    assert [p["real_path"] for p in pairs] == want_order  # the labels' order, train/ excluded
    by = {p["real_path"]: p for p in pairs}
    for rel in FACES:
        row = by[rel]
        assert row["status"] == "ok" and row["fake_path"] == rel  # same name, parallel tree
        lab = labels[rel]
        assert (row["age"], row["gender"], row["race"]) == (lab["age"], lab["gender"], lab["race"])
        with Image.open(out / rel) as fake:
            assert fake.format == "JPEG" and fake.size == (256, 256)
            got = np.asarray(fake.convert("RGB"), dtype=np.float32)
        # The fake is the stand-in applied to the shared FFHQ alignment of the largest face.
        from shared.faces import detect_and_align
        from shared.images import load_image

        aligned = np.asarray(detect_and_align(load_image(root / rel), 256)[0].aligned)
        want = (255 - aligned[:, ::-1]).astype(np.float32)
        assert np.abs(got - want).mean() < 3  # JPEG q95 round trip only
    assert {k: by[k]["status"] for k in ("val/gray.jpg", "val/text.jpg", "val/gone.jpg")} == {
        "val/gray.jpg": "no_face",
        "val/text.jpg": "not_an_image",
        "val/gone.jpg": "missing",
    }
    assert all(by[k]["fake_path"] == "" for k in ("val/gray.jpg", "val/text.jpg"))
    failures = read(out / "failures.csv")
    assert [f["real_path"] for f in failures] == ["val/gray.jpg", "val/text.jpg", "val/gone.jpg"]
    assert all(f["detail"] for f in failures)
    assert not (out / "val" / "gray.jpg").exists()
    manifest = json.loads((out / "falsify.json").read_text())
    assert manifest["real_root"] == str(root.resolve())
    assert manifest["encoder"]["name"] == "mirror"

    # Rerun: nothing to do. Failures are kept, not retried, unless asked.
    MirrorEncoder.calls = 0
    assert cli("--data", root, "--out", out, "--split", "val", "--encoder", enc) == 0
    assert MirrorEncoder.calls == 0
    assert "7 already done, 0 made now" in capsys.readouterr().out

    # A lost fake and a crash mid-line: exactly that work is redone, nothing duplicated.
    (out / FACES[1]).unlink()
    with (out / "pairs.csv").open("a") as fh:
        fh.write(f"{FACES[2]},{FACES[2]},20-2")
    MirrorEncoder.calls = 0
    assert cli("--data", root, "--out", out, "--split", "val", "--encoder", enc) == 0
    assert MirrorEncoder.calls == 1
    again = read(out / "pairs.csv")
    assert [p["real_path"] for p in again] == want_order
    assert again == pairs
    assert (out / FACES[1]).is_file()

    # Fakes of two encoders never mix in one folder.
    assert cli("--data", root, "--out", out, "--encoder", f"{__name__}:OtherEncoder") == 2
    assert "made by encoder 'mirror'" in capsys.readouterr().err


@pytest.mark.slow
def test_an_encoder_failure_fails_that_face_only_and_limit_is_seeded(real_set, tmp_path):
    root, _ = real_set
    enc = MirrorEncoder()
    faces = []
    from shared.faces import detect_and_align
    from shared.images import load_image

    for rel in FACES:
        faces.append(np.asarray(detect_and_align(load_image(root / rel), 256)[0].aligned).mean())
    enc.fail_on_mean_below = sorted(faces)[0] + 1e-3  # the darkest face only
    s = falsify.falsify(root, tmp_path / "a", enc, split="val", batch_size=8, progress=False)
    assert s.statuses["encoder_error"] == 1 and s.statuses["ok"] == 3
    failed = [f for f in read(tmp_path / "a" / "failures.csv") if f["status"] == "encoder_error"]
    assert len(failed) == 1 and "stand-in failure" in failed[0]["detail"]

    a = falsify.falsify(
        root, tmp_path / "b", MirrorEncoder(), split="val", limit=3, seed=4, progress=False
    )
    falsify.falsify(
        root, tmp_path / "c", MirrorEncoder(), split="val", limit=3, seed=4, progress=False
    )
    assert a.total == 3
    pa, pb = read(tmp_path / "b" / "pairs.csv"), read(tmp_path / "c" / "pairs.csv")
    assert [p["real_path"] for p in pa] == [p["real_path"] for p in pb]


def test_bad_input_is_one_sentence(tmp_path, capsys):
    assert (
        cli(
            "--data",
            tmp_path / "nope",
            "--out",
            tmp_path / "o",
            "--encoder",
            f"{__name__}:MirrorEncoder",
        )
        == 2
    )
    assert "--data" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "labels.csv").write_text("name,x\n1,2\n")
    assert (
        cli(
            "--data",
            tmp_path / "d",
            "--out",
            tmp_path / "o",
            "--labels",
            tmp_path / "d" / "labels.csv",
            "--encoder",
            f"{__name__}:MirrorEncoder",
        )
        == 2
    )
    assert "needs columns file,age,gender,race" in capsys.readouterr().err
    assert cli("--data", tmp_path / "d", "--out", tmp_path / "o", "--encoder", "nomodule") == 2
    assert "psp" in capsys.readouterr().err
    assert cli("--data", tmp_path / "d", "--out", tmp_path / "o", "--encoder", "json:loads") == 2
    assert "is not a training.falsify.encoder.Encoder class" in capsys.readouterr().err


# --- the pSp adapter, as far as it goes without weights ----------------------------------------


def fake_checkout(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "pixel2style2pixel"
    for marker in ("models/psp.py", "models/stylegan2/model.py", "configs/paths_config.py"):
        (repo / marker).parent.mkdir(parents=True, exist_ok=True)
        (repo / marker).write_text("")
    ckpt = tmp_path / "psp_ffhq_encode.pt"
    ckpt.write_bytes(b"\0" * 1_100_000)
    return repo, ckpt


def test_psp_adapter_checks_paths_before_anything_else(tmp_path, capsys):
    from training.falsify.psp import check_paths

    repo, ckpt = fake_checkout(tmp_path)
    args = ["--data", tmp_path, "--out", tmp_path / "o", "--encoder", "psp"]
    cases = [
        ([], "--psp-repo is required"),
        (["--psp-repo", repo], "--psp-checkpoint is required"),
        (["--psp-repo", tmp_path / "none", "--psp-checkpoint", ckpt], "no such folder"),
        (["--psp-repo", tmp_path, "--psp-checkpoint", ckpt], "not a pixel2style2pixel checkout"),
        (["--psp-repo", repo, "--psp-checkpoint", tmp_path / "x.pt"], "no such file"),
        (["--psp-repo", repo, "--psp-checkpoint", ckpt, "--device", "tpu"], "--device 'tpu'"),
    ]
    for extra, message in cases:
        assert cli(*args, *extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
    small = tmp_path / "small.pt"
    small.write_bytes(b"\0" * 100)
    with pytest.raises(Exception, match="interrupted download"):
        check_paths(repo, small)
    assert check_paths(repo, ckpt) == (repo.resolve(), ckpt.resolve())


def test_psp_adapter_says_pytorch_is_needed(tmp_path, capsys):
    try:
        import torch  # noqa: F401

        pytest.skip("PyTorch is installed here; the missing-torch message cannot show")
    except ImportError:
        pass
    repo, ckpt = fake_checkout(tmp_path)
    assert (
        cli(
            "--data",
            tmp_path,
            "--out",
            tmp_path / "o",
            "--encoder",
            "psp",
            "--psp-repo",
            repo,
            "--psp-checkpoint",
            ckpt,
        )
        == 2
    )
    assert "needs PyTorch" in capsys.readouterr().err


def test_native_ops_match_a_direct_convolution():
    """The CPU stand-ins for pSp's CUDA ops, against the definition written out in numpy."""
    torch = pytest.importorskip("torch")
    from training.falsify.psp import native_ops

    ops = native_ops(torch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    k = rng.standard_normal((4, 4)).astype(np.float32)
    for up, down, pad in ((1, 1, (1, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (-1, 0))):
        got = ops.upfirdn2d(torch.from_numpy(x), torch.from_numpy(k), up, down, pad).numpy()
        z = np.zeros((2, 3, 8 * up, 8 * up), np.float32)
        z[:, :, ::up, ::up] = x
        p0, p1 = pad
        z = np.pad(z, ((0, 0), (0, 0), (max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
        z = z[:, :, max(-p0, 0) : z.shape[2] - max(-p1, 0), max(-p0, 0) : z.shape[3] - max(-p1, 0)]
        oh, ow = z.shape[2] - 3, z.shape[3] - 3
        want = np.zeros((2, 3, oh, ow), np.float32)
        for i in range(oh):
            for j in range(ow):  # true convolution: the kernel flipped
                want[:, :, i, j] = (z[:, :, i : i + 4, j : j + 4] * k[::-1, ::-1]).sum((2, 3))
        np.testing.assert_allclose(got, want[:, :, ::down, ::down], rtol=1e-4, atol=1e-4)
    b = torch.tensor([0.5, -1.0, 0.0])
    y = ops.fused_leaky_relu(torch.from_numpy(x), b).numpy()
    pre = x + b.numpy()[None, :, None, None]
    np.testing.assert_allclose(y, np.where(pre > 0, pre, 0.2 * pre) * 2**0.5, rtol=1e-5)


def test_help_explains(tmp_path):
    """`python -m training falsify --help` runs in a fresh process (imports no TensorFlow)."""
    code = (
        "import argparse; from training.__main__ import add_command; "
        "from training.falsify import run as falsify; "
        "p = argparse.ArgumentParser(prog='python -m training'); "
        "add_command(p.add_subparsers(), 'falsify', falsify); p.parse_args(['falsify', '--help'])"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and "pairs.csv" in res.stdout and "--psp-checkpoint" in res.stdout
