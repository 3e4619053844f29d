"""The layout's rules, checked with ``ast`` over ``advisor/**/*.py`` and ``plugins/*.py``.

- the import graph of module-level imports has no cycle;
- no module imports another module's private name (``from advisor.x import _y``, ``x._y``);
- no module over 300 lines unless its docstring's first paragraph has a ``Size:`` line saying why;
- SQL (``.execute(`` / ``.executemany(``) only under ``advisor/store/``;
- ``advisor/numeric/`` is numpy only: no torch, directly or through the modules it imports;
- papers are named by authors and year: no "seed 00N" in the code, README or docs.

Each test lists every offender in its failure message, not only the first.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 300
SQL_METHODS = {"execute", "executemany", "executescript"}
TORCH = {"torch", "torchvision", "timm"}  # timm imports torch
SEED_NUMBER = re.compile(r"seeds?[\s_-]*0\d\d", re.IGNORECASE)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Every module by dotted name: ``advisor/...`` as is, ``plugins/x.py`` as ``advisor.plugins.x``
    (where it installs)."""
    found = {}
    for path in sorted((REPO / "advisor").rglob("*.py")) + sorted((REPO / "plugins").glob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[0] == "plugins":
            parts = ["advisor", *parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@lru_cache(maxsize=None)
def tree(name: str) -> ast.Module:
    path = modules()[name]
    return ast.parse(path.read_text(), filename=str(path))


def rel(name: str) -> str:
    return str(modules()[name].relative_to(REPO))


def is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def absolute(name: str, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` names, relative imports resolved against ``name``."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package(name) else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(name: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules of the repository an import statement loads: ``from pkg import sub`` is
    ``pkg.sub`` when that is a module, else ``pkg``. Parent packages are not counted (importing
    ``a.b.c`` runs ``a/__init__`` too, but a partly initialised parent is what Python expects)."""
    known = modules()
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    source = absolute(name, node)
    targets = []
    for alias in node.names:
        if f"{source}.{alias.name}" in known:
            targets.append(f"{source}.{alias.name}")
        elif source in known:
            targets.append(source)
    return targets


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(body: list[ast.stmt]):
    """Import statements run when the module is imported: its body, class bodies, ``if``/``try``/
    ``with`` blocks; not function bodies, not ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not is_type_checking(node):
                yield from module_level_imports(node.body)
            yield from module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from module_level_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from module_level_imports(node.body)


@lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name in modules():
        graph[name] = {t for node in module_level_imports(tree(name).body) for t in imported_modules(name, node)} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle, as a module chain ``a -> b -> ... -> a``, per strongly connected component
    (Tarjan) that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    found = []
    for component in components:
        members = set(component)
        start = component[0]
        # breadth-first from start back to start inside the component: a shortest cycle through it
        parents: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parents:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w not in parents:
                        parents[w] = v
                        nxt.append(w)
            frontier = nxt
        chain = [start]
        v = parents[start]
        while v != start:
            chain.append(v)
            v = parents[v]
        found.append([start, *reversed(chain[1:]), start])
    return found


def test_cycle_finder_reports_the_module_chain():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert "advisor.errors" in graph and any(graph.values()), "the import graph was not built"
    found = cycles(graph)
    assert not found, "import cycles among module-level imports:\n" + "\n".join(" -> ".join(c) for c in found)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attribute accesses on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def private_uses(name: str) -> list[str]:
    """Another module's private names that ``name`` imports or reads, as ``line: what``."""
    known = modules()
    found = []
    aliases: dict[str, str] = {}  # local name -> repository module it is bound to (any scope)
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known or a.name.split(".")[0] == "advisor":
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            source = absolute(name, node)
            if source.split(".")[0] != "advisor":
                continue
            for a in node.names:
                if f"{source}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{source}.{a.name}"
                elif is_private(a.name) and source != name:
                    found.append(f"{node.lineno}: from {source} import {a.name}")
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain = dotted(node.value)
            if chain is None:
                continue
            head, _, rest = chain.partition(".")
            if head not in aliases:
                continue
            target = ".".join(filter(None, [aliases[head], rest]))
            if target in known and target != name:
                found.append(f"{node.lineno}: {chain}.{node.attr} ({target})")
    return found


def test_no_module_uses_another_modules_private_names():
    offenders = {rel(n): uses for n in modules() if (uses := private_uses(n))}
    assert not offenders, "private names used across modules (make them public, without the underscore):\n" + "\n".join(
        f"{path}:{use}" for path, uses in offenders.items() for use in uses)


def size_reason(name: str) -> str | None:
    """The ``Size:`` line of the docstring's first paragraph, if any."""
    doc = ast.get_docstring(tree(name)) or ""
    first = doc.strip().split("\n\n")[0]
    return next((line.strip() for line in first.splitlines() if line.strip().startswith("Size:")), None)


def test_no_module_over_300_lines_without_a_stated_reason():
    offenders = []
    for name, path in modules().items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and not size_reason(name):
            offenders.append(f"{rel(name)}: {lines} lines")
    assert not offenders, (f"modules over {MAX_LINES} lines without a 'Size: <reason>' line in the first paragraph "
                           "of their docstring:\n" + "\n".join(offenders))


def test_sql_only_under_the_store():
    offenders = []
    for name, path in modules().items():
        if name.startswith("advisor.store"):
            continue
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_METHODS:
                offenders.append(f"{rel(name)}:{node.lineno}: .{node.func.attr}(")
    assert not offenders, "SQL outside advisor/store/:\n" + "\n".join(offenders)


def torch_imports(name: str, anywhere: bool) -> list[str]:
    nodes = ast.walk(tree(name)) if anywhere else module_level_imports(tree(name).body)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in TORCH]
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in TORCH:
            found.append(f"{node.lineno}: from {node.module} import ...")
    return found


def test_numeric_imports_no_torch():
    numeric = [n for n in modules() if n == "advisor.numeric" or n.startswith("advisor.numeric.")]
    assert numeric, "advisor/numeric/ not found"
    offenders = [f"{rel(n)}:{use}" for n in numeric for use in torch_imports(n, anywhere=True)]
    graph = import_graph()
    for start in numeric:  # nor through what it imports at module level
        seen, todo = {start}, [[start]]
        while todo:
            chain = todo.pop()
            for nxt in sorted(graph[chain[-1]] - seen):
                seen.add(nxt)
                if torch_imports(nxt, anywhere=False):
                    offenders.append(f"{rel(start)}: imports torch through {' -> '.join([*chain, nxt])}")
                todo.append([*chain, nxt])
    assert not offenders, "advisor/numeric/ must stay numpy only:\n" + "\n".join(offenders)


def test_papers_are_named_by_authors_not_seed_numbers():
    files = [p for p in modules().values()] + [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))
    offenders = []
    for path in files:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if SEED_NUMBER.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:120]}")
    assert not offenders, ("name the paper by authors and year (../shared/seeds/README.md, docs/references.md), "
                           "not its seed file number:\n" + "\n".join(offenders))


def test_references_point_at_code_that_exists():
    """docs/references.md says which module and function implements each equation: they must exist."""
    text = (REPO / "docs" / "references.md").read_text()
    missing = []
    for m in re.finditer(r"`((?:advisor|plugins)/[\w/]+\.py)`((?::\s*`[^`]+`(?:,\s*`[^`]+`)*)?)", text):
        path = REPO / m.group(1)
        if not path.is_file():
            missing.append(f"{m.group(1)}: no such module")
            continue
        defined = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
            if isinstance(node, ast.ClassDef):
                defined |= {f"{node.name}.{n.name}" for n in node.body if isinstance(n, ast.FunctionDef)}
        for name in re.findall(r"`([A-Za-z_][\w.]*)", m.group(2)):
            if name not in defined:
                missing.append(f"{m.group(1)}: no function or class '{name}'")
    assert "advisor/numeric/transferability.py" in text
    assert not missing, "docs/references.md points at code that does not exist:\n" + "\n".join(sorted(set(missing)))
