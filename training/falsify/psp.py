"""pixel2style2pixel (Richardson et al. 2021) as a `falsify` encoder: face -> W+ -> StyleGAN2.

Needs, none of which this project ships or can download:
- a checkout of https://github.com/eladrich/pixel2style2pixel (`--psp-repo`);
- its FFHQ inversion checkpoint `psp_ffhq_encode.pt` (linked from that README, `--psp-checkpoint`);
- PyTorch (`pip install torch`, CPU or CUDA build from pytorch.org).

pSp's StyleGAN2 ops compile CUDA kernels when imported; by default this adapter replaces them with
plain PyTorch equivalents (same maths, slower) so it runs on a CPU or on a GPU without nvcc.
"""

from __future__ import annotations

import os
import sys
import types
from argparse import Namespace
from pathlib import Path

import numpy as np

from .encoder import Encoder, EncoderError

# Files whose presence says "this is a pSp checkout" before any of it is imported.
REPO_MARKERS = ("models/psp.py", "models/stylegan2/model.py", "configs/paths_config.py")


def check_paths(repo: str | Path | None, checkpoint: str | Path | None) -> tuple[Path, Path]:
    """The two user-supplied paths, or EncoderError naming what is missing and where to get it."""
    if not repo:
        raise EncoderError(
            "--psp-repo is required: a checkout of "
            "https://github.com/eladrich/pixel2style2pixel (git clone it)."
        )
    if not checkpoint:
        raise EncoderError(
            "--psp-checkpoint is required: psp_ffhq_encode.pt, the FFHQ inversion model linked "
            "from the pixel2style2pixel README."
        )
    repo, checkpoint = Path(repo), Path(checkpoint)
    if not repo.is_dir():
        raise EncoderError(f"--psp-repo {repo}: no such folder.")
    missing = [m for m in REPO_MARKERS if not (repo / m).is_file()]
    if missing:
        raise EncoderError(
            f"--psp-repo {repo} is not a pixel2style2pixel checkout (missing {', '.join(missing)})."
        )
    if not checkpoint.is_file():
        raise EncoderError(
            f"--psp-checkpoint {checkpoint}: no such file (download psp_ffhq_encode.pt from the "
            "pixel2style2pixel README)."
        )
    if checkpoint.stat().st_size < 1_000_000:
        raise EncoderError(
            f"--psp-checkpoint {checkpoint} is only {checkpoint.stat().st_size} bytes; "
            "psp_ffhq_encode.pt is about 1.1 GB (an interrupted download?)."
        )
    return repo.resolve(), checkpoint.resolve()


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise EncoderError(
            "The pSp encoder needs PyTorch, which this project does not install: "
            "`pip install torch` (see pytorch.org for a CUDA build)."
        ) from exc
    return torch


def native_ops(torch) -> types.ModuleType:
    """`models.stylegan2.op` in plain PyTorch: the fused bias + leaky ReLU and upfirdn2d."""
    F = torch.nn.functional

    def fused_leaky_relu(x, bias, negative_slope=0.2, scale=2**0.5):
        shape = [1, -1] + [1] * (x.ndim - 2)
        return F.leaky_relu(x + bias.view(shape), negative_slope) * scale

    class FusedLeakyReLU(torch.nn.Module):
        def __init__(self, channel, negative_slope=0.2, scale=2**0.5):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(channel))
            self.negative_slope = negative_slope
            self.scale = scale

        def forward(self, x):
            return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)

    def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
        """Zero-insert upsample by `up`, pad (negative crops), FIR-filter, keep every `down`."""
        n, c, h, w = x.shape
        x = x.reshape(n * c, 1, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n * c, 1, h * up, w * up)
        p0, p1 = pad
        x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
        x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
        kh, kw = kernel.shape
        weight = torch.flip(kernel, [0, 1]).view(1, 1, kh, kw).to(x)
        x = F.conv2d(x, weight)[:, :, ::down, ::down]
        return x.reshape(n, c, x.shape[2], x.shape[3])

    mod = types.ModuleType("models.stylegan2.op")
    mod.FusedLeakyReLU = FusedLeakyReLU
    mod.fused_leaky_relu = fused_leaky_relu
    mod.upfirdn2d = upfirdn2d
    return mod


class PSPEncoder(Encoder):
    name = "psp"
    input_size = 256

    def __init__(
        self,
        repo: str | Path | None = None,
        checkpoint: str | Path | None = None,
        device: str = "auto",
        batch_size: int = 4,
        cuda_ops: bool = False,
    ):
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise EncoderError(f"--device {device!r}: use auto, cpu, cuda or cuda:N.")
        if batch_size < 1:
            raise EncoderError("--batch-size must be at least 1.")
        self.repo, self.checkpoint = check_paths(repo, checkpoint)
        torch = _torch()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EncoderError(f"--device {device}: PyTorch sees no CUDA GPU here.")
        self.torch, self.device, self.batch_size = torch, device, batch_size
        self.net = self._load(cuda_ops)

    def _load(self, cuda_ops: bool):
        torch = self.torch
        if "models" in sys.modules:
            where = getattr(sys.modules["models"], "__path__", None)
            raise EncoderError(
                f"A different `models` package is already imported ({where}); run falsify in a "
                "fresh process so pSp's `models` package can load."
            )
        sys.path.insert(0, str(self.repo))
        if not cuda_ops:
            sys.modules["models.stylegan2.op"] = native_ops(torch)
        # pSp's own loader predates torch.load(weights_only=True); the checkpoint is the
        # user's own file, named on the command line.
        os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        try:
            from models.psp import pSp  # the checkout's module, found via sys.path[0]
        except Exception as exc:
            raise EncoderError(f"pSp from {self.repo} cannot be imported: {exc}") from exc
        try:
            ckpt = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
            opts = dict(ckpt["opts"])
        except Exception as exc:
            raise EncoderError(f"{self.checkpoint} is not a pSp checkpoint: {exc}") from exc
        if opts.get("dataset_type") not in (None, "ffhq_encode"):
            raise EncoderError(
                f"{self.checkpoint} was trained for {opts['dataset_type']!r}, not ffhq_encode: "
                "falsify needs psp_ffhq_encode.pt (face inversion)."
            )
        opts.update(checkpoint_path=str(self.checkpoint), device=self.device)
        opts.setdefault("learn_in_w", False)
        opts.setdefault("output_size", 1024)
        del ckpt
        net = pSp(Namespace(**opts))
        return net.eval().to(self.device)

    def encode(self, face: np.ndarray) -> np.ndarray:
        return self.encode_batch([face])[0]

    def encode_batch(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        out: list[np.ndarray] = []
        for start in range(0, len(faces), self.batch_size):
            chunk = np.stack(faces[start : start + self.batch_size]).astype(np.float32)
            # pSp's ffhq_encode transform: 256², ToTensor, Normalize(0.5, 0.5) -> [-1, 1].
            x = torch.from_numpy(chunk / 127.5 - 1.0).permute(0, 3, 1, 2).to(self.device)
            with torch.no_grad():
                y = self.net(x, randomize_noise=False, resize=True)
            y = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            out.extend(y.permute(0, 2, 3, 1).cpu().numpy())
        return out

    def describe(self) -> dict:
        return {
            "name": self.name,
            "repo": str(self.repo),
            "checkpoint": str(self.checkpoint),
            "device": self.device,
        }
