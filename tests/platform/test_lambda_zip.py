"""`make lambda-zip`: what the authorizer Lambda ships, and that it builds the same bytes twice."""
import hashlib
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import PurePosixPath

import pytest

from tests.support.lambda_zip import BUILD_SCRIPT, run_build
from tests.support.paths import ROOT

EM_X86_64 = 62
EM_AARCH64 = 183


def names(zip_path) -> list[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return archive.namelist()


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def elf_problem(data: bytes) -> str | None:
    """Why `data` is not a 64-bit little-endian x86-64 Linux shared object, or None."""
    if data[:4] != b"\x7fELF":
        return "not an ELF file"
    if data[4] != 2 or data[5] != 1:
        return f"ELF class {data[4]} / data {data[5]}, expected 64-bit little-endian"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type != 3:
        return f"ELF type {e_type}, expected a shared object (3)"
    if e_machine != EM_X86_64:
        return f"ELF machine {e_machine}, expected x86-64 ({EM_X86_64})"
    return None


def elf_header(machine: int, e_type: int = 3, klass: int = 2) -> bytes:
    return b"\x7fELF" + bytes([klass, 1, 1, 0]) + bytes(8) + struct.pack("<HH", e_type, machine) + bytes(44)


@pytest.mark.parametrize("header, problem", [
    (elf_header(EM_X86_64), None),
    (elf_header(EM_AARCH64), "machine 183"),
    (elf_header(EM_X86_64, e_type=2), "type 2"),
    (elf_header(EM_X86_64, klass=1), "class 1"),
    (b"MZ" + bytes(62), "not an ELF"),
])
def test_elf_check_tells_x86_64_from_other_machines(header, problem):
    found = elf_problem(header)
    if problem is None:
        assert found is None
    else:
        assert problem in found


def test_zip_holds_the_lambda_bridge_package_as_source(authorizer_zip):
    entries = names(authorizer_zip)
    assert "lambda_bridge/__init__.py" in entries
    assert "lambda_bridge/snapshot.py" in entries
    ours = [name for name in entries if name.startswith("lambda_bridge/")]
    assert all(name.endswith(".py") for name in ours), ours
    # Every module of the package goes in, so a new one can't be forgotten.
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lambda_bridge").rglob("*.py")
               if "__pycache__" not in p.parts and not p.name.startswith("test_")}
    assert set(ours) == on_disk


def test_zip_holds_cryptography_at_the_pinned_version_and_no_pyjwt(authorizer_zip):
    entries = names(authorizer_zip)
    assert "cryptography/__init__.py" in entries
    # The authorizer verifies tokens with cryptography alone; PyJWT signs them on the Django side.
    assert not [n for n in entries if n.startswith(("jwt/", "PyJWT-", "pyjwt-"))]
    pinned = pins()
    bundled = {}
    for name in entries:
        match = re.fullmatch(r"([^/]+)-([^-/]+)\.dist-info/METADATA", name)
        if match:
            bundled[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    assert bundled["cryptography"] == pinned["cryptography"]
    # Whatever else comes along (cffi, pycparser) is pinned too, or builds drift.
    assert {name: version for name, version in bundled.items() if pinned.get(name) != version} == {}


def test_zip_holds_the_time_zone_database_at_the_pinned_version(authorizer_zip):
    # Lambda's python3.12 may have no /usr/share/zoneinfo (docs/authorizer.md#time-zones).
    entries = names(authorizer_zip)
    assert f"tzdata-{pins()['tzdata']}.dist-info/METADATA" in entries
    assert {"tzdata/__init__.py", "tzdata/zoneinfo/Europe/Brussels", "tzdata/zoneinfo/Australia/Lord_Howe",
            "tzdata/zoneinfo/UTC"} <= set(entries)


def test_cryptography_rust_binding_is_an_x86_64_linux_abi3_shared_object(authorizer_zip):
    with zipfile.ZipFile(authorizer_zip) as archive:
        rust = [n for n in archive.namelist() if re.fullmatch(r"cryptography/hazmat/bindings/_rust\.abi3\.so", n)]
        assert rust, "cryptography's compiled _rust module (abi3, Linux) is missing"
        assert elf_problem(archive.read(rust[0])) is None, elf_problem(archive.read(rust[0]))
        # Every compiled module must load on Lambda's x86_64, not just this one.
        shared = [n for n in archive.namelist() if ".so" in PurePosixPath(n).suffixes]
        problems = {n: elf_problem(archive.read(n)) for n in shared}
    assert {n: p for n, p in problems.items() if p} == {}


def test_zip_leaves_out_django_boto3_caches_and_tests(authorizer_zip):
    entries = names(authorizer_zip)
    top_level = {PurePosixPath(name).parts[0] for name in entries}
    # boto3 and botocore come with the Lambda runtime; Django never runs there.
    forbidden = {"django", "boto3", "botocore", "s3transfer", "urllib3", "authz", "devices", "config", "tests"}
    assert top_level & forbidden == set()
    assert not [n for n in entries if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    # Test suites: folders named tests, modules named test_*.py. (cryptography's
    # _rust/test_support.pyi is a type stub of its own library, not a test.)
    assert not [n for n in entries
                if any(part in {"tests", "test"} for part in PurePosixPath(n).parts[:-1])
                or (PurePosixPath(n).name.startswith("test_") and n.endswith(".py"))]


def test_entries_are_sorted_with_fixed_time_and_permissions(authorizer_zip):
    with zipfile.ZipFile(authorizer_zip) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    modes = {i.filename: i.external_attr >> 16 for i in infos}
    assert {m for n, m in modes.items() if ".so" not in PurePosixPath(n).suffixes} == {0o100644}
    assert {m for n, m in modes.items() if ".so" in PurePosixPath(n).suffixes} == {0o100755}


def test_building_twice_gives_identical_bytes(authorizer_zip, tmp_path):
    # A second build unpacks every wheel afresh (new files, new mtimes).
    again = tmp_path / "again.zip"
    result = run_build("--output", str(again))
    first, second = authorizer_zip.read_bytes(), again.read_bytes()
    assert hashlib.sha256(second).hexdigest() == hashlib.sha256(first).hexdigest()
    assert first == second
    assert f"{len(second)} bytes, sha256 {hashlib.sha256(second).hexdigest()}" in result.stdout


def test_bundled_libraries_work_from_the_unpacked_zip_alone(unpacked_authorizer):
    """No site-packages (-I -S): only the standard library and the zip's folder,
    the way Lambda puts /var/task first on the path."""
    script = """
import sys
folder = sys.argv[1]
sys.path.insert(0, folder)
import cryptography, lambda_bridge.snapshot
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
for module in (cryptography, lambda_bridge.snapshot):
    assert module.__file__.startswith(folder), module.__file__
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
signature = key.sign(b"u1", padding.PKCS1v15(), hashes.SHA256())
key.public_key().verify(signature, b"u1", padding.PKCS1v15(), hashes.SHA256())
print("u1")
"""
    result = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(unpacked_authorizer)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "u1"


def test_make_lambda_zip_runs_the_same_script():
    result = subprocess.run(["make", "-n", "lambda-zip"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert f"{BUILD_SCRIPT.relative_to(ROOT)}" in result.stdout


def unreachable_index(tmp_path) -> dict:
    """pip settings under which no package source answers: nothing listens on
    the discard port, and no config file, local index or wheel folder helps."""
    (tmp_path / "no-wheels").mkdir()
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
            "PIP_EXTRA_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": str(tmp_path / "no-wheels"),
            "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "1", "PIP_TIMEOUT": "5"}


def test_unreachable_index_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr("tests.support.services.IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        run_build("--output", str(tmp_path / "offline.zip"), env=unreachable_index(tmp_path))


def test_unreachable_index_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.setattr("tests.support.services.IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="not available"):
        run_build("--output", str(tmp_path / "offline.zip"), env=unreachable_index(tmp_path))


def test_a_broken_build_fails_even_outside_ci(monkeypatch, authorizer_zip):
    monkeypatch.setattr("tests.support.services.IN_CI", False)
    # The zip's folder is a file, so the build cannot write: a failure, not a skip.
    with pytest.raises(pytest.fail.Exception, match="build_lambda_zip.py failed"):
        run_build("--output", str(authorizer_zip / "nested.zip"))
