"""`pip install -e .` makes the library importable from any directory, checkpoints included."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_editable_install_imports_from_another_directory(tmp_path):
    pytest.importorskip("setuptools", minversion="64")  # the build backend pyproject.toml names
    prefix = tmp_path / "prefix"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--prefix", str(prefix)]
    subprocess.run([*pip, "-e", str(ROOT)], check=True, cwd=tmp_path, capture_output=True)
    site = next(prefix.glob("lib/python*/site-packages"))
    script = (
        f"import site, sys; sys.path[:] = [p for p in sys.path if p not in ('', {str(ROOT)!r})]; "
        f"site.addsitedir({str(site)!r}); "
        "import maskmamba; from maskmamba import Pipeline; from maskmamba.serving import ASSETS, find_variants; "
        "print(maskmamba.__file__); print(len(find_variants(ASSETS)))"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, capture_output=True, text=True, check=True)
    module_file, variants = out.stdout.split()
    assert Path(module_file).parts[-2:] == ("maskmamba", "__init__.py")
    assert int(variants) >= 1  # the checkout's shipped checkpoints are found from anywhere

