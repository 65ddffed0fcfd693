"""Per-node CPU share, memory cap and freezing with Linux cgroups, so the nodes of a one-machine cluster
behave like separate PCs.

Every node of a cluster gets one control group: on a cgroup v1 host one directory per controller (``cpu``,
``cpuacct``, ``memory``, ``freezer``), on a cgroup v2 host one directory of the unified hierarchy. The groups
are made under the cgroup this process already belongs to (``ddl-<cluster id>/<node>``), so they stay inside
whatever limits the machine set for us. A node's daemon is started through :func:`enter_command`, which moves
the shell into the group before it ``exec``s the daemon; every child (Spark executors, Python workers,
TensorFlow's threads) inherits the group.

* CPU share: the CFS quota (``cpu.cfs_quota_us`` / ``cpu.max``) of ``share`` x the period, so a node with
  share 0.4 gets at most 0.4 of a core over every 100 ms, whatever the rest of the machine does.
* Memory cap: ``memory.limit_in_bytes`` / ``memory.max``; past it the kernel's OOM killer ends a process of
  that node only, which :meth:`NodeGroup.oom_kills` then reports.
* Freezing (``freezer.state`` / ``cgroup.freeze``): the node's processes stop being scheduled, sockets stay
  open: a hung PC, alive but silent.

Which hierarchy is used is decided at run time from what the host mounts (``/proc/self/mountinfo``, see
:func:`choose_layout`): v1 where every controller above has a v1 mount (a hybrid host, whose v2 mount holds
no controllers, stays on v1), else the unified v2 hierarchy where it offers ``cpu`` and ``memory``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ddl_commodity.errors import UserInputError

CGROUP_ROOT = Path("/sys/fs/cgroup")
MOUNTINFO = Path("/proc/self/mountinfo")
PERIOD_US = 100_000
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "freezer")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)


class CgroupsUnavailable(UserInputError):
    """Node isolation was asked for but this machine offers no writable cgroup to isolate with."""


def parse_size(text: str | int) -> int:
    """Bytes from ``"2g"``, ``"512m"``, ``"1.5G"``, ``"2GiB"`` or a plain number of bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(str(text).strip())
    if not match:
        raise UserInputError(f"memory size {text!r}: expected a number with an optional k/m/g/t suffix, e.g. 2g")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


@dataclass(frozen=True)
class NodeLimits:
    """What one node may use. ``cpus``: share of one core (0.4 = 40 ms per 100 ms); ``memory``: bytes."""

    cpus: float | None = None
    memory: int | None = None

    @property
    def isolated(self) -> bool:
        return self.cpus is not None or self.memory is not None


@dataclass(frozen=True)
class GroupUsage:
    """Cumulative counters of one node's group, read at ``time``."""

    time: float
    cpu_seconds: float
    throttled_seconds: float
    nr_throttled: int
    memory_bytes: int
    memory_limit: int | None
    oom_kills: int


@dataclass
class NodeGroup:
    """One node's control group; ``dirs`` is ``{controller: directory}`` (v1) or ``{"unified": directory}``."""

    node: str
    version: int
    dirs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NodeGroup:
        return cls(**data)

    def _dir(self, controller: str) -> Path:
        return Path(self.dirs["unified" if self.version == 2 else controller])

    def procs_files(self) -> list[Path]:
        return [Path(d) / "cgroup.procs" for d in self.dirs.values()]

    def add(self, pid: int) -> None:
        for f in self.procs_files():
            f.write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            text = self.procs_files()[0].read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def set_cpus(self, cpus: float | None) -> None:
        quota = -1 if cpus is None else max(1000, round(cpus * PERIOD_US))
        if self.version == 1:
            (self._dir("cpu") / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self._dir("cpu") / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (self._dir("cpu") / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {PERIOD_US}")

    def cpus(self) -> float | None:
        if self.version == 1:
            quota = int((self._dir("cpu") / "cpu.cfs_quota_us").read_text())
            period = int((self._dir("cpu") / "cpu.cfs_period_us").read_text())
        else:
            text, period_text = (self._dir("cpu") / "cpu.max").read_text().split()
            quota, period = (-1 if text == "max" else int(text)), int(period_text)
        return None if quota < 0 else quota / period

    def set_memory(self, limit: int | None) -> None:
        if self.version == 1:
            (self._dir("memory") / "memory.limit_in_bytes").write_text(str(-1 if limit is None else limit))
        else:
            (self._dir("memory") / "memory.max").write_text("max" if limit is None else str(limit))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to cap
                (self._dir("memory") / "memory.swap.max").write_text("0" if limit is not None else "max")

    def freeze(self, frozen: bool) -> None:
        if self.version == 1:
            (self._dir("freezer") / "freezer.state").write_text("FROZEN" if frozen else "THAWED")
        else:
            (self._dir("freezer") / "cgroup.freeze").write_text("1" if frozen else "0")

    def frozen(self) -> bool:
        if self.version == 1:
            return (self._dir("freezer") / "freezer.state").read_text().strip() != "THAWED"
        return _keyed(self._dir("freezer") / "cgroup.events").get("frozen", 0) == 1

    def usage(self) -> GroupUsage:
        if self.version == 1:
            now = time.time()
            cpu_ns = int((self._dir("cpuacct") / "cpuacct.usage").read_text())
            stat = _keyed(self._dir("cpu") / "cpu.stat")
            limit = int((self._dir("memory") / "memory.limit_in_bytes").read_text())
            return GroupUsage(
                time=now, cpu_seconds=cpu_ns / 1e9, throttled_seconds=stat.get("throttled_time", 0) / 1e9,
                nr_throttled=stat.get("nr_throttled", 0),
                memory_bytes=int((self._dir("memory") / "memory.usage_in_bytes").read_text()),
                memory_limit=None if limit >= 2**62 else limit,
                oom_kills=_keyed(self._dir("memory") / "memory.oom_control").get("oom_kill", 0))
        now = time.time()
        stat = _keyed(self._dir("cpu") / "cpu.stat")
        limit_text = (self._dir("memory") / "memory.max").read_text().strip()
        return GroupUsage(
            time=now, cpu_seconds=stat.get("usage_usec", 0) / 1e6,
            throttled_seconds=stat.get("throttled_usec", 0) / 1e6, nr_throttled=stat.get("nr_throttled", 0),
            memory_bytes=int((self._dir("memory") / "memory.current").read_text()),
            memory_limit=None if limit_text == "max" else int(limit_text),
            oom_kills=_keyed(self._dir("memory") / "memory.events").get("oom_kill", 0))

    def remove(self, timeout_s: float = 10.0) -> None:
        """Thaw, then remove the directories once their processes are gone (the caller killed them)."""
        with contextlib.suppress(OSError):
            self.freeze(False)
        deadline = time.monotonic() + timeout_s
        for d in self.dirs.values():
            while True:
                try:
                    Path(d).rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


def _keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.events, memory.oom_control) as a dict of ints."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    return out


def own_cgroups(proc_cgroup: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    """``{controller: path}`` of this process (``"unified"`` for the v2 hierarchy's ``0::`` line)."""
    out: dict[str, str] = {}
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in (controllers.split(",") if controllers else ["unified"]):
            out[c] = path
    return out


@dataclass(frozen=True)
class CgroupMount:
    """One cgroup file system mount: at ``point`` it shows the hierarchy from ``root`` on (``/`` unless only
    part of the hierarchy is mounted there, as in a container without a cgroup namespace)."""

    point: Path
    root: str = "/"

    def directory(self, cgroup_path: str) -> Path:
        """Where the group ``cgroup_path`` (as ``/proc/<pid>/cgroup`` names it) is under this mount."""
        if self.root != "/" and (cgroup_path == self.root or cgroup_path.startswith(self.root + "/")):
            cgroup_path = cgroup_path[len(self.root):]
        return self.point / cgroup_path.lstrip("/")


@dataclass(frozen=True)
class MountTable:
    """The cgroup mounts of a mount table: ``v1`` ``{option: mount}`` for every option of every v1 mount (its
    controllers, and flags such as ``rw`` that nobody looks up), ``unified`` the v2 mount or None."""

    v1: dict[str, CgroupMount]
    unified: CgroupMount | None


@dataclass(frozen=True)
class Layout:
    """Where node groups go: ``version`` 1 with ``mounts`` ``{controller: mount}`` for every controller of
    :data:`V1_CONTROLLERS`, or 2 with ``{"unified": mount}``."""

    version: int
    mounts: dict[str, CgroupMount]


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> MountTable:
    """The cgroup mounts in ``/proc/<pid>/mountinfo`` text (the first mount of a controller counts)."""
    v1: dict[str, CgroupMount] = {}
    unified = None
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:  # mount id, parent, dev, root, point, options, optional fields, "-"
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 4:
            continue
        mount = CgroupMount(point=Path(_unescape(fields[4])), root=_unescape(fields[3]))
        if fields[sep + 1] == "cgroup2" and unified is None:
            unified = mount
        elif fields[sep + 1] == "cgroup":
            for option in fields[sep + 3].split(","):
                v1.setdefault(option, mount)
    return MountTable(v1=v1, unified=unified)


def choose_layout(table: MountTable, unified_controllers: Iterable[str] = ()) -> Layout | None:
    """v1 when every controller of :data:`V1_CONTROLLERS` has a v1 mount (so a hybrid host, whose v2 mount
    holds no controllers, stays on v1); else v2 when the v2 mount offers ``cpu`` and ``memory``
    (``unified_controllers``: its ``cgroup.controllers``); else None."""
    if all(c in table.v1 for c in V1_CONTROLLERS):
        return Layout(version=1, mounts={c: table.v1[c] for c in V1_CONTROLLERS})
    if table.unified is not None and {"cpu", "memory"} <= set(unified_controllers):
        return Layout(version=2, mounts={"unified": table.unified})
    return None


def _mount_table(mountinfo: Path = MOUNTINFO) -> MountTable:
    try:
        return parse_mountinfo(mountinfo.read_text())
    except OSError:
        return MountTable(v1={}, unified=None)


def _controllers(mount: CgroupMount | None) -> list[str]:
    """The controllers a v2 mount offers (its ``cgroup.controllers``)."""
    if mount is None:
        return []
    try:
        return (mount.point / "cgroup.controllers").read_text().split()
    except OSError:
        return []


def host_layout(mountinfo: Path = MOUNTINFO) -> Layout | None:
    """The layout this process's mounts offer (:func:`choose_layout`), read at every call."""
    table = _mount_table(mountinfo)
    return choose_layout(table, _controllers(table.unified))


def private_memory_group(limit: int) -> Path | None:
    """Move this process into a new child of its own memory cgroup (v1 or v2) limited to ``limit`` bytes; the
    group's directory, or None where that is impossible. A small shell loop removes the group once the process
    has left it (it cannot do so itself: it is killed)."""
    import subprocess

    own, table = own_cgroups(), _mount_table()
    if "memory" in own and "memory" in table.v1:
        parent, limits = table.v1["memory"].directory(own["memory"]), {"memory.limit_in_bytes": str(limit)}
    elif "unified" in own and "memory" in _controllers(table.unified):
        # A group holding processes cannot give its children the memory controller: where this process's
        # group does, the writes below fail and the caller falls back to an address-space limit.
        parent = table.unified.directory(own["unified"])
        limits = {"memory.max": str(limit), "memory.swap.max": "0"}
    else:
        return None
    group = parent / f"ddl-oom-{os.getpid()}"
    try:
        group.mkdir()
        for name, value in limits.items():
            (group / name).write_text(value)
        subprocess.Popen(  # bounded: gives up after 10 minutes
            # `grep -q .`, not `test -s`: cgroup files have size 0 whatever they hold.
            ["sh", "-c", 'for i in $(seq 50); do grep -q . "$1/cgroup.procs" && break; sleep 0.1; done; '
                         'for i in $(seq 3000); do grep -q . "$1/cgroup.procs" || break; sleep 0.2; done; rmdir "$1"',
             "ddl-oom-cleanup", str(group)],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    return group


_NODE_PATH_RE = re.compile(r"^(.*/ddl-[0-9a-f]{12}/[^/]+)")


def remount_script() -> str:
    """Shell commands that mount this machine's cgroup hierarchies again under a fresh ``/sys``.

    ``ip netns exec`` gives what it runs a new ``/sys`` without ``/sys/fs/cgroup``'s mounts: a namespace
    node's own sampler would not see its group. Mounting a v1 controller (or the v2 hierarchy) again, in
    that private mount namespace only, shows the same hierarchy. Errors are ignored: the node then samples
    its processes instead.
    """
    layout = host_layout()
    if layout is None:
        return ""
    points: dict[Path, list[str]] = {}  # a v1 mount may hold several controllers (cpu,cpuacct)
    for controller, mount in layout.mounts.items():
        if mount.point.is_relative_to(CGROUP_ROOT):  # mounts outside /sys survive its remount
            points.setdefault(mount.point, []).append(controller)
    if not points:
        return ""
    mounts = []
    for point, controllers in points.items():
        kind = "-t cgroup2" if layout.version == 2 else f"-t cgroup -o {','.join(controllers)}"
        mounts.append(f"mkdir -p {shlex.quote(str(point))} && mount {kind} ddl {shlex.quote(str(point))}")
    script = "{ " + "; ".join(mounts) + "; }"  # one controller's failure leaves the others mounted
    if list(points) != [CGROUP_ROOT]:  # the mount points are directories of a tmpfs at /sys/fs/cgroup
        script = f"mount -t tmpfs -o mode=755 ddl {CGROUP_ROOT} && {script}"
    return "{ " + script + "; } 2>/dev/null"


def own_node_group() -> NodeGroup | None:
    """The node group this process runs in (inherited from its node's daemon), or None outside any.

    A process may sit in a child of its node's group (the ``oom`` fault makes one): the node's directory
    is the part of the path up to ``ddl-<cluster id>/<node>``.
    """
    try:
        own = own_cgroups()
    except OSError:
        return None
    layout = host_layout()
    if layout is None:
        return None
    matches = {c: _NODE_PATH_RE.match(own.get(c, "")) for c in layout.mounts}
    if not all(matches.values()):
        return None
    dirs = {c: str(layout.mounts[c].directory(m.group(1))) for c, m in matches.items()}
    return NodeGroup(node=Path(next(iter(dirs.values()))).name, version=layout.version, dirs=dirs)


#: Set by docker/docker-compose.yml in every container: the container is a node. (``/.dockerenv`` would not
#: do: a machine that is itself a container, as CI's may be, has one too, and its nodes are not containers.)
CONTAINER_NODE_ENV = "DDL_CONTAINER_NODE"


def in_container() -> bool:
    """True in a node that is a container of the compose cluster."""
    return os.environ.get(CONTAINER_NODE_ENV) == "1"


def container_group(root: Path = CGROUP_ROOT) -> NodeGroup | None:
    """The group of the container this process runs in, or None outside one.

    Docker mounts a container's own group as the root of ``/sys/fs/cgroup`` (each v1 controller, or the v2
    hierarchy), read-only: its counters and limits are the container's (``cpus: 1``, ``mem_limit: 2g``), so a
    container node is sampled like a node of ``ddl cluster up``. Named by the container's hostname.
    """
    import socket

    if not in_container():
        return None
    if (root / "cgroup.controllers").is_file():
        return NodeGroup(node=socket.gethostname(), version=2, dirs={"unified": str(root)})
    if all((root / c).is_dir() for c in V1_CONTROLLERS if c != "freezer"):
        return NodeGroup(node=socket.gethostname(), version=1,
                         dirs={c: str(root / c) for c in V1_CONTROLLERS if (root / c).is_dir()})
    return None


def run_delay_seconds(pids: Iterable[int]) -> dict[int, float]:
    """``{thread id: seconds it waited on a run queue}`` for every thread of ``pids`` (``schedstat``)."""
    out: dict[int, float] = {}
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                out[int(stat.parent.name)] = int(stat.read_text().split()[1]) / 1e9
    return out


def _writable(directory: Path) -> bool:
    return directory.is_dir() and os.access(directory, os.W_OK)


def hierarchy() -> tuple[int, dict[str, Path]]:
    """``(version, {controller: directory new groups go under})`` as :func:`host_layout` chooses them;
    raises :class:`CgroupsUnavailable`."""
    layout = host_layout()
    if layout is None:
        raise CgroupsUnavailable(
            "no cgroup hierarchy with the cpu and memory controllers is mounted (needed for --node-cpus/"
            "--node-memory and node faults); use a Linux host with cgroups, or drop the node limits")
    if layout.version == 2:
        return 2, {"unified": _v2_parent(layout.mounts["unified"].point)}
    own = own_cgroups()
    dirs = {c: m.directory(own.get(c, "/")) for c, m in layout.mounts.items()}
    missing = [str(d) for d in dirs.values() if not _writable(d)]
    if missing:
        raise CgroupsUnavailable(f"cgroup v1 directories not writable: {', '.join(missing)} (run as root)")
    return 1, dirs


def unavailable_reason() -> str | None:
    """Why node groups cannot be made here (one line), or None when they can."""
    try:
        hierarchy()
    except CgroupsUnavailable as err:
        return str(err)
    return None


def _v2_parent(mount: Path) -> Path:
    """Where v2 node groups go: our own group cannot both hold processes and delegate controllers
    (the "no internal processes" rule), so the groups go under the hierarchy's root, which may."""
    if not os.access(mount, os.W_OK):
        raise CgroupsUnavailable(f"{mount} is not writable (run as root to isolate nodes)")
    _delegate(mount)
    return mount


def _delegate(directory: Path) -> None:
    """Give the children of a v2 ``directory`` the ``cpu`` and ``memory`` controllers (its
    ``cgroup.subtree_control``); :class:`CgroupsUnavailable` where the kernel refuses."""
    control = directory / "cgroup.subtree_control"
    for controller in ("cpu", "memory"):
        with contextlib.suppress(OSError):
            control.write_text(f"+{controller}")
    try:
        enabled = set(control.read_text().split())
    except OSError:
        enabled = set()
    if not {"cpu", "memory"} <= enabled:
        raise CgroupsUnavailable(
            f"cannot give the groups under {directory} the cpu and memory controllers (cgroup.subtree_control; "
            "a group other than the root that holds processes cannot)")


def create_node_groups(cluster_id: str, limits: dict[str, NodeLimits]) -> list[NodeGroup]:
    """One group per node under ``ddl-<cluster_id>``, limits applied; nothing half-made on failure."""
    version, parents = hierarchy()
    made: list[NodeGroup] = []
    try:
        for node, lim in limits.items():
            dirs = {}
            for controller, parent in parents.items():
                directory = parent / f"ddl-{cluster_id}" / node
                directory.parent.mkdir(exist_ok=True)
                if version == 2:
                    _delegate(directory.parent)
                directory.mkdir(exist_ok=True)
                dirs[controller] = str(directory)
            group = NodeGroup(node=node, version=version, dirs=dirs)
            made.append(group)
            group.set_cpus(lim.cpus)
            group.set_memory(lim.memory)
    except BaseException:
        remove_groups(made)
        raise
    return made


def remove_groups(groups: Iterable[NodeGroup]) -> None:
    """Remove node groups and their ``ddl-<cluster>`` parents; processes must be gone (killed) first."""
    parents: set[Path] = set()
    for g in groups:
        g.remove()
        parents.update(Path(d).parent for d in g.dirs.values())
    for p in parents:
        with contextlib.suppress(OSError):
            p.rmdir()


def enter_command(group: NodeGroup | None, argv: Sequence[str]) -> list[str]:
    """``argv`` started inside ``group``: a shell joins the group, then ``exec``s (the pid stays argv's)."""
    if group is None:
        return list(argv)
    script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'
    return ["sh", "-c", script, "ddl-cgroup", *map(str, group.procs_files()), "--", *argv]


_CLUSTER_DIR_RE = re.compile(r"^ddl-[0-9a-f]{12}$")


def leftover_groups() -> list[Path]:
    """``ddl-<cluster id>`` directories in the hierarchies, one per controller and cluster."""
    try:
        _, parents = hierarchy()
    except CgroupsUnavailable:
        return []
    return sorted(p for parent in parents.values() for p in parent.glob("ddl-*")
                  if p.is_dir() and _CLUSTER_DIR_RE.match(p.name))


def remove_abandoned_groups(min_age_s: float = 120.0) -> list[str]:
    """Remove the groups of crashed clusters: no process left in any node, older than ``min_age_s`` (a
    cluster being started has empty groups for a moment). Returns the directories removed."""
    removed = []
    for cluster_dir in leftover_groups():
        nodes = [d for d in cluster_dir.iterdir() if d.is_dir()]
        if time.time() - cluster_dir.stat().st_mtime < min_age_s:
            continue
        if any((d / "cgroup.procs").read_text().strip() for d in nodes):
            continue
        with contextlib.suppress(OSError):
            for d in nodes:
                for name, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):  # v1, v2
                    with contextlib.suppress(OSError):
                        (d / name).write_text(thawed)
                d.rmdir()
            cluster_dir.rmdir()
            removed.append(str(cluster_dir))
    return removed
