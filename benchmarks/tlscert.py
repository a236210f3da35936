"""
A throwaway TLS identity for the TLS benchmarks: a self-signed certificate
for 127.0.0.1, made at run time into a server's temporary directory.

The generator does not verify it (loopback, and what is measured is the
cost of encrypting, not of trusting), so nothing about it needs to be
kept or distributed.  RSA 2048 is what a real deployment would most
likely use; the key only costs at the handshake, which is outside every
measured window.

ngircd is built with GnuTLS, which generates Diffie-Hellman parameters
at start when it has none (it "may take some time"): L{FFDHE2048} is the
fixed group of RFC 7919, so it never has to.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

#: RFC 7919's ffdhe2048 group (C{openssl genpkey -genparam -algorithm DH
#: -pkeyopt dh_param:ffdhe2048}).
FFDHE2048 = """\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


def makeCert(directory: Path) -> tuple[Path, Path]:
    """
    Write a new key and a self-signed certificate for 127.0.0.1 into
    C{directory}.

    @return: the paths of the key and of the certificate (both PEM).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    keyPath = directory / "key.pem"
    certPath = directory / "cert.pem"
    keyPath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    certPath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return keyPath, certPath


def writeDHParams(directory: Path) -> Path:
    """
    Write L{FFDHE2048} into C{directory}; its path.
    """
    path = directory / "dhparams.pem"
    path.write_text(FFDHE2048)
    return path
