"""The authorizer ships as a zip with the standard library, cryptography and
boto3 (the runtime's) only: no Django, no project package, no PyJWT."""
import ast
import sys
from pathlib import Path

import lambda_bridge

PACKAGE = Path(lambda_bridge.__file__).parent
ALLOWED = set(sys.stdlib_module_names) | {"cryptography", "boto3", "botocore", "lambda_bridge"}


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_lambda_bridge_imports_only_the_standard_library_cryptography_and_boto3():
    found = {path.name: imported_top_levels(path) - ALLOWED for path in sorted(PACKAGE.glob("*.py"))}
    assert {name: extra for name, extra in found.items() if extra} == {}


def test_the_check_sees_a_forbidden_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("import jwt\nfrom django.conf import settings\nfrom . import snapshot\n")
    assert imported_top_levels(module) - ALLOWED == {"jwt", "django"}
