"""TLS for the manager's listeners and for the clients that call them.

Named as Docker names them, so that the same certificates serve both:
- a manager given `--tlscert` and `--tlskey` serves its REST API (and `--docker-api`)
  over HTTPS; with `--tlscacert` too, it also requires every client to present a
  certificate signed by that CA (what `dockerd --tlsverify` does);
- a client (`shoal` commands, an agent joining) verifies an `https://` manager against
  the system's trust store, or against `--tlscacert` / `SHOAL_TLS_CACERT`, and presents
  `--tlscert` / `--tlskey` (`SHOAL_TLS_CERT`, `SHOAL_TLS_KEY`) when the manager asks.

Files are loaded when the process starts, so a wrong path, a key that does not match
its certificate, or a file that is not PEM is a one-line error naming the option, not a
failure on the first connection.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

CACERT_ENV = "SHOAL_TLS_CACERT"
CERT_ENV = "SHOAL_TLS_CERT"
KEY_ENV = "SHOAL_TLS_KEY"


class TlsError(ValueError):
    """TLS files that cannot be used; the message names the option and the file."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths as given; `cert` and `key` go together, `cacert` alone is allowed."""

    cert: str | None = None
    key: str | None = None
    cacert: str | None = None

    def __bool__(self) -> bool:
        return bool(self.cert or self.key or self.cacert)


def server_context(files: TlsFiles) -> ssl.SSLContext | None:
    """The context a manager's listener serves with; None when no certificate is given.

    `cacert` makes client certificates mandatory. `TlsError` names what is wrong."""
    if not (files.cert or files.key):
        if files.cacert:
            raise TlsError("--tlscacert needs --tlscert and --tlskey: the manager's own pair")
        return None
    if not (files.cert and files.key):
        missing = "--tlskey" if files.cert else "--tlscert"
        raise TlsError(f"{missing} is missing: give the certificate and its key together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(context, files.cert, files.key, options=("--tlscert", "--tlskey"))
    if files.cacert:
        _load_ca(context, files.cacert, option="--tlscacert")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """The context a client verifies an `https://` manager with (and shows its own
    certificate from, when given)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if files.cacert:
        _load_ca(context, files.cacert, option="--tlscacert")
    if files.cert or files.key:
        if not (files.cert and files.key):
            missing = "--tlskey" if files.cert else "--tlscert"
            raise TlsError(f"{missing} is missing: give the certificate and its key together")
        _load_pair(context, files.cert, files.key, options=("--tlscert", "--tlskey"))
    return context


def client_files_from_env(given: TlsFiles | None = None) -> TlsFiles:
    """`given`'s paths, each falling back to its `SHOAL_TLS_*` variable."""
    given = given or TlsFiles()
    return TlsFiles(
        cert=given.cert or os.environ.get(CERT_ENV) or None,
        key=given.key or os.environ.get(KEY_ENV) or None,
        cacert=given.cacert or os.environ.get(CACERT_ENV) or None,
    )


def describe_failure(error: BaseException) -> str | None:
    """A sentence for a TLS handshake failure seen by a client, else None."""
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "the manager's certificate is not trusted (give its CA with --tlscacert or "
            f"{CACERT_ENV})"
        )
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return "the manager does not speak TLS there (try http://)"
    if "CERTIFICATE_REQUIRED" in text or "certificate required" in text.lower():
        return (
            "the manager requires a client certificate (give --tlscert and --tlskey, or "
            f"{CERT_ENV} and {KEY_ENV})"
        )
    if "SSL" in text or "TLS" in text:
        return f"the TLS handshake failed: {text}"
    return None


def _load_pair(context: ssl.SSLContext, cert: str, key: str, *, options: tuple[str, str]) -> None:
    for option, path in zip(options, (cert, key), strict=True):
        if not os.path.isfile(path):
            raise TlsError(f"{option} {path}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsError(
            f"{options[0]} {cert} / {options[1]} {key}: not a PEM certificate and its "
            f"matching key ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise TlsError(f"{options[0]} {cert}: {exc.strerror or exc}") from None


def _load_ca(context: ssl.SSLContext, path: str, *, option: str) -> None:
    if not os.path.isfile(path):
        raise TlsError(f"{option} {path}: no such file")
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TlsError(f"{option} {path}: not a PEM CA certificate ({exc.reason or exc})") from None
    except OSError as exc:
        raise TlsError(f"{option} {path}: {exc.strerror or exc}") from None
