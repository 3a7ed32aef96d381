"""The layers point one way: web -> protocols -> arbiter's core.

The core (arbiter/ minus the app and tools sub-packages, and minus
``arbiter/__main__.py``, the shim that runs the app) imports no Autobahn, no
sockets, no global reactor, nothing from protocols/ or web/. Among the
packages (core, protocols, web, arbiter.app, arbiter.tools) there is no import
cycle. Imports are read with ``ast`` (those inside functions too), not run.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("arbiter", "protocols", "web")
OUTSIDE_CORE = ("arbiter.app", "arbiter.tools", "arbiter.__main__")
FORBIDDEN_IN_CORE = ("autobahn", "twisted.internet.reactor", "socket", "protocols", "web")


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "static" in path.parts or "node_modules" in path.parts:
                continue
            yield module_name(path), path


def imports(name, path):
    """Every module ``name`` imports (absolute names; ``from x import y`` gives x.y too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[:len(up) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            yield base
            for alias in node.names:
                yield "%s.%s" % (base, alias.name) if base else alias.name


def under(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def layer(name):
    for outside in OUTSIDE_CORE:
        if under(name, outside):
            return outside
    for package in PACKAGES:
        if under(name, package):
            return "arbiter (core)" if package == "arbiter" else package
    return None


def core_modules():
    return [(n, p) for n, p in modules() if layer(n) == "arbiter (core)"]


def test_the_core_is_what_the_issue_says():
    names = {n for n, _ in core_modules()}
    assert {"arbiter.room", "arbiter.service", "arbiter.schema", "arbiter.codes",
            "arbiter.games.cubes", "arbiter.lockstep", "arbiter.phases"} <= names
    assert not any(under(n, "arbiter.app") or under(n, "arbiter.tools") for n in names)


def test_the_core_imports_no_network_and_nothing_above_it():
    found = []
    for name, path in core_modules():
        for imported in imports(name, path):
            for bad in FORBIDDEN_IN_CORE:
                if under(imported, bad):
                    found.append("%s imports %s" % (name, imported))
    assert not found, "\n".join(found)


def test_no_import_cycle_between_the_layers():
    edges = {}
    for name, path in modules():
        here = layer(name)
        for imported in imports(name, path):
            there = layer(imported)
            if there is not None and there != here:
                edges.setdefault(here, {}).setdefault(there, "%s imports %s" % (name, imported))
    # depth-first search for a cycle
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in edges.get(node, {}):
            if state.get(nxt) == "open":
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                why = [edges[a][b] for a, b in zip(cycle, cycle[1:])]
                raise AssertionError("import cycle %s: %s" % (" -> ".join(cycle), "; ".join(why)))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in list(edges):
        if node not in state:
            visit(node, [node])


def test_web_points_down_only():
    """web may use protocols and the core; protocols never uses web."""
    for name, path in modules():
        if layer(name) == "protocols":
            assert not any(under(i, "web") for i in imports(name, path)), name
