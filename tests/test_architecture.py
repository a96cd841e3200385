"""Which of our packages may import which (docs/decisions/0002-shared-web-plumbing.md).

The rule: lambda_bridge imports nothing of ours (it ships alone, as a zip);
devices imports nothing from authz (authz builds on devices) and, of the
project package, only the shared web plumbing; authz builds on the devices
domain but not on its web layer; the shared plumbing builds on no app's web
layer and not on authz. Every import statement counts, including those inside
functions and relative ones.
"""
import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

OURS = ("authz", "bench", "config", "devices", "lambda_bridge", "tests")
WEB_LAYERS = ("devices.api", "devices.admin")
SHARED_PLUMBING = ("config.api", "config.console")


def _under(name: str, prefixes) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _ours_but_lambda_bridge(name: str) -> bool:
    return _under(name, OURS) and not _under(name, ["lambda_bridge"])


def _authz_or_beyond_shared_plumbing(name: str) -> bool:
    return _under(name, ["authz", "bench", "tests"]) or (_under(name, ["config"]) and not _under(name, SHARED_PLUMBING))


def _devices_web_layer_or_tests(name: str) -> bool:
    return _under(name, [*WEB_LAYERS, "bench", "tests"])


def _authz_or_a_web_layer(name: str) -> bool:
    return _under(name, ["authz", *WEB_LAYERS])


# importer -> (why, is the imported name forbidden to it?)
RULES = {
    "lambda_bridge": ("the Lambda ships alone", _ours_but_lambda_bridge),
    "devices": ("authz depends on devices, not the reverse; of the project, devices uses the shared plumbing only",
                _authz_or_beyond_shared_plumbing),
    "authz": ("authz builds on the devices domain, not on its web layer", _devices_web_layer_or_tests),
    "config.api": ("shared plumbing serves every app and builds on no app's web layer", _authz_or_a_web_layer),
    "config.console": ("shared plumbing serves every app and builds on no app's web layer", _authz_or_a_web_layer),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, root: Path) -> set[str]:
    """Dotted names a module imports; `from a import b` gives both `a` and `a.b`
    (b may be a module), relative imports resolved against the module's package."""
    module = module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            names.add(source)
            names |= {f"{source}.{alias.name}" for alias in node.names if alias.name != "*"}
    return names


def modules(root: Path, package: str) -> list[Path]:
    where = root.joinpath(*package.split("."))
    if where.is_dir():
        return sorted(where.rglob("*.py"))
    assert where.with_suffix(".py").is_file(), f"{package} is not in the tree"
    return [where.with_suffix(".py")]


def violations(root: Path, importer: str) -> list[str]:
    forbidden = RULES[importer][1]
    return [f"{module_name(path, root)} imports {name}"
            for path in modules(root, importer) for name in sorted(imported_names(path, root)) if forbidden(name)]


@pytest.mark.parametrize("importer", sorted(RULES))
def test_dependency_direction(importer):
    assert violations(ROOT, importer) == [], RULES[importer][0]


def test_authz_uses_the_shared_plumbing_not_devices_web_layer():
    # The positive side of the rule: what authz's API and admin build on.
    assert {"config.api.views.TenantView", "config.api.errors.Conflict"} <= imported_names(ROOT / "authz/api.py", ROOT)
    assert "config.console.ReadOnlyTenantAdmin" in imported_names(ROOT / "authz/admin.py", ROOT)


def test_the_check_sees_forbidden_imports(tmp_path):
    files = {
        "authz/__init__.py": "",
        "authz/api.py": "from devices.api.views import TenantView\nfrom devices import admin\n",
        "authz/ok.py": "from devices.models import Device\nfrom config.api.views import TenantView\n",
        "devices/__init__.py": "",
        "devices/api/__init__.py": "",
        "devices/api/views.py": "def f():\n    from authz import tasks\n",
        "devices/api/other.py": "from ..admin import X\nfrom . import views\nimport config.settings.base\n",
        "config/__init__.py": "",
        "config/api/__init__.py": "from devices.api import views\n",
        "config/console.py": "from authz.models import SigningKey\n",
        "lambda_bridge/__init__.py": "",
        "lambda_bridge/handler.py": "from . import policy\nfrom devices.models import Level\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    assert violations(tmp_path, "authz") == ["authz.api imports devices.admin", "authz.api imports devices.api.views",
                                             "authz.api imports devices.api.views.TenantView"]
    assert violations(tmp_path, "devices") == [
        "devices.api.other imports config.settings.base",
        "devices.api.views imports authz",
        "devices.api.views imports authz.tasks",
    ]
    assert imported_names(tmp_path / "devices/api/other.py", tmp_path) >= {"devices.admin.X", "devices.api.views"}
    assert violations(tmp_path, "config.api") == [
        "config.api imports devices.api",
        "config.api imports devices.api.views",
    ]
    assert violations(tmp_path, "config.console") == ["config.console imports authz.models",
                                                      "config.console imports authz.models.SigningKey"]
    assert violations(tmp_path, "lambda_bridge") == ["lambda_bridge.handler imports devices.models",
                                                     "lambda_bridge.handler imports devices.models.Level"]
