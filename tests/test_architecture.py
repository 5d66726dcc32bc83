"""The house plan (shared ARCHITECTURE.md) holds: the top level, who may import whom, and
public names only across module boundaries. Imports are read with ``ast``, so a forbidden edge
fails here with its file and line, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SOURCE = REPO / "src" / "plgraph"
TOP_LEVEL = {"__init__.py", "config.py", "cli.py", "errors.py", "vocab.py", "runtime",
             "featurize", "model", "data", "training", "inference", "experiments"}
BASE = {"config", "errors", "vocab", "runtime"}
# What each part of plgraph may import (beside itself); the table of ARCHITECTURE.md.
ALLOWED = {
    "runtime": {"errors"},
    "errors": set(), "config": set(), "vocab": set(),
    "featurize": BASE,
    "model": BASE,
    "data": BASE | {"featurize"},
    "training": BASE | {"featurize", "model", "data"},
    "inference": BASE | {"featurize", "model", "data", "training"},
    "experiments": BASE | {"featurize", "model", "data", "training"},
    "cli": {"config", "errors", "runtime"},
    "main": {"cli", "config", "errors", "runtime", "data", "training", "experiments"},
    "predict": {"cli", "config", "errors", "runtime", "inference", "training"},
}


def part_of(path: Path) -> str:
    """``runtime`` for src/plgraph/runtime/stop.py, ``config`` for src/plgraph/config.py,
    ``main`` for main.py."""
    if path.parent == REPO:
        return path.stem
    relative = path.relative_to(SOURCE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def plgraph_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported part) of every ``plgraph.X`` import in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "plgraph" else [
                f"plgraph.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "plgraph" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def forbidden_edges(path: Path, part: str) -> list[str]:
    """The imports of ``path`` (a module of ``part``) that the plan does not allow."""
    return [f"{path.name}:{line}: {part} imports {imported}"
            for line, imported in plgraph_imports(path)
            if imported != part and imported not in ALLOWED[part]]


def test_the_top_level_holds_only_the_shared_modules_and_the_packages():
    present = {p.name for p in SOURCE.iterdir() if p.name != "__pycache__"}
    assert present == TOP_LEVEL, (f"unexpected: {present - TOP_LEVEL}, "
                                  f"missing: {TOP_LEVEL - present}")


def test_runtime_init_stays_empty_so_main_can_import_stop_before_torch():
    assert (SOURCE / "runtime" / "__init__.py").read_text().strip() == ""


def test_no_module_imports_against_the_plan():
    files = [*SOURCE.rglob("*.py"), REPO / "main.py", REPO / "predict.py"]
    assert [edge for path in files for edge in forbidden_edges(path, part_of(path))] == []


def test_the_import_check_names_a_forbidden_edge(tmp_path):
    """The check itself can fail: a model module importing training, or inference importing
    experiments (the two wings never import each other), is reported with its line."""
    module = tmp_path / "network.py"
    module.write_text("import torch\n\ndef f():\n    from plgraph.training.metrics import score\n")
    assert forbidden_edges(module, "model") == ["network.py:4: model imports training"]
    module.write_text("from plgraph import experiments\n")
    assert forbidden_edges(module, "inference") == ["network.py:1: inference imports experiments"]


def private_names() -> set[str]:
    """Every ``_private`` function, method and module-level name defined in src/plgraph."""
    names = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
                name = node.name
            elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
            else:
                continue
            if name.startswith("_") and not name.startswith("__"):
                names.add(name)
    return names


def private_uses(paths: list[Path], private: set[str]) -> list[str]:
    uses = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in private
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self",
                                                                                    "cls"))):
                uses.append(f"{path.name}:{node.lineno}: .{node.attr}")
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value.rsplit(".", 1)[-1] in private):  # patched by name
                uses.append(f"{path.name}:{node.lineno}: '{node.value}'")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plgraph"):
                uses += [f"{path.name}:{node.lineno}: import {alias.name}"
                         for alias in node.names if alias.name in private]
    return uses


def test_benchmarks_and_tests_call_only_public_names_of_plgraph():
    paths = [*sorted((REPO / "tests").rglob("*.py")), *sorted((REPO / "bench").glob("*.py"))]
    paths = [p for p in paths if p.name != Path(__file__).name]
    assert private_uses(paths, private_names()) == []


def test_the_private_name_check_finds_a_private_call(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from plgraph.training import trainer\ntrainer.Trainer._interrupt\n"
                     "self._interrupt\n"
                     "PHASE = ('plgraph.training.trainer', 'Trainer._interrupt')\n")
    assert private_uses([probe], private_names()) == [
        "probe.py:2: ._interrupt", "probe.py:4: 'Trainer._interrupt'"]
