"""Every tutorial notebook executes, in its quick mode (HSENS_NOTEBOOK_QUICK=1).

The notebooks run one after the other in one kernel (started once for this module: a kernel's
start and hsens_jax's import cost seconds each), its namespace wiped with ``%reset -f`` before
each notebook, so that a notebook that uses a name it does not define itself still fails.
"""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RESET = "%reset -f"


def test_there_are_three_tutorials():
    assert len(NOTEBOOKS) >= 3


@pytest.fixture(scope="module")
def kernel():
    """A started kernel manager in the repository root, with the notebooks' quick-mode environment."""
    from nbclient.util import run_sync

    env = dict(os.environ, HSENS_NOTEBOOK_QUICK="1", JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    starter = nbclient.NotebookClient(nbformat.v4.new_notebook(), kernel_name="python3")
    km = starter.create_kernel_manager()
    run_sync(km.start_kernel)(cwd=str(ROOT), env=env)
    try:
        yield km
    finally:
        run_sync(km.shutdown_kernel)(now=True)


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, kernel):
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    nb.cells.insert(0, nbformat.v4.new_code_cell(RESET))
    client = nbclient.NotebookClient(nb, km=kernel, timeout=600, kernel_name="python3")
    try:
        client.execute()
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
    cells = [c for c in nb.cells[1:] if c.cell_type == "code"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert any(c.get("outputs") for c in cells)
