"""`platform/` is deployment material; the stdlib `platform` module must win."""
import subprocess
import sys

from tests.support.paths import ROOT


def test_import_platform_from_repository_root_is_the_standard_library():
    result = subprocess.run(
        [sys.executable, "-c", "import platform, uuid; print(platform.system()); print(platform.__file__)"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    system, location = result.stdout.split()
    assert system == "Linux"
    assert not location.startswith(str(ROOT))
    assert not (ROOT / "platform" / "__init__.py").exists()
