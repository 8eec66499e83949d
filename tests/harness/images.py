"""Test images built locally, because no image registry is reachable from here.

`shoal-test/busybox:latest` is a static busybox and its applet links, imported as a
one-layer image (the SDK's equivalent of `tar -C root -c . | docker import -c 'CMD
["/bin/sh"]' -`): about 1 MB, built in well under a second, and only when the engine lacks
this layout of it (a label carries the layout's version), so it
lives on in the harness engine's data root between runs.

It also has `/etc/passwd` and `/etc/group` with root and nobody, so tests can run a task
as another user, and a writable `/tmp`.

The HTTP server helper exists because of PID 1: a shell or `httpd` running as a
container's first process ignores SIGTERM (the kernel drops signals PID 1 has no handler
for), and then every stop waits out the whole grace period. The helper's shell installs
a handler, so it exits at once on SIGTERM, with or without `init` in the task spec.
"""

from __future__ import annotations

import io
import shlex
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path
from typing import Any

BUSYBOX_IMAGE = "shoal-test/busybox:latest"
#: Bumped whenever `busybox_rootfs_tar` changes what the image holds: an engine holding an
#: image with another layout (say, one from before `/tmp` existed) gets it re-imported.
LAYOUT_LABEL = "shoal.test-image.layout"
LAYOUT = "2"

_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def find_static_busybox() -> Path:
    """A busybox that runs in an empty image (no dynamic loader); Debian: busybox-static."""
    for candidate in ("/bin/busybox", shutil.which("busybox")):
        if candidate and Path(candidate).is_file() and not _has_interpreter(Path(candidate)):
            return Path(candidate)
    raise FileNotFoundError(
        "no static busybox found (apt-get install busybox-static); scripts/install-deps does it"
    )


def _has_interpreter(path: Path) -> bool:
    """Whether the ELF file at `path` asks for a dynamic loader (a PT_INTERP header)."""
    with path.open("rb") as file:
        header = file.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:  # only 64-bit ELF is expected here
            return True
        endian = "<" if header[5] == 1 else ">"
        (phoff,) = struct.unpack_from(endian + "Q", header, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", header, 0x36)
        file.seek(phoff)
        table = file.read(phentsize * phnum)
    pt_interp = 3
    return any(
        struct.unpack_from(endian + "I", table, index * phentsize)[0] == pt_interp
        for index in range(phnum)
    )


def busybox_rootfs_tar(busybox: Path) -> bytes:
    """The image's root filesystem as an uncompressed tar, built in memory."""
    applets = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700)):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        for name, content in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def ensure_busybox_image(client: Any) -> str:
    """Import `shoal-test/busybox:latest` unless the engine has this layout of it; its name."""
    import docker.errors

    try:
        labels = (client.api.inspect_image(BUSYBOX_IMAGE).get("Config") or {}).get("Labels")
        if (labels or {}).get(LAYOUT_LABEL) == LAYOUT:
            return BUSYBOX_IMAGE
    except docker.errors.ImageNotFound:
        pass
    repository, _, tag = BUSYBOX_IMAGE.rpartition(":")
    client.api.import_image_from_data(
        busybox_rootfs_tar(find_static_busybox()),
        repository=repository,
        tag=tag,
        changes=['CMD ["/bin/sh"]', f"LABEL {LAYOUT_LABEL}={LAYOUT}"],
    )
    client.api.inspect_image(BUSYBOX_IMAGE)  # fails loudly if the import did not take
    return BUSYBOX_IMAGE


def shell_until_sigterm(script: str = ":") -> list[str]:
    """`sh -c` running `script`, then idling until SIGTERM, on which it exits 0 at once."""
    return ["/bin/sh", "-c", f"trap 'exit 0' TERM INT; {script}; sleep 3600 & wait $!"]


def http_hostname_server(port: int = 80, *, bind: str = "") -> list[str]:
    """A command serving the machine's hostname over HTTP on `port` (busybox httpd).

    It serves from `www/` under the working directory (`/www` in a container). Runs in
    the busybox image or on any host with busybox; exits 0 promptly on SIGTERM.
    """
    address = f"{bind}:{port}" if bind else str(port)
    script = (
        "mkdir -p www && hostname > www/index.html && "
        f"busybox httpd -f -p {shlex.quote(address)} -h www & wait $!"
    )
    return ["/bin/sh", "-c", f"trap 'exit 0' TERM INT; {script}"]
