"""What `func azure functionapp publish` would upload, computed from .funcignore."""

import pathspec
import pytest

from tests.conftest import ROOT

# The stated budget for the published tree (code, the CNN, the CLIP encoder's 85.5 MiB, the built
# page), without packages.
MAX_PUBLISH_MB = 120


def spec() -> pathspec.PathSpec:
    return pathspec.GitIgnoreSpec.from_lines((ROOT / ".funcignore").read_text().splitlines())


def published(paths: list[str]) -> set[str]:
    ignore = spec()
    return {p for p in paths if not ignore.match_file(p)}


def repo_files() -> list[str]:
    from deploy.package import candidates

    return candidates(ROOT)


@pytest.mark.parametrize(
    "path",
    [
        "function_app.py",
        "host.json",
        "requirements.txt",
        "shared/__init__.py",
        "shared/api.py",
        "models/default/model.tflite",
        "models/default/model.json",
        "models/default/clip_encoder.int8.onnx",
        "models/default/MODEL_CARD.html",
        "frontend/dist/index.html",
        "frontend/dist/assets/index-abc123.js",
    ],
)
def test_what_the_app_needs_is_published(path):
    assert published([path]) == {path}


@pytest.mark.parametrize(
    "path",
    [
        "tests/test_http.py",
        "training/train.py",
        "bench/serving.py",
        "frontend/src/App.vue",
        "frontend/package.json",
        "frontend/node_modules/vue/index.js",
        ".venv/lib/site.py",
        "local.settings.json",
        ".git/config",
        "README.md",
        "requirements-train.txt",
        "shared/__pycache__/api.cpython-311.pyc",
        "test-output/shot.png",
        ".azurite/__blobstorage__/kept-photo",
        "models/default/adapt_bank.npz",
        "infra/app.bicep",
        "azure.yaml",
        "deploy/package.py",
    ],
)
def test_what_it_does_not_need_stays_home(path):
    assert published([path]) == set()


def test_every_shared_module_is_published():
    files = repo_files()
    shared = {p for p in files if p.startswith("shared/") and p.endswith(".py")}
    assert shared and shared <= published(files)


def test_publish_set_stays_small():
    files = published(repo_files())
    size = sum((ROOT / p).stat().st_size for p in files)
    assert size < MAX_PUBLISH_MB * 2**20, f"{size / 2**20:.1f} MB in {len(files)} files"
