"""Run one command in a throwaway QEMU virtual machine that mounts cgroup v2 only.

The guest is the host's own Debian kernel (``/boot/vmlinuz-*``, package ``linux-image-amd64``) under TCG
(``-accel tcg``: no KVM is needed) with a tiny initramfs built here in well under a second: a static busybox
(``busybox-static``), the kernel's 9p and virtio modules and an ``/init`` script. There is no disk image: the
host's ``/usr``, ``/etc``, Python's installation and the checkout are shared into the guest read-only with 9p
(``-virtfs``), at the same paths, so the guest runs the checkout's ``.venv`` as it is. ``/init`` mounts the
unified cgroup hierarchy alone on ``/sys/fs/cgroup`` (and the kernel is told ``cgroup_no_v1=all``), runs the
command with its output going to a read-write 9p share of a temporary directory, and powers the VM off.

Every path ends with the QEMU process gone and the temporary directory removed: a command that overruns its
timeout has the VM killed (:class:`VmError` with the console's last lines).

    python -m tests.vm.qemu -- sh -c 'cat /proc/self/cgroup; cat /sys/fs/cgroup/cgroup.controllers'
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import platform
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
QEMU = "qemu-system-x86_64"
#: The modules the guest loads to reach its 9p shares (their dependencies are found in ``modules.dep``).
GUEST_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
#: What a Debian host needs for :func:`run` (``apt-get install`` them).
PACKAGES = ("qemu-system-x86", "linux-image-amd64", "busybox-static")
_MSIZE = 512 * 1024  # 9p message size: fewer round trips per file read


class VmError(RuntimeError):
    """The VM did not run the command to its end (boot failure, timeout); the message has the console tail."""


@dataclass(frozen=True)
class GuestResult:
    """What a command run in the guest left: its exit status and output, the guest's serial console, the guest's
    uptime when the command started (``boot_s``) and the wall time from QEMU's start to its exit (``wall_s``)."""

    returncode: int
    stdout: str
    stderr: str
    console: str
    boot_s: float
    wall_s: float


@dataclass(frozen=True)
class Kernel:
    """A host kernel the guest boots: its image and its modules' directory."""

    image: Path
    modules: Path


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def find_kernel(boot: Path = Path("/boot"), modules_root: Path = Path("/lib/modules")) -> Kernel | None:
    """The newest readable ``vmlinuz-<version>`` that has ``/lib/modules/<version>/modules.dep``."""
    found = []
    for image in boot.glob("vmlinuz-*"):
        modules = modules_root / image.name.removeprefix("vmlinuz-")
        if os.access(image, os.R_OK) and (modules / "modules.dep").is_file():
            found.append(Kernel(image=image, modules=modules))
    return max(found, key=lambda k: _natural(k.image.name), default=None)


def _is_static(binary: Path) -> bool:
    """True for an ELF executable without a program interpreter (nothing to load it in the initramfs)."""
    with open(binary, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))  # 3: PT_INTERP


def find_busybox() -> Path | None:
    """A statically linked busybox (Debian's ``busybox-static`` installs one as ``/bin/busybox``)."""
    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and Path(candidate).is_file():
            with contextlib.suppress(OSError):
                if _is_static(Path(candidate)):
                    return Path(candidate)
    return None


def module_order(modules_dep: str, wanted: Sequence[str], builtin: str = "") -> list[str]:
    """Paths (relative to the modules' directory) of ``wanted`` and what they depend on, dependencies first;
    built-in modules are left out. ``KeyError`` names a module that is neither."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in modules_dep.splitlines():
        path, _, rest = line.partition(":")
        deps[_module_name(path)] = (path, rest.split())
    built_in = {_module_name(p) for p in builtin.split()}
    order: list[str] = []

    def visit(name: str) -> None:
        if name in built_in or deps.get(name, ("",))[0] in order:
            return
        path, needs = deps[name]
        for dep in needs:
            visit(_module_name(dep))
        order.append(path)

    for name in wanted:
        visit(name)
    return order


def _module_name(path: str) -> str:
    return re.sub(r"\.ko(\.\w+)?$", "", Path(path).name).replace("-", "_")


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def unavailable_reason() -> str | None:
    """Why :func:`run` cannot work on this host (one line), or None when it can."""
    if platform.machine() != "x86_64":
        return f"the VM boots the host's x86_64 kernel; this host is {platform.machine()}"
    missing = [what for what, found in ((QEMU, shutil.which(QEMU)), ("a kernel in /boot with its modules",
                                                                  find_kernel()),
                                        ("a static busybox", find_busybox())) if not found]
    if missing:
        return f"no {', no '.join(missing)} (apt-get install {' '.join(PACKAGES)})"
    try:
        kernel = find_kernel()
        module_order((kernel.modules / "modules.dep").read_text(), GUEST_MODULES, _builtin(kernel))
    except KeyError as err:
        return f"the kernel has no module {err} (9p shares need it)"
    return None


def _builtin(kernel: Kernel) -> str:
    with contextlib.suppress(OSError):
        return (kernel.modules / "modules.builtin").read_text()
    return ""


def cpio_newc(entries: Sequence[tuple[str, int, bytes]]) -> bytes:
    """A ``newc`` cpio archive (what the kernel unpacks as an initramfs) of ``(path, mode, content)``;
    a symlink's content is its target."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out += b"070701" + "".join(f"{v:08x}" for v in fields).encode() + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def host_shares(extra: Sequence[Path] = ()) -> tuple[list[Path], dict[str, str]]:
    """``(directories shared read-only, {top-level name: symlink target})``: ``/usr``, ``/etc``, this Python's
    installation and the checkout, and ``/bin``, ``/lib``... as symlinks where the host has merged them
    into ``/usr`` (shared as directories where it has not)."""
    wanted = [Path("/usr"), Path("/etc"), Path(sys.base_prefix).resolve(), CHECKOUT, *extra]
    links = {}
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            links[top] = os.readlink(path)
        elif path.is_dir():
            wanted.append(path)
    shares = []
    for path in sorted(set(wanted), key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(s) for s in shares):
            shares.append(path)
    return shares, links


def init_script(modules: Sequence[str], shares: Sequence[Path], links: dict[str, str],
                env: dict[str, str]) -> str:
    """The guest's ``/init``: pure cgroup v2, the shares at their host paths, then ``/job/command``'s output
    into the job share, then power off (a failed step is echoed to the console, the command still runs)."""
    nine_p = f"-t 9p -o trans=virtio,version=9p2000.L,msize={_MSIZE}"
    mounts = "\n".join(f"$b mkdir -p {shlex.quote(str(p))} && $b mount {nine_p},ro,cache=loose host{i} "
                       f"{shlex.quote(str(p))} || echo 'ddl-vm: cannot mount {p}'" for i, p in enumerate(shares))
    symlinks = "\n".join(f"$b ln -s {shlex.quote(target)} /{top}" for top, target in links.items())
    environment = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    return f"""#!/busybox sh
b=/busybox
$b mkdir -p /proc /sys /dev /tmp /job /run
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
$b mount -t devtmpfs devtmpfs /dev
$b mkdir -p /dev/shm /dev/pts && $b mount -t tmpfs tmpfs /dev/shm && $b mount -t devpts devpts /dev/pts
$b mount -t cgroup2 cgroup2 /sys/fs/cgroup || echo 'ddl-vm: cannot mount cgroup2'
for m in {' '.join(shlex.quote(Path(m).name) for m in modules)}; do
  $b insmod /modules/$m || echo "ddl-vm: cannot load $m"
done
$b mount {nine_p} job /job || echo 'ddl-vm: cannot mount the job share'
{mounts}
{symlinks}
$b ip link set lo up
$b cat /proc/uptime > /job/uptime
$b env -i {environment} /bin/sh /job/command > /job/stdout 2> /job/stderr < /dev/null
echo $? > /job/rc.part && $b mv /job/rc.part /job/rc
$b sync
$b poweroff -f
"""


def build_initramfs(target: Path, kernel: Kernel, busybox: Path, shares: Sequence[Path],
                    links: dict[str, str], env: dict[str, str]) -> None:
    """Write the gzip-compressed initramfs of :func:`init_script` to ``target``."""
    modules = module_order((kernel.modules / "modules.dep").read_text(), GUEST_MODULES, _builtin(kernel))
    entries = [("busybox", 0o100755, busybox.read_bytes()), ("modules", 0o040755, b"")]
    for module in modules:
        name = re.sub(r"\.ko\.\w+$", ".ko", Path(module).name)
        entries.append((f"modules/{name}", 0o100644, _module_bytes(kernel.modules / module)))
    script = init_script([re.sub(r"\.ko\.\w+$", ".ko", m) for m in modules], shares, links, env)
    entries.append(("init", 0o100755, script.encode()))
    target.write_bytes(gzip.compress(cpio_newc(entries), compresslevel=1))


def qemu_command(kernel: Kernel, initramfs: Path, shares: Sequence[Path], job: Path, console: Path,
                 cpus: int, memory_mib: int) -> list[str]:
    """QEMU's argv: TCG (KVM hangs this kernel at boot here, ``-cpu host`` aborts) emulating every CPU feature it
    can (numpy's wheels need SSE4.2 and more, which the default CPU model lacks), no default devices."""
    share = "local,security_model=none,multidevs=remap"
    argv = [QEMU, "-accel", "tcg", "-cpu", "max", "-smp", str(cpus), "-m", str(memory_mib), "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", f"file:{console}", "-no-reboot",
            "-kernel", str(kernel.image), "-initrd", str(initramfs),
            "-append", "console=ttyS0 panic=-1 cgroup_no_v1=all quiet loglevel=4 8250.nr_uarts=1 mitigations=off",
            "-virtfs", f"{share},path={job},mount_tag=job"]
    for i, path in enumerate(shares):
        argv += ["-virtfs", f"{share},path={path},mount_tag=host{i},readonly=on"]
    return argv


def run(argv: Sequence[str], cwd: Path = CHECKOUT, timeout_s: float = 300.0, cpus: int = 2,
        memory_mib: int = 1024, env: dict[str, str] | None = None) -> GuestResult:
    """Boot a VM, run ``argv`` in ``cwd`` as root there, power it off; raises :class:`VmError` when no exit
    status came back within ``timeout_s``. ``env`` is added to a minimal environment."""
    reason = unavailable_reason()
    if reason is not None:
        raise VmError(reason)
    kernel, busybox = find_kernel(), find_busybox()
    shares, links = host_shares()
    environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp",
                   "LANG": "C.UTF-8", "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    work = Path(tempfile.mkdtemp(prefix="ddl-vm-"))
    proc = None
    try:
        job = work / "job"
        job.mkdir()
        (job / "command").write_text(f"cd {shlex.quote(str(cwd))} || exit 97\nexec {shlex.join(map(str, argv))}\n")
        build_initramfs(work / "initramfs.gz", kernel, busybox, shares, links, environment)
        console = work / "console.log"
        start = time.monotonic()
        proc = subprocess.Popen(qemu_command(kernel, work / "initramfs.gz", shares, job, console, cpus, memory_mib),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            qemu_output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise VmError(f"no result within {timeout_s:g} s; console:\n{_tail(console)}") from None
        wall = time.monotonic() - start
        if not (job / "rc").is_file():
            raise VmError(f"the guest ended without running the command (QEMU exit {proc.returncode}: "
                          f"{qemu_output.decode(errors='replace').strip()}); console:\n{_tail(console)}")
        return GuestResult(returncode=int((job / "rc").read_text()), stdout=(job / "stdout").read_text(),
                           stderr=(job / "stderr").read_text(), console=console.read_text(errors="replace"),
                           boot_s=float((job / "uptime").read_text().split()[0]), wall_s=wall)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def _tail(console: Path, lines: int = 40) -> str:
    try:
        return "\n".join(console.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console output)"


def main(argv: Sequence[str]) -> int:
    """``python -m tests.vm.qemu -- COMMAND...``: run COMMAND in the VM, print its output and timings."""
    command = list(argv[1:] if argv[:1] == ["--"] else argv) or ["cat", "/proc/self/cgroup"]
    try:
        result = run(command)
    except VmError as err:
        print(f"vm: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    print(f"vm: exit {result.returncode}, booted in {result.boot_s:.1f} s, {result.wall_s:.1f} s in all",
          file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
