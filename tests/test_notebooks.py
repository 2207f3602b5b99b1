"""The notebooks are executed against a real bundle so they never rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["model_report.ipynb", "threshold_simulation.ipynb"])
def test_notebook_executes(name: str, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_BUNDLE", str(bundle_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors


def test_threshold_simulation_shows_each_tiers_misses_on_a_tiered_bundle(
    tiered_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_BUNDLE", str(tiered_bundle_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOKS / "threshold_simulation.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "Decided automatically" in text and "Reviewer FTE saved" in text
    assert "missed/day" in text and "severe" in text and "not tiered" not in text


REPO = NOTEBOOKS.parent


def _install_kernel(prefix: Path) -> dict[str, object]:
    """`make notebooks`'s kernel registration, into a scratch prefix instead of the venv."""
    import json
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "listing-triage"],
        check=True,
        capture_output=True,
    )
    return json.loads((prefix / "share" / "jupyter" / "kernels" / "listing-triage" / "kernel.json").read_text())


def test_make_notebooks_registers_the_kernel_and_starts_jupyterlab_on_notebooks() -> None:
    import sys

    from tests.conftest import make_dry_run

    lines = make_dry_run("notebooks", "NOTEBOOK_PORT=8899").splitlines()
    assert lines[0].startswith(".venv/bin/python -m ipykernel install --sys-prefix --name listing-triage")
    assert lines[1] == ".venv/bin/jupyter lab notebooks/ --no-browser --ip 127.0.0.1 --port 8899"
    assert (Path(sys.executable).parent / "jupyter-lab").is_file()  # jupyterlab is a dev dependency
    for name in ("model_report.ipynb", "threshold_simulation.ipynb"):
        assert nbformat.read(NOTEBOOKS / name, as_version=4).metadata.kernelspec.name == "listing-triage"


def test_nbconvert_executes_a_notebook_on_the_project_kernel(
    bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    kernel = _install_kernel(tmp_path / "prefix")
    assert kernel["argv"][0] == sys.executable  # type: ignore[index]
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "prefix" / "share" / "jupyter"))
    monkeypatch.setenv("TRIAGE_BUNDLE", str(bundle_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            str(NOTEBOOKS / "threshold_simulation.ipynb"),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    executed = nbformat.read(tmp_path / "out" / "threshold_simulation.ipynb", as_version=4)
    assert executed.metadata.kernelspec.name == "listing-triage"
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs and not [o for o in outputs if o.get("output_type") == "error"]
