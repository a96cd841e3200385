"""The local CA and server certificate the TLS listener presents: made once,
reused while valid, remade when they no longer fit (docs/local-iot.md#listeners)."""
import ipaddress
import stat

from cryptography import x509

from local_iot import certs


def _names(path):
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName)), set(names.get_values_for_type(x509.IPAddress))


def test_the_server_certificate_names_every_local_host_and_chains_to_the_ca(tmp_path):
    made = certs.ensure(tmp_path)
    dns, ips = _names(made.cert_file)
    assert {"localhost", "iot.devshare.localhost"} <= dns
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= ips
    ca = x509.load_pem_x509_certificate(made.ca_file.read_bytes())
    server = x509.load_pem_x509_certificate(made.cert_file.read_bytes())
    server.verify_directly_issued_by(ca)
    assert stat.S_IMODE(made.key_file.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*ca*.key"))  # the CA's key is not kept


def test_certificates_are_reused_while_valid(tmp_path):
    first = certs.ensure(tmp_path).ca_file.read_bytes()
    assert certs.ensure(tmp_path).ca_file.read_bytes() == first


def test_a_damaged_or_mismatched_set_is_remade(tmp_path):
    made = certs.ensure(tmp_path)
    ca = made.ca_file.read_bytes()
    made.key_file.write_bytes(b"not a key")
    remade = certs.ensure(tmp_path)
    assert remade.ca_file.read_bytes() != ca
    server = x509.load_pem_x509_certificate(remade.cert_file.read_bytes())
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(remade.ca_file.read_bytes()))


def test_a_server_certificate_from_another_ca_is_remade(tmp_path):
    one, other = certs.ensure(tmp_path / "one"), certs.ensure(tmp_path / "other")
    one.cert_file.write_bytes(other.cert_file.read_bytes())
    one.key_file.write_bytes(other.key_file.read_bytes())
    remade = certs.ensure(tmp_path / "one")
    server = x509.load_pem_x509_certificate(remade.cert_file.read_bytes())
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(remade.ca_file.read_bytes()))
