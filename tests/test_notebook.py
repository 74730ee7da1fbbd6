"""The quickstart notebook runs offline, top to bottom, and shows a cited answer."""

from __future__ import annotations

import re
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes_offline(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [
        "".join(o.get("text", "") for o in cell.get("outputs", [])) for cell in nb.cells if cell.cell_type == "code"
    ]
    assert not [o for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    synthesis, references = outputs[1], outputs[2]
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", synthesis)}
    listed = re.findall(r"^(\d+) (\d+) https://pubmed\.ncbi\.nlm\.nih\.gov/\2/$", references, re.M)
    assert cited and listed and cited <= {int(n) for n, _ in listed}
    assert "statin" in outputs[-1].lower()  # the offline search found statin records
