"""The package's layers, as the README draws them: each imports only the ones below it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ebsdray"

# Bottom to top; a component may import components of lower layers only (README, "Layout").
LAYERS = [
    {"conventions", "precision"},
    {"data"},
    {"io"},
    {"model"},
    {"diffusion"},
    {"inverse"},
    {"metrics"},
    {"aggregate"},
    {"figures", "observation"},
    {"posterior", "ingest", "dataset_dir", "tracking"},
    {"training"},
    {"distributed"},
    {"api"},
    {"volume_job"},
    {"experiments"},
    {"__init__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _component(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0].removesuffix(".py")


def _imported_components(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ebsdray" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_component_has_a_layer():
    components = {_component(p) for p in PACKAGE.rglob("*.py")}
    assert components - {"_version"} <= set(LEVEL), components - set(LEVEL)


def test_imports_only_go_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _component(path)
        for other in _imported_components(path) - {me}:
            if LEVEL[other] >= LEVEL[me]:
                upward.append(f"{path.relative_to(PACKAGE.parent)} imports ebsdray.{other}")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)
