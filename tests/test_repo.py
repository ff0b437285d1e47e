"""The README's two set-up commands are exactly what CI runs."""

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
