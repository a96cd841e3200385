"""Which of our packages may import which (docs/decisions/0002-shared-web-plumbing.md).

The rule: lambda_bridge imports nothing of ours (it ships alone, as a zip);
devices imports nothing from authz (authz builds on devices) and, of the
project package, only the shared web plumbing; authz builds on the devices
domain but not on its web layer; the shared plumbing builds on no app's web
layer and not on authz; local_iot stands where AWS stands, so of ours it
imports only the Lambda it invokes, and no Django at all. Every import statement counts, including those inside
functions and relative ones.
"""
import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

OURS = ("authz", "bench", "config", "devices", "lambda_bridge", "local_iot", "tests")
DJANGO = ("django", "rest_framework", "drf_spectacular", "django_filters", "axes", "celery")
WEB_LAYERS = ("devices.api", "devices.admin")
SHARED_PLUMBING = ("config.api", "config.console")


def _under(name: str, prefixes) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _ours_but_lambda_bridge(name: str) -> bool:
    return _under(name, OURS) and not _under(name, ["lambda_bridge"])


def _authz_or_beyond_shared_plumbing(name: str) -> bool:
    return (_under(name, ["authz", "bench", "local_iot", "tests"])
            or (_under(name, ["config"]) and not _under(name, SHARED_PLUMBING))
            # Of the Lambda, only the words both sides must spell alike and the
            # one rule of when a weekly schedule is in force.
            or (_under(name, ["lambda_bridge"]) and name != "lambda_bridge"
                and not _under(name, ["lambda_bridge.vocabulary", "lambda_bridge.schedule"])))


def _devices_web_layer_or_tests(name: str) -> bool:
    return _under(name, [*WEB_LAYERS, "bench", "tests"])


def _authz_or_a_web_layer(name: str) -> bool:
    return _under(name, ["authz", *WEB_LAYERS])


def _ours_but_lambda_bridge_or_django(name: str) -> bool:
    return (_ours_but_lambda_bridge(name) and not _under(name, ["local_iot"])) or _under(name, DJANGO)


# importer -> (why, is the imported name forbidden to it?)
RULES = {
    "lambda_bridge": ("the Lambda ships alone", _ours_but_lambda_bridge),
    "devices": ("authz depends on devices, not the reverse; devices uses only the shared plumbing, the vocabulary "
                "and the schedule rule",
                _authz_or_beyond_shared_plumbing),
    "authz": ("authz builds on the devices domain, not on its web layer", _devices_web_layer_or_tests),
    "config.api": ("shared plumbing serves every app and builds on no app's web layer", _authz_or_a_web_layer),
    "config.console": ("shared plumbing serves every app and builds on no app's web layer", _authz_or_a_web_layer),
    "local_iot": ("the local AWS IoT Core stands where AWS stands: the Lambda and libraries, never Django",
                  _ours_but_lambda_bridge_or_django),
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
        "local_iot/__init__.py": "",
        "local_iot/broker.py": "from lambda_bridge import evaluator\nfrom . import gateway\nimport django.conf\n",
        "local_iot/gateway.py": "def f():\n    from authz.tokens import simulator\n",
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
    assert violations(tmp_path, "local_iot") == ["local_iot.broker imports django.conf",
                                                 "local_iot.gateway imports authz.tokens",
                                                 "local_iot.gateway imports authz.tokens.simulator"]


# --- the test suite's own scaffolding ---------------------------------------------------
# Helpers live in tests/support/; a conftest holds fixtures only and a test module
# holds tests, so neither is imported: pytest finds fixtures by name, and a
# fixture several packages use is defined once, in tests/conftest.py.


def imports_of_conftests_and_tests(root: Path) -> list[str]:
    """`module imports name` for every import, under tests/, of a conftest or a test module."""
    found = []
    for path in sorted((root / "tests").rglob("*.py")):
        for name in sorted(imported_names(path, root)):
            target = root.joinpath(*name.split(".")).with_suffix(".py")
            if name.startswith("tests.") and target.is_file() and (
                    target.name == "conftest.py" or target.name.startswith("test_")):
                found.append(f"{module_name(path, root)} imports {name}")
    return found


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    # @pytest.fixture, @pytest.fixture(...), @fixture after `from pytest import fixture`
    return (isinstance(target, ast.Attribute) and target.attr == "fixture") or (
        isinstance(target, ast.Name) and target.id == "fixture")


def fixture_definitions(root: Path) -> dict[str, list[str]]:
    """Fixture name -> the modules under tests/ that define it."""
    found: dict[str, list[str]] = {}
    for path in sorted((root / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef) and any(_is_fixture(d) for d in node.decorator_list):
                found.setdefault(node.name, []).append(module_name(path, root))
    return found


def test_no_test_imports_a_conftest_or_a_test_module():
    assert imports_of_conftests_and_tests(ROOT) == [], "import helpers from tests/support/"


def redefined_shared_fixtures(definitions: dict[str, list[str]]) -> dict[str, list[str]]:
    """Fixtures a conftest defines that are defined again elsewhere (another
    conftest, or shadowed in a test module). A test module's own fixtures may
    share a name with another module's: each is local to its module."""
    return {name: where for name, where in definitions.items()
            if len(where) > 1 and any(module.endswith("conftest") for module in where)}


def test_a_shared_fixture_is_defined_once():
    definitions = fixture_definitions(ROOT)
    assert redefined_shared_fixtures(definitions) == {}
    assert {name: where for name, where in definitions.items()
            if any(module.startswith("tests.support") for module in where)} == {}, "tests/support holds no fixtures"
    # Those several packages use are the root conftest's.
    assert {"client_for", "fresh_throttles", "signing_keys", "cold_start", "table", "world"} <= {
        name for name, where in definitions.items() if where == ["tests.conftest"]}


def test_the_scaffolding_check_sees_forbidden_imports(tmp_path):
    files = {
        "tests/__init__.py": "",
        "tests/conftest.py": "import pytest\n\n@pytest.fixture\ndef world():\n    pass\n",
        "tests/support/__init__.py": "",
        "tests/support/processes.py": "def test_database_url():\n    pass\n",
        "tests/api/__init__.py": "",
        "tests/api/conftest.py": "from tests.conftest import world\n",
        "tests/api/test_a.py": "from tests.support.processes import test_database_url\nfrom . import conftest\n",
        "tests/api/test_b.py": "def f():\n    from tests.api.test_a import rates\n",
        "tests/authz/__init__.py": "",
        "tests/authz/conftest.py": "import pytest\n\n@pytest.fixture(autouse=True)\ndef world():\n    pass\n",
        "tests/authz/test_c.py": "import tests.authz.conftest\nfrom pytest import fixture\n\n"
                                 "@fixture\ndef local():\n    pass\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    assert imports_of_conftests_and_tests(tmp_path) == [
        "tests.api.conftest imports tests.conftest",
        "tests.api.test_a imports tests.api.conftest",
        "tests.api.test_b imports tests.api.test_a",
        "tests.authz.test_c imports tests.authz.conftest",
    ]
    definitions = fixture_definitions(tmp_path)
    assert definitions == {"world": ["tests.authz.conftest", "tests.conftest"], "local": ["tests.authz.test_c"]}
    assert redefined_shared_fixtures(definitions) == {"world": ["tests.authz.conftest", "tests.conftest"]}
