"""Throwaway certificates for the local control plane and node: a CA, serving and client certs.

Kubernetes authenticates every component by a client certificate signed by the cluster's CA
(the user is the certificate's CN, its groups the O entries) and every server by a serving
certificate whose names include the address clients dial. Keys are EC: generating RSA keys
would dominate the start-up time.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_LOOPBACK_NAMES = ("localhost", "127.0.0.1")
_VALIDITY = datetime.timedelta(days=30)


@dataclasses.dataclass(frozen=True)
class Keypair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return private_key_pem(self.key)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def new_signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def new_cert(
    subject: x509.Name,
    issuer: Keypair | None,
    *,
    ca: bool = False,
    server: bool = False,
    client: bool = False,
    names: Sequence[str] = (),
) -> Keypair:
    """A certificate signed by `issuer` (self-signed without one).

    A serving certificate is valid for loopback and every extra DNS name or IP in `names`.
    """
    key = new_signing_key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated a little: tolerate clock skew between us and the server.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        all_names = dict.fromkeys([*_LOOPBACK_NAMES, *names])
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in all_names]), critical=False
        )
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if ca:
        builder = builder.add_extension(_ca_usage(), critical=True)
    signing_key = issuer.key if issuer else key
    return Keypair(builder.sign(signing_key, hashes.SHA256()), key)


def new_ca(common_name: str) -> Keypair:
    return new_cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), None, ca=True)


def common_name(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def client_subject(user: str, groups: Sequence[str]) -> x509.Name:
    """kube-apiserver maps CN to the user name and each O to a group."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, user)])


def client_cert(ca: Keypair, user: str, groups: Sequence[str] = ()) -> Keypair:
    return new_cert(client_subject(user, groups), ca, client=True)


def write_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def write_keypair(directory: Path, stem: str, pair: Keypair) -> tuple[Path, Path]:
    """`stem`.crt (world-readable) and `stem`.key (private) in `directory`."""
    return (
        write_file(directory / f"{stem}.crt", pair.cert_pem(), 0o644),
        write_file(directory / f"{stem}.key", pair.key_pem()),
    )
