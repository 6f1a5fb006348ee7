"""The layers run one way: app.py → demo/ → serving/ → training/ → models/, and below demo/ nothing
imports Gradio. import-linter checks the contracts in .importlinter against the real import graph."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """import-linter over the packages in `tree` (first on the path of a `-c` script), by its .importlinter."""
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='.importlinter', cache_dir=None, no_logo=True))"
    return subprocess.run([sys.executable, "-c", script], cwd=tree, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    checked = lint_imports(ROOT)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in checked.stdout


def test_the_contracts_see_an_import_that_runs_back_up(tmp_path):
    # The same contracts over a copy of the tree in which models/ imports serving/.
    for folder in ("demo", "serving", "training", "models"):
        (tmp_path / folder).mkdir()
        for source in (ROOT / folder).rglob("*.py"):
            target = tmp_path / folder / source.relative_to(ROOT / folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source.read_text())
    (tmp_path / "models" / "__init__.py").write_text((ROOT / "models" / "__init__.py").read_text() + "\nimport serving.cache\n")
    (tmp_path / ".importlinter").write_text((ROOT / ".importlinter").read_text())
    checked = lint_imports(tmp_path)
    assert checked.returncode != 0 and "models is not allowed to import serving" in checked.stdout
