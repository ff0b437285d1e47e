"""The README's two set-up commands are exactly what CI runs; its table of differences is complete."""

import re

from conftest import REPO_ROOT


def readme_setup_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_readme_starts_with_two_setup_commands_that_ci_runs():
    commands = readme_setup_commands()
    assert len(commands) == 2
    ci_lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    positions = [ci_lines.index(command) for command in commands]
    assert positions == sorted(positions), "CI must run the README commands in order"


def test_readme_table_lists_every_published_protocol_key():
    from cub.published import PUBLISHED as CUB_PUBLISHED
    from cxr.published import PUBLISHED as CXR_PUBLISHED

    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("## What differs from the published code"):]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line.rstrip().endswith("**P** |")]
    marked = {key for row in rows for key in re.findall(r"`(\w+)`", row.split("|")[3])}
    from folder.published import PUBLISHED as FOLDER_PUBLISHED

    for published in (CUB_PUBLISHED, CXR_PUBLISHED, FOLDER_PUBLISHED):
        for method, settings in published.items():
            missing = set(settings) - marked
            assert not missing, f"{method}: {missing} not marked P in the README table"


def test_no_source_file_is_ignored_by_git():
    # `data/` in .gitignore once hid gaze/data/*.py and tests/data/*.py from every commit.
    import shutil
    import subprocess

    import pytest

    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    sources = [str(p.relative_to(REPO_ROOT)) for folder in ("gaze", "cub", "cxr", "folder", "tests", "bench", "examples")
               for p in (REPO_ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *sources], cwd=REPO_ROOT,
                             capture_output=True, text=True).stdout.split()
    assert not ignored, f"source files ignored by .gitignore: {ignored}"


def _imports_of(path, module: str) -> set[str]:
    """Project modules ``path`` imports (at any depth of the file: lazy imports count too)."""
    import ast

    found = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in ("gaze", "cub", "cxr", "folder"))
    return found


def test_no_import_cycle_between_files():
    """DESIGN.md §1: data flows one way; a cycle between two files (lazy imports included) is a tangle."""
    import networkx  # a dependency of torch

    modules = {}
    for path in sorted(REPO_ROOT.glob("*/**/*.py")):
        relative = path.relative_to(REPO_ROOT)
        if relative.parts[0] in ("gaze", "cub", "cxr", "folder"):
            name = ".".join(relative.with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    graph = networkx.DiGraph()
    for name, path in modules.items():
        for target in _imports_of(path, name):
            while target and target not in modules:  # 'gaze.models.create_model' -> 'gaze.models'
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(f"{target}."):  # a package's own parent
                graph.add_edge(name, target)
    assert len(graph) > 40
    cycles = list(networkx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles[:5]}"
