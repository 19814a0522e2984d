"""greenroom's modules import one another without circles, type-checking imports included, and
the layers point one way: rooms, schema and protocol know nothing of web/ (issue 16)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "greenroom"


def modules():
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _top_level_imports(tree):
    """Module-level imports, and those under ``if TYPE_CHECKING:`` (a circle for type checkers
    and readers all the same); imports inside functions are deliberate lazy ones."""
    for node in tree.body:
        if isinstance(node, ast.If):
            yield from (n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def import_graph():
    known = modules()
    graph = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _top_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names if alias.name in known)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                if target in known and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_room_machinery_imports_nothing_of_web():
    graph = import_graph()
    layers = ("room", "engine", "membership", "phase", "seats", "routing", "session",
              "serializer", "inbox", "clock", "matchmaker", "listings", "schema", "protocol",
              "hosting", "group_seats", "creation_lock", "matchmaking_rpc", "patch_clock")
    core = [name for name in graph if name.split(".")[1:2] and name.split(".")[1] in layers]
    assert "greenroom.engine" in core and "greenroom.schema.encoder" in core
    for name in core:
        assert not any(target.startswith("greenroom.web") for target in graph[name]), name
