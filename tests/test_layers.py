"""The package's layers import only downwards, and nothing imports in a cycle.

core (types, inner loop, objective, meta-step, losses, evaluation) imports
nothing above it: no config, no trainer, no task, no algorithm. The check
reads the import statements (module-level and local ones alike).
"""
import ast
import pathlib

import pytest

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "metajax"

# What each layer may import from metajax (besides itself).
ALLOWED = {
    "core": {"backend"},
    "backend": set(),
    "settings": set(),
    "models": {"backend", "settings"},
    # Metric and model-based learners (and MAML-RL's policy) own networks.
    "algorithms": {"core", "backend", "settings", "models"},
    "tasks": {"core", "backend", "settings", "models"},
    "parallel": {"core", "backend"},
    "__main__": {"training"},
    "training": {"core", "backend", "settings", "models", "algorithms",
                 "tasks", "parallel"},
}


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO_ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set:
  """The metajax modules `path` imports (`from a import b` counts a.b when
  a.b is a module)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith("metajax"))
    elif isinstance(node, ast.ImportFrom) and node.module and (
        node.module.startswith("metajax")):
      found.add(node.module)
      for alias in node.names:
        candidate = f"{node.module}.{alias.name}"
        as_path = REPO_ROOT / candidate.replace(".", "/")
        if as_path.with_suffix(".py").exists() or as_path.is_dir():
          found.add(candidate)
  return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)))
def test_layer_imports_only_what_it_may(module):
  layer = _layer(module)
  assert layer in ALLOWED, f"{module}: a new layer; add it to ALLOWED"
  bad = sorted(i for i in _imports(MODULES[module])
               if _layer(i) and _layer(i) != layer
               and _layer(i) not in ALLOWED[layer])
  assert not bad, f"{module} ({layer}) imports {bad}"


def test_core_imports_no_config_trainer_or_task():
  for module, path in MODULES.items():
    if _layer(module) == "core":
      assert not any(_layer(i) in ("training", "tasks", "settings",
                                   "algorithms") for i in _imports(path)), module


def test_no_import_cycles_between_modules():
  graph = {m: {i for i in _imports(p) if i in MODULES and i != m}
           for m, p in MODULES.items()}
  # A package imports its own submodules from __init__; that is no cycle.
  state, stack = {}, []

  def visit(module):
    state[module] = "open"
    stack.append(module)
    for dep in graph[module]:
      if module.startswith(dep + ".") or dep.startswith(module + "."):
        continue
      if state.get(dep) == "open":
        cycle = stack[stack.index(dep):] + [dep]
        pytest.fail(f"import cycle: {' -> '.join(cycle)}")
      if dep not in state:
        visit(dep)
    stack.pop()
    state[module] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module)
