"""The local CA and the server certificate the TLS listener presents
(docs/local-iot.md#listeners).

AWS IoT's endpoints present a certificate clients check against Amazon's
root CA; locally a CA of our own takes that place, so clients are pointed at
its file (`ca_file`) exactly as they would be at AmazonRootCA1.pem. Both are
generated once under a directory (default build/local_iot/) and reused while
they are valid and still name every host the listener answers to.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DIR = Path("build") / "local_iot"
DNS_NAMES = ("localhost", "iot.devshare.localhost")
IP_ADDRESSES = ("127.0.0.1", "::1")
CA_DAYS, SERVER_DAYS = 3650, 825  # 825: the longest a server certificate may live for Apple's clients
RENEW_BEFORE = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Certificates:
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "server.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "server.key"

    def server_context(self, alpn: list[str]) -> ssl.SSLContext:
        """A TLS server context presenting the server certificate and offering `alpn`."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(alpn)
        return context

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A client context that trusts only the local CA (for tests and tools)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


def ensure(directory: Path | str | None = None) -> Certificates:
    """The CA and server certificate under `directory`, made when absent,
    expiring within a week, or missing one of the names."""
    certificates = Certificates(Path(directory) if directory else DEFAULT_DIR)
    if not _usable(certificates):
        _generate(certificates)
    return certificates


def _usable(certificates: Certificates) -> bool:
    try:
        ca = x509.load_pem_x509_certificate(certificates.ca_file.read_bytes())
        server = x509.load_pem_x509_certificate(certificates.cert_file.read_bytes())
        key = serialization.load_pem_private_key(certificates.key_file.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    soon = datetime.datetime.now(datetime.UTC) + RENEW_BEFORE
    if any(c.not_valid_after_utc < soon for c in (ca, server)):
        return False
    if server.public_key().public_numbers() != key.public_key().public_numbers():
        return False
    if server.issuer != ca.subject:
        return False
    try:
        ca.public_key().verify(server.signature, server.tbs_certificate_bytes,
                               ec.ECDSA(server.signature_hash_algorithm))
        names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # noqa: BLE001  (any mismatch or odd file: make new ones)
        return False
    return (set(DNS_NAMES) <= set(names.get_values_for_type(x509.DNSName))
            and {ipaddress.ip_address(a) for a in IP_ADDRESSES} <= set(names.get_values_for_type(x509.IPAddress)))


def _generate(certificates: Certificates) -> None:
    certificates.directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Devshare local_iot CA")])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(n) for n in DNS_NAMES] + [x509.IPAddress(ipaddress.ip_address(a)) for a in IP_ADDRESSES]
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DNS_NAMES[1])]))
              .issuer_name(ca_name)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    # The CA's key is not kept: nothing signs with it again, and a key left
    # on disk could mint certificates a developer's machine trusts.
    _write(certificates.key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()), private=True)
    _write(certificates.cert_file, server.public_bytes(serialization.Encoding.PEM))
    _write(certificates.ca_file, ca.public_bytes(serialization.Encoding.PEM))


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    # Written aside and renamed, so a reader never sees half a file.
    partial = path.with_suffix(path.suffix + ".partial")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    with os.fdopen(os.open(partial, flags, 0o600 if private else 0o644), "wb") as out:
        out.write(data)
    partial.replace(path)
