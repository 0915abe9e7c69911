"""`python -m shared predict ...` (batch, no HTTP) and `python -m shared serve` (local host)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import ExplainUnavailable, ModelUnavailable
from .settings import ROOT


def _serve(args: argparse.Namespace) -> int:
    if args.model:
        os.environ["FAKEFACES_MODEL_DIR"] = str(args.model)
    sys.path.insert(0, str(ROOT))
    import function_app

    from . import api, localhost
    from .faces import _models

    spec = api.model().spec
    _models()  # load the detector and landmark models now, not on the first request
    prefix = localhost.route_prefix(ROOT / "host.json")
    print(
        f"Serving {spec.name} {spec.version} from {api.settings().model_dir} "
        f"on http://{args.host}:{args.port}/ (Ctrl+C stops)",
        flush=True,
    )
    localhost.serve(function_app.app, args.host, args.port, prefix, threads=args.threads)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .cli import predict

    return predict(args.paths, args.model, args.csv, args.explain)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared",
        description="Tell AI-generated (GAN or diffusion) face photos from real ones.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "predict",
        help="score image files and folders, CSV out",
        description="Run the serving pipeline (decode, dlib detection, FFHQ "
        "alignment, LiteRT model) on files and folders (recursive). Writes one "
        "CSV row per face: path,face,x,y,w,h,p_fake,label,error; a file with no "
        "face or that fails gets one row with `error` set (no_face, "
        "not_an_image, too_large, unreadable). Exits 0 when it ran.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    p.add_argument(
        "--model", type=Path, help="model folder (default: FAKEFACES_MODEL_DIR or models/default)"
    )
    p.add_argument("--csv", type=Path, help="write the CSV here instead of standard output")
    p.add_argument(
        "--explain",
        type=Path,
        metavar="DIR",
        help="also write each face's Grad-CAM heat map over its aligned crop as "
        "DIR/<file>-face<N>.png (warm: what pushed the model towards its label)",
    )
    p.set_defaults(func=_predict)

    s = sub.add_parser(
        "serve",
        help="run the function app on a local HTTP server",
        description="Serve function_app.py's routes (page, /api/predict, "
        "/api/health) with waitress, as `func start` would, on one port.",
    )
    s.add_argument(
        "--host", default="localhost", help="interface to listen on (default: localhost)"
    )
    s.add_argument("--port", type=int, default=7071, help="port (default: 7071, as func start)")
    s.add_argument("--model", type=Path, help="model folder (overrides FAKEFACES_MODEL_DIR)")
    s.add_argument("--threads", type=int, default=4, help="worker threads (default: 4)")
    s.set_defaults(func=_serve)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ModelUnavailable, ExplainUnavailable) as exc:  # no model to serve or to explain with
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
