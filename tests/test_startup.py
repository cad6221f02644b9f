"""Figure and table jobs start without importing torch (their start-up is most of their time)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).parents[1] / "workflow" / "scripts"
STILL_TORCH = {"plot_freeze.py", "plot_load_dynamics.py", "plot_separation_metrics.py"}
"""Figure scripts whose readers still live in torch modules (`interventions`, `phase`, `springblock`)."""


def import_lines(script: Path) -> list[str]:
    tree = ast.parse(script.read_text())
    return [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_figure_and_table_scripts_import_no_torch():
    scripts = sorted(SCRIPTS.glob("plot_*.py")) + [
        SCRIPTS / "isotropy_table.py",
        SCRIPTS / "consistency_stats.py",
        SCRIPTS / "claims.py",
    ]
    lines = sorted({line for s in scripts if s.name not in STILL_TORCH for line in import_lines(s)})
    code = "\n".join(
        [*lines, "import sys", "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"]
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"torch imported by: {lines}"
