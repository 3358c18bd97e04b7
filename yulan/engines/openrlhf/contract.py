"""Check command lines against the real OpenRLHF argument parser, without importing OpenRLHF.

Every OpenRLHF CLI builds its argparse parser inside `if __name__ == "__main__":`, and importing the modules
needs torch, deepspeed, flash-attn (and ray, vllm for PPO). So the parser is rebuilt from the module's source:
the statements of the `__main__` block up to `parser.parse_args()` run with only argparse in scope.
Abbreviated flags are refused (argparse itself would silently accept unique prefixes).
"""

from __future__ import annotations

import argparse
import ast
import sys
import zipfile
from pathlib import Path


def parser_from_source(source: str) -> argparse.ArgumentParser:
    tree = ast.parse(source)
    main = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) and "__name__" in ast.unparse(node.test)
    )
    # The module's own standard-library imports (argparse, os, datetime) are used by its defaults.
    statements = [
        node
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom)) and all(_stdlib(name) for name in _imported(node))
    ]
    for statement in main.body:
        if "parse_args" in ast.unparse(statement):
            break
        statements.append(statement)
    namespace: dict = {"argparse": argparse, "__name__": "openrlhf_contract"}
    exec(compile(ast.Module(body=statements, type_ignores=[]), "<openrlhf cli>", "exec"), namespace)
    parser = namespace["parser"]
    parser.allow_abbrev = False
    parser.exit_on_error = False
    return parser


def parser_from_wheel(wheel: Path, module: str) -> argparse.ArgumentParser:
    relative = module.replace(".", "/") + ".py"
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(relative))
        return parser_from_source(archive.read(name).decode())


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return [alias.name for alias in node.names]


def _stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


class ContractError(ValueError):
    pass


def check(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv` exactly: unknown, abbreviated or badly typed flags raise ContractError."""
    known = set(parser._option_string_actions)
    for token in argv:
        if token.startswith("--") and token.split("=", 1)[0] not in known:
            raise ContractError(f"unknown flag {token} (not an exact option of this OpenRLHF release)")
    try:
        namespace, extra = parser.parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit) as error:
        raise ContractError(f"rejected by the parser: {error}") from None
    if extra:
        raise ContractError(f"left unparsed: {extra}")
    return namespace
