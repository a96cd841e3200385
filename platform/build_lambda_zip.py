"""Build the authorizer Lambda's deployment zip (`make lambda-zip`).

    python platform/build_lambda_zip.py [--output build/authorizer.zip]

The zip holds `lambda_bridge/` (its .py files only), the cryptography wheel
(with its own dependencies) for AWS Lambda's python3.12 on x86_64 and the
tzdata wheel, at the versions pinned in requirements.txt. boto3 is left out:
the Lambda runtime has it.

Run it as a file. `platform/` is not a package (a package named `platform`
would shadow the standard library module), so this script imports nothing of
the project either.

The same inputs give the same bytes: entries are sorted, and every entry gets
the same timestamp and permissions whatever the files on disk have, so two
builds can be compared by their sha256.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
PACKAGE = ROOT / "lambda_bridge"
DEFAULT_OUTPUT = ROOT / "build" / "authorizer.zip"

# What lambda_bridge needs beyond the standard library and boto3: cryptography,
# and tzdata, the time-zone database zoneinfo falls back to when the runtime has
# none of its own (docs/authorizer.md#time-zones).
BUNDLED = ("cryptography", "tzdata")

# python3.12 on Lambda runs on Amazon Linux 2023 (glibc 2.34), which loads
# wheels of all these manylinux levels; pip takes them in this order of preference.
PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)
PYTHON_VERSION = "3.12"

# 1980-01-01 is the earliest time a zip entry can carry.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
# Shared objects are mapped executable; keep the bit pip and wheels give them.
SHARED_OBJECT_MODE = 0o100755
UNIX = 3

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = REQUIREMENTS) -> dict[str, tuple[str, str]]:
    """`name==version` lines of a requirements file: {canonical name: (name, version)}."""
    pins = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name, version = match.groups()
            pins[canonical(name)] = (name, version)
    return pins


def install_wheels(target: Path, pins: dict[str, tuple[str, str]]) -> None:
    missing = [name for name in BUNDLED if canonical(name) not in pins]
    if missing:
        raise SystemExit(f"build_lambda_zip: {', '.join(missing)} not pinned (==) in {REQUIREMENTS.name}")
    # Every pin constrains the dependencies too (cffi, pycparser), so what
    # pip resolves today is what it resolves tomorrow; extras are stripped
    # because pip refuses them in a constraints file.
    constraints = target.parent / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.values()))
    command = [
        sys.executable, "-m", "pip", "install",
        "--quiet", "--disable-pip-version-check",
        # .pyc files would be rebuilt for the wrong interpreter and differ per build.
        "--no-compile",
        "--target", str(target),
        "--implementation", "cp",
        "--python-version", PYTHON_VERSION,
        "--only-binary=:all:",
        *(f"--platform={platform}" for platform in PLATFORMS),
        "--constraint", str(constraints),
        *(f"{pins[canonical(name)][0]}=={pins[canonical(name)][1]}" for name in BUNDLED),
    ]
    result = subprocess.run(command)
    if result.returncode:
        raise SystemExit(f"build_lambda_zip: pip install failed (exit {result.returncode})")


def installed_distributions(target: Path) -> dict[str, tuple[str, str]]:
    found = {}
    for metadata in sorted(target.glob("*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(metadata.read_text(encoding="utf-8"))
        found[canonical(headers["Name"])] = (headers["Name"], headers["Version"])
    return found


def check_pinned(installed: dict[str, tuple[str, str]], pins: dict[str, tuple[str, str]]) -> None:
    """A dependency that is not pinned would make the zip drift between builds."""
    unpinned = [f"{name} {version}" for key, (name, version) in installed.items()
                if key not in pins or pins[key][1] != version]
    if unpinned:
        raise SystemExit(
            f"build_lambda_zip: bundled but not pinned in {REQUIREMENTS.name}: {', '.join(unpinned)}; "
            "pin them so every build bundles the same versions"
        )


def _skipped(relative: Path) -> bool:
    parts = relative.parts
    return (
        "__pycache__" in parts
        or relative.suffix in {".pyc", ".pyo"}
        or parts[0] == "bin"  # console scripts, useless on Lambda and full of local paths
    )


def _is_test(relative: Path) -> bool:
    return any(part in {"tests", "test"} for part in relative.parts[:-1]) or relative.name.startswith("test_")


def collect(wheels: Path, package: Path = PACKAGE) -> dict[str, Path]:
    """{name in the zip: file on disk}."""
    entries: dict[str, Path] = {}
    for path in wheels.rglob("*"):
        relative = path.relative_to(wheels)
        if path.is_file() and not _skipped(relative):
            entries[relative.as_posix()] = path
    for path in package.rglob("*.py"):
        relative = path.relative_to(package.parent)
        if _skipped(relative) or _is_test(relative):
            continue
        name = relative.as_posix()
        if name in entries:
            raise SystemExit(f"build_lambda_zip: {name} is both in a wheel and in {package.name}/")
        entries[name] = path
    return entries


def write_zip(entries: dict[str, Path], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.create_system = UNIX
            mode = SHARED_OBJECT_MODE if ".so" in Path(name).suffixes else FILE_MODE
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name].read_bytes(), compresslevel=9)
    # Never leave a half-written zip where a deploy would pick it up.
    os.replace(partial, output)


def build(output: Path) -> str:
    pins = read_pins()
    if not (PACKAGE / "handler.py").is_file():
        raise SystemExit(f"build_lambda_zip: {PACKAGE.name}/handler.py is missing; "
                         "a zip without lambda_bridge.handler.lambda_handler cannot serve as the authorizer")
    with tempfile.TemporaryDirectory(prefix="authorizer-zip-") as tmp:
        wheels = Path(tmp) / "wheels"
        wheels.mkdir()
        install_wheels(wheels, pins)
        installed = installed_distributions(wheels)
        check_pinned(installed, pins)
        write_zip(collect(wheels), output)
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    try:
        shown = output.relative_to(Path.cwd())
    except ValueError:
        shown = output
    print(f"bundled: {', '.join(f'{name} {version}' for name, version in installed.values())}")
    print(f"{shown}: {output.stat().st_size} bytes, sha256 {digest}")
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to write the zip (default: {DEFAULT_OUTPUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    build(args.output.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
