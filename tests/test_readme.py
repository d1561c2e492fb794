"""The README is a front door: one screen with the two commands and measured figures, then links that resolve."""
from __future__ import annotations

import re

from tests.conftest import REPO

LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(?:#[^)]*)?\)")


def test_the_first_screen_has_the_diagram_the_two_commands_and_measured_figures_with_their_commands():
    first = "\n".join((REPO / "README.md").read_text().splitlines()[:50])
    assert "edge node" in first and "wire" in first and "fusion decoder" in first
    assert "./dev demo" in first and "./dev test" in first
    measured = first.split("## Measured", 1)[1]
    assert re.search(r"kbit/s", measured) and "`ndsc demo --duration" in measured and "`ndsc ecg-eval" in measured


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "deploy" / "README.md"]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} → {target}")
    assert not broken
    assert (REPO / "docs" / "environment.md").is_file() and "docs/environment.md" in (REPO / "README.md").read_text()
