"""A SPIFFE certificate authority written with `cryptography`, independent of the Rust code under
test: it writes credentials directories the way the GCE/GKE node agent does (certificates.pem with
the leaf then the intermediate, private_key.pem, ca_certificates.pem, trust_bundles.json)."""

import base64
import datetime
import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class Svid:
    spiffe_id: str
    chain_der: List[bytes]  # leaf first, then the intermediate
    key_pem: bytes

    @property
    def chain_pem(self) -> bytes:
        return b"".join(
            x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
            for d in self.chain_der
        )


class TrustDomainCa:
    """A root and an intermediate CA for one trust domain."""

    def __init__(self, trust_domain: str) -> None:
        self.trust_domain = trust_domain
        self._root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._ca_cert(
            f"{trust_domain} root", self._root_key.public_key(), self._root_key, None
        )
        self._int_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = self._ca_cert(
            f"{trust_domain} intermediate", self._int_key.public_key(), self._root_key, self.root
        )

    def _ca_cert(
        self,
        cn: str,
        public_key: ec.EllipticCurvePublicKey,
        signer: ec.EllipticCurvePrivateKey,
        issuer: Optional[x509.Certificate],
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(issuer.subject if issuer else _name(cn))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        return builder.sign(signer, hashes.SHA256())

    def issue(self, spiffe_id: str, lifetime: datetime.timedelta = datetime.timedelta(hours=24)) -> Svid:
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name("workload"))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                critical=True,
            )
            .sign(self._int_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Svid(
            spiffe_id=spiffe_id,
            chain_der=[
                leaf.public_bytes(serialization.Encoding.DER),
                self.intermediate.public_bytes(serialization.Encoding.DER),
            ],
            key_pem=key_pem,
        )

    def bundle_entry(self) -> dict:
        root_der = self.root.public_bytes(serialization.Encoding.DER)
        return {
            "spiffe_sequence": 1,
            "keys": [{"kty": "EC", "use": "x509-svid", "x5c": [base64.b64encode(root_der).decode()]}],
        }


def write_credentials_dir(
    directory: str, svid: Svid, local: TrustDomainCa, federated: Sequence[TrustDomainCa] = ()
) -> str:
    """Writes the node agent's files for `svid` into `directory`; returns it."""
    os.makedirs(directory, exist_ok=True)
    bundles = {"trust_domains": {ca.trust_domain: ca.bundle_entry() for ca in [local, *federated]}}
    files = {
        "certificates.pem": svid.chain_pem,
        "private_key.pem": svid.key_pem,
        "ca_certificates.pem": local.root.public_bytes(serialization.Encoding.PEM),
        "trust_bundles.json": json.dumps(bundles).encode(),
        "config_status": b'{"partnerMetadataConfigsErrors":{}}',
    }
    for name, content in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(content)
    os.chmod(os.path.join(directory, "private_key.pem"), 0o600)
    return directory


def write_layout_dir(directory: str, svid: Svid, local: TrustDomainCa, layout: str) -> str:
    """Writes `svid` in one of the other credential layouts, independently of the emulator:
    ``combined`` (GKE's x509.credential-bundle.private-key.pem, chain then key), ``spiffe-fs``
    (SPIFFE filesystem delivery: PKCS#8 key first, then the chain without the root, and
    ``<td>.spiffe-trust-bundle.pem``) or ``no-key`` (the certificate without its key)."""
    os.makedirs(directory, exist_ok=True)
    root_pem = local.root.public_bytes(serialization.Encoding.PEM)
    if layout == "combined":
        files = {
            "x509.credential-bundle.private-key.pem": svid.chain_pem + svid.key_pem,
            "ca_certificates.pem": root_pem,
        }
    elif layout == "spiffe-fs":
        files = {
            "credential-bundle.private-key.pem": svid.key_pem + svid.chain_pem,
            f"{local.trust_domain}.spiffe-trust-bundle.pem": root_pem,
        }
    elif layout == "no-key":
        files = {"certificates.pem": svid.chain_pem, "ca_certificates.pem": root_pem}
    else:
        raise ValueError(layout)
    for name, content in files.items():
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, 0o600)
    return directory
