"""The job side's layers import only downwards: schema < runtime < shared algorithms < stage implementations <
the stage registry < job and command entry points. Every import counts, including those inside functions."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = [
    ("yulan.schema",),
    ("yulan.runtime",),
    (
        "yulan.answers",
        "yulan.sandbox",
        "yulan.verifier",
        "yulan.penalties",
        "yulan.health",
        "yulan.reward",
        "yulan.distributed",
    ),
    ("yulan.curation", "yulan.evaluation", "yulan.engines", "yulan.native", "yulan.report"),
    ("yulan.stages",),
    ("yulan.run", "yulan.cli", "yulan.launch", "yulan.launchers"),
]


def layer(module: str) -> int | None:
    for level, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return level
    return None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_every_module_imports_only_its_own_layer_or_below():
    wrong = []
    for path in REPO.glob("yulan/**/*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        own = layer(module)
        for imported in imports(path):
            level = layer(imported)
            if level is not None and level > own:
                wrong.append(f"{module} (layer {own}) imports {imported} (layer {level})")
    assert not wrong, "\n".join(wrong)


def test_the_runtime_imports_only_the_schema_and_itself():
    for path in REPO.glob("yulan/runtime/*.py"):
        ours = {name for name in imports(path) if name.split(".")[0] == "yulan"}
        assert all(name.startswith(("yulan.schema", "yulan.runtime")) for name in ours), (path.name, ours)
