"""Imports run one way: each unit imports only itself and the units of lower layers, never a unit beside it in its
own layer (the sideways imports a plain layer order cannot see). Every import counts, including those inside
functions, and the job code a stage record names as "module:function" counts as imported by that record."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = [
    ("yulan.schema",),
    ("yulan.compose", "yulan.runtime"),
    ("yulan.rewards",),
    ("yulan.engines.native", "yulan.engines.openrlhf"),
    ("yulan.stages.tasks",),  # the evaluation tasks: beneath evaluation and decontamination both
    ("yulan.stages.curation", "yulan.stages.evaluation"),
    ("yulan.stages.preference",),
    ("yulan.stages.ppo_prompts",),
    ("yulan.stages",),  # the stage table
    ("yulan.launchers",),
    ("yulan.report",),  # reads what launches leave: run directories, ledgers
    ("yulan.cli",),
    ("yulan.run",),  # the job entry point's stable name (plans, sbatch scripts, code snapshots of earlier runs)
]
UNITS = sorted((name for names in LAYERS for name in names), key=len, reverse=True)


def unit(module: str) -> str | None:
    """The most specific unit that holds the module."""
    return next((name for name in UNITS if module == name or module.startswith(name + ".")), None)


def layer(name: str) -> int:
    return next(level for level, names in enumerate(LAYERS) if name in names)


def imports(path: Path) -> set[str]:
    text = path.read_text()
    found = {target.split(":")[0] for target in re.findall(r'"(yulan(?:\.\w+)+:\w+)"', text)}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from PACKAGE import MODULE` imports MODULE; `from MODULE import NAME`, MODULE
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if is_module(submodule) else node.module)
    return found


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_every_module_belongs_to_a_unit():
    loose = [module_name(path) for path in REPO.glob("yulan/**/*.py") if unit(module_name(path)) is None]
    assert sorted(loose) == ["yulan", "yulan.engines"], loose  # the two package markers


def test_every_module_imports_only_its_own_unit_or_lower_layers():
    wrong = []
    for path in REPO.glob("yulan/**/*.py"):
        module = module_name(path)
        own = unit(module)
        if own is None:
            continue
        for imported in imports(path):
            other = unit(imported)
            if other is None or other == own:
                continue
            if layer(other) >= layer(own):
                wrong.append(f"{module} ({own}, layer {layer(own)}) imports {imported} ({other}, layer {layer(other)})")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_runtime_imports_only_the_schema_and_itself():
    for path in REPO.glob("yulan/runtime/*.py"):
        ours = {name for name in imports(path) if name.split(".")[0] == "yulan"}
        assert all(name.startswith(("yulan.schema", "yulan.runtime")) for name in ours), (path.name, ours)


def test_a_sideways_import_is_caught():
    """The rule above fails on the kind of import it exists for: an engine reading a stage's module."""
    assert layer(unit("yulan.stages.ppo_prompts")) > layer(unit("yulan.engines.native.ppo"))
    assert layer(unit("yulan.stages.evaluation.stage")) == layer(unit("yulan.stages.curation.decontaminate"))
