"""The layout rules of ARCHITECTURE.md, checked on the import graph."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("participant", "consent", "messaging")
# The gateway, and a service calling another, may use a service's wire contract (its
# schemas, problem types and the event catalogue's model), nothing else: the contract is
# written once, and the code behind it stays the service's own.
CONTRACT_MODULES = {"schemas", "errors", "catalogue"}


def imports_of(package: Path) -> list[tuple[Path, str]]:
    found = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((path, node.module))
            elif isinstance(node, ast.Import):
                found.extend((path, alias.name) for alias in node.names)
    return found


def test_shared_imports_neither_services_nor_gateway() -> None:
    bad = [
        (p, m) for p, m in imports_of(ROOT / "shared") if m.split(".")[0] in {"services", "gateway"}
    ]
    assert bad == []


def test_no_service_imports_another_services_code_or_the_gateway() -> None:
    for service in SERVICES:
        for path, module in imports_of(ROOT / "services" / service):
            parts = module.split(".")
            assert parts[0] != "gateway", (path, module)
            if parts[0] == "services" and len(parts) > 1 and parts[1] != service:
                assert len(parts) == 3 and parts[2] in CONTRACT_MODULES, (path, module)


def test_the_gateway_uses_only_the_services_wire_contracts() -> None:
    for path, module in imports_of(ROOT / "gateway"):
        parts = module.split(".")
        if parts[0] == "services":
            assert len(parts) == 3 and parts[2] in CONTRACT_MODULES, (path, module)
