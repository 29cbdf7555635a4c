"""House-rule lints the generic tools can't express (STYLE.md §2).

1. SQL only in repositories and db/: routes, services and compat modules import no sqlalchemy
   query builders (typing imports of AsyncSession are fine).
2. Services never commit: the request or job boundary does.
3. Compat adapters call services only: no repository, storage or db.session imports.
4. Repository queries are tenant-scoped: a function that builds a statement must mention
   tenant_id or scoped_statement, or be marked `# cross-tenant: <why>` above its def.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "assetd"
BUILDERS = {"select", "update", "delete", "insert"}


def imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
    return found


def check_file(path: Path) -> list[str]:
    problems: list[str] = []
    source = path.read_text()
    tree = ast.parse(source)
    rel = path.relative_to(SRC.parent)
    layer = path.name
    in_compat = path.parent.name == "compat"

    if layer in ("routes.py", "service.py") or in_compat:
        for lineno, module, names in imports(tree):
            if module == "sqlalchemy" and not set(names) <= {"ColumnElement"}:
                problems.append(f"{rel}:{lineno}: SQL builders belong in a repository")
            if module == "sqlalchemy" and not names:
                problems.append(f"{rel}:{lineno}: SQL builders belong in a repository")
    if layer == "service.py":
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "commit"
            ):
                problems.append(f"{rel}:{node.lineno}: services flush, the boundary commits")
    if in_compat:
        for lineno, module, _ in imports(tree):
            if module.endswith(".repository") or module.startswith("assetd.storage"):
                problems.append(f"{rel}:{lineno}: compat adapters call services, not {module}")
    # The tenants table is the root of the tree, not something a tenant owns.
    if layer == "repository.py" and path.parent.name != "tenants":
        lines = source.splitlines()
        for node in ast.walk(tree):
            if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                continue
            body = ast.get_source_segment(source, node) or ""
            builds = any(f"sa.{b}(" in body for b in BUILDERS)
            if not builds or "tenant_id" in body or "scoped_statement" in body:
                continue
            above = lines[node.lineno - 2] if node.lineno >= 2 else ""
            if "cross-tenant:" not in above and "cross-tenant:" not in body:
                problems.append(
                    f"{rel}:{node.lineno}: {node.name} builds an unscoped query; scope it by "
                    "tenant or mark it '# cross-tenant: <why>'"
                )
    return problems


def main() -> int:
    problems = [p for path in sorted(SRC.rglob("*.py")) for p in check_file(path)]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
