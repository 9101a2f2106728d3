"""The README's layout block is the tree: every module under src/ptxseg is named there, and every file it names
exists. A line starting with ``src/ptxseg/...`` sets the folder the names after it live in (its own folder for a
file, the folder itself for a ``.../`` path); indented lines continue it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout() -> tuple[set[Path], list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    named: set[Path] = set()
    absent: list[str] = []
    base: Path | None = None
    for line in block.splitlines():
        head = re.match(r"(src/ptxseg/\S*)", line)
        if head:
            first = head.group(1).rstrip(",")
            base = ROOT / first if first.endswith("/") else (ROOT / first).parent
            rest = line[len(head.group(0)) :]
            if first.endswith(".py"):
                named.add((ROOT / first).resolve())
                if not (ROOT / first).is_file():
                    absent.append(first)
        elif line.startswith(" ") and base is not None:
            rest = line
        else:
            base = None
            continue
        for name in re.findall(r"(?<![\w/.`])([A-Za-z_]\w*\.py)\b", rest):
            path = base / name
            named.add(path.resolve())
            if not path.is_file():
                absent.append(str(path.relative_to(ROOT)))
    return named, absent


def test_every_file_the_layout_names_exists():
    _, absent = _layout()
    assert not absent, f"README layout names files that are not in the tree: {absent}"


def test_every_module_is_in_the_layout():
    named, _ = _layout()
    modules = {p.resolve() for p in (ROOT / "src" / "ptxseg").rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    missing = sorted(str(p.relative_to(ROOT)) for p in modules - named)
    assert not missing, f"modules missing from the README layout: {missing}"
