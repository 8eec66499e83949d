"""Throwaway certificates for TLS tests, made with `openssl` (P-256 keys, valid 2 days).

`make_pki` writes the set the manager's TLS tests use: a CA that signs a server
certificate for 127.0.0.1 and a client certificate, and a second CA that signs a
"stranger" client certificate nothing trusts. `make_ca` and `sign` are its steps, for
other layouts (the etcd harness's).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
SERVER = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
CLIENT = "extendedKeyUsage=clientAuth\n"


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is missing; run scripts/install-deps")
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    """`<name>.pem` and `<name>.key` in `directory`: a self-signed CA."""
    _openssl(
        "req", "-x509", *KEY, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def sign(directory: Path, name: str, *, ca: str, extensions: str, subject: str) -> None:
    """`<name>.pem` and `<name>.key` in `directory`, signed by the CA `ca` made there."""
    _openssl(
        "req", *KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
        cwd=directory,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # signed by a CA the server does not trust
    stranger_key: Path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    sign(directory, "server", ca="ca", extensions=SERVER, subject="/CN=127.0.0.1")
    sign(directory, "client", ca="ca", extensions=CLIENT, subject="/CN=shoal-user")
    sign(directory, "stranger", ca="other-ca", extensions=CLIENT, subject="/CN=stranger")
    return Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        stranger_cert=directory / "stranger.pem",
        stranger_key=directory / "stranger.key",
    )
