"""A throw-away one-node SLURM cluster on this machine, for tests of profiles/slurm.

Needs root and Debian's apt-get (or the SLURM, munge and MariaDB binaries already installed).
Everything the cluster writes lives in a temporary folder; /etc/slurm/slurm.conf is linked to
it while the cluster runs (SLURM job steps ignore SLURM_CONF) and restored afterwards. Every
daemon runs in the foreground as a child of this process and is stopped by its PID.

    with LocalSlurm() as cluster:
        result = run_snakemake_on_slurm(workdir, snakefile, ["--forceall"], timeout=300)

See /work/shared/slurm-local.md for the recipe this module follows.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO_ROOT / "profiles" / "slurm"

CLUSTER_NAME = "featdyn"
PARTITION = "debug"
ACCOUNT = "root"  # sacctmgr creates account `root` (user root) with the cluster
NODE_NAME = "localhost"  # the hostname is not `localhost`; slurmd is started with -N localhost
NODE_CPUS = 2
MEMORY_MARGIN_MB = 1024
SLURMCTLD_PORT, SLURMD_PORT, SLURMDBD_PORT = 6817, 6818, 6819

DEBIAN_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")
REQUIRED_BINARIES = (
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmd",
    "/usr/sbin/slurmdbd",
    "/usr/bin/sbatch",
    "/usr/bin/sacct",
    "/usr/bin/sacctmgr",
    "/usr/sbin/munged",
    "/usr/sbin/mariadbd",
    "/usr/bin/mariadb-install-db",
)
PLUGIN_REQUIREMENT = "snakemake-executor-plugin-slurm>=1.0"
PLUGIN_MODULE = "snakemake_executor_plugin_slurm"
PIPELINE_GPU_RULES = ("train", "composite", "isotropy")  # rules that may declare resources: gpu=1

ETC_SLURM_CONF = Path("/etc/slurm/slurm.conf")
CONF_BACKUP_SUFFIX = ".featdyn-backup"
MUNGE_RUN_DIR = Path("/run/munge")
MUNGE_KEY = Path("/etc/munge/munge.key")
MYSQL_RUN_DIR = Path("/run/mysqld")
MYSQL_SOCKET = MYSQL_RUN_DIR / "mysqld.sock"  # libmariadb's default: slurmdbd connects here
LOCK_FILE = Path(tempfile.gettempdir()) / "featdyn-local-slurm.lock"

NO_INSTALL_ENV = "FEATDYN_SLURM_NO_INSTALL"  # set to 1: never apt/pip install, skip instead
KEEP_TMP_ENV = "FEATDYN_SLURM_KEEP_TMP"  # set to 1: keep configs and logs after stopping

APT_TIMEOUT_S = 600
PIP_TIMEOUT_S = 300
COMMAND_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20
PR_SET_PDEATHSIG = 1


class SlurmUnavailable(RuntimeError):
    """The cluster cannot run on this machine (not root, no apt, ports taken...): skip."""


class SlurmStartError(RuntimeError):
    """A daemon did not come up; the message carries the tail of its log."""


class SnakemakeTimeout(AssertionError):
    """Snakemake ran past its hard time limit and was killed."""


# --------------------------------------------------------------------------------------
# small helpers


def run_command(
    cmd: Sequence[str],
    timeout: float = COMMAND_TIMEOUT_S,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command with captured output, always under a timeout."""
    try:
        result = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{' '.join(cmd)} timed out after {timeout:.0f} s") from err
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed with exit code {result.returncode}:\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result


def wait_for(what: str, condition: Callable[[], bool], timeout: float, interval: float = 0.25) -> None:
    """Poll `condition` until it holds; raise SlurmStartError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise SlurmStartError(f"timed out after {timeout:.0f} s waiting for {what}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def unix_socket_alive(path: Path) -> bool:
    if not path.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(str(path)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def node_memory_mb() -> int:
    """RealMemory for the node: `free -m` total minus a margin (slurmd drains a node that
    claims more memory than it has)."""
    for line in run_command(["free", "-m"]).stdout.splitlines():
        if line.startswith("Mem:"):
            return max(512, int(line.split()[1]) - MEMORY_MARGIN_MB)
    raise SlurmStartError("could not read the total memory from `free -m`")


def chown(path: Path, user: str) -> None:
    shutil.chown(path, user=user, group=user)


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the daemon if this Python process dies without cleaning up
    (best effort; the kernel drops it when a daemon switches user by itself)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# --------------------------------------------------------------------------------------
# installation


def missing_binaries() -> list[str]:
    return [path for path in REQUIRED_BINARIES if not os.access(path, os.X_OK)]


def check_can_run(allow_install: bool) -> None:
    """Raise SlurmUnavailable with the reason when the cluster cannot run here."""
    if sys.platform != "linux":
        raise SlurmUnavailable(f"a local SLURM cluster needs Linux, this is {sys.platform}")
    if os.geteuid() != 0:
        raise SlurmUnavailable("a local SLURM cluster needs root (it starts munged, slurmd...)")
    missing = missing_binaries()
    if missing and not allow_install:
        raise SlurmUnavailable(f"SLURM binaries missing and installing is off ({NO_INSTALL_ENV}): {missing}")
    if missing and shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"SLURM binaries missing and no apt-get to install them: {missing}")
    if not allow_install and importlib.util.find_spec(PLUGIN_MODULE) is None:
        raise SlurmUnavailable(f"{PLUGIN_REQUIREMENT} is not installed and installing is off")


def install_debian_packages() -> None:
    """apt-get install the SLURM, munge and MariaDB packages unless their binaries are there."""
    if not missing_binaries():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [
        "apt-get", "install", "-y", "-q", "--no-install-recommends",
        "-o", "DPkg::Lock::Timeout=120", *DEBIAN_PACKAGES,
    ]  # fmt: skip
    result = run_command(install, timeout=APT_TIMEOUT_S, check=False, env=env)
    if result.returncode != 0:  # stale package lists: update once and retry
        run_command(["apt-get", "update", "-q"], timeout=APT_TIMEOUT_S, check=False, env=env)
        result = run_command(install, timeout=APT_TIMEOUT_S, check=False, env=env)
    if result.returncode != 0 or missing_binaries():
        raise SlurmUnavailable(
            f"apt-get could not install {' '.join(DEBIAN_PACKAGES)}:\n{result.stderr[-2000:]}"
        )


def install_plugin() -> None:
    """pip install the Snakemake SLURM executor plugin into this interpreter if missing."""
    if importlib.util.find_spec(PLUGIN_MODULE) is not None:
        return
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", PLUGIN_REQUIREMENT]
    result = run_command(cmd, timeout=PIP_TIMEOUT_S, check=False)
    importlib.invalidate_caches()
    if result.returncode != 0 or importlib.util.find_spec(PLUGIN_MODULE) is None:
        raise SlurmUnavailable(f"could not pip install {PLUGIN_REQUIREMENT}:\n{result.stderr[-2000:]}")


# --------------------------------------------------------------------------------------
# configuration files


@dataclass(frozen=True)
class ClusterPaths:
    """Every path the cluster writes, under one temporary root."""

    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def slurmdbd_conf(self) -> Path:
        return self.etc / "slurmdbd.conf"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def mysql(self) -> Path:
        """Owned by the mysql user: data folder, pid file and error log."""
        return self.root / "mysql"

    def make(self) -> None:
        self.root.chmod(0o755)  # the mysql user must be able to reach its folder
        for folder in (self.etc, self.state, self.spool, self.run, self.log, self.mysql):
            folder.mkdir(parents=True, exist_ok=True)
        chown(self.mysql, "mysql")


def render_slurm_conf(paths: ClusterPaths, memory_mb: int) -> str:
    settings = {
        "ClusterName": CLUSTER_NAME,
        "SlurmctldHost": "localhost",
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",
        "SchedulerType": "sched/backfill",
        "JobAcctGatherType": "jobacct_gather/linux",
        "AccountingStorageType": "accounting_storage/slurmdbd",
        "AccountingStorageHost": "localhost",
        "AccountingStoragePort": str(SLURMDBD_PORT),
        "SlurmctldPort": str(SLURMCTLD_PORT),
        "SlurmdPort": str(SLURMD_PORT),
        "MinJobAge": "600",  # keep finished jobs visible to squeue, too
        "ReturnToService": "2",
        "SlurmdParameters": "config_overrides",  # never drain the node over a hardware mismatch
        "MpiDefault": "none",
        "MailProg": "/bin/true",
        "KillWait": "5",
        "StateSaveLocation": str(paths.state),
        "SlurmdSpoolDir": str(paths.spool),
        "SlurmctldPidFile": str(paths.run / "slurmctld.pid"),
        "SlurmdPidFile": str(paths.run / "slurmd.pid"),
        "SlurmctldLogFile": str(paths.log / "slurmctld.log"),
        "SlurmdLogFile": str(paths.log / "slurmd.log"),
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines.append(
        f"NodeName={NODE_NAME} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={memory_mb} State=UNKNOWN"
    )
    lines.append(
        f"PartitionName={PARTITION} Nodes={NODE_NAME} Default=YES MaxTime=INFINITE State=UP "
        f"DefMemPerCPU={max(256, memory_mb // (2 * NODE_CPUS))}"
    )
    return "\n".join(lines) + "\n"


def render_slurmdbd_conf(paths: ClusterPaths, db_password: str, db_port: int) -> str:
    settings = {
        "AuthType": "auth/munge",
        "DbdHost": "localhost",
        "DbdPort": str(SLURMDBD_PORT),
        "SlurmUser": "root",
        "StorageType": "accounting_storage/mysql",
        "StorageHost": "localhost",  # libmariadb: "localhost" means the default unix socket
        "StoragePort": str(db_port),
        "StorageUser": "slurm",
        "StoragePass": db_password,
        "StorageLoc": "slurm_acct_db",
        "LogFile": str(paths.log / "slurmdbd.log"),
        "PidFile": str(paths.run / "slurmdbd.pid"),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


# --------------------------------------------------------------------------------------
# daemons


@dataclass
class Daemon:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it is still there after STOP_TIMEOUT_S."""
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def spawn(
    name: str,
    cmd: Sequence[str],
    log: Path,
    env: Mapping[str, str],
    user: str | None = None,
) -> Daemon:
    """Start a daemon in the foreground, in its own session, output appended to `log`."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            preexec_fn=_die_with_parent,
        )
    return Daemon(name, process, log)


@dataclass
class LocalSlurm:
    """A one-node SLURM cluster (munged, MariaDB, slurmdbd, slurmctld, slurmd) on this machine.

    Use as a context manager. Raises SlurmUnavailable when it cannot run here (callers skip),
    SlurmStartError when a daemon does not come up. Stops what it started on exit, also on
    failure, and restores /etc/slurm/slurm.conf.
    """

    allow_install: bool = field(default_factory=lambda: os.environ.get(NO_INSTALL_ENV, "") != "1")
    startup_timeout: float = 90.0
    lock_timeout: float = 600.0
    paths: ClusterPaths | None = field(default=None, init=False)
    daemons: list[Daemon] = field(default_factory=list, init=False)
    _lock: int | None = field(default=None, init=False)
    _conf_restore: Callable[[], None] | None = field(default=None, init=False)

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> LocalSlurm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start -------------------------------------------------------------------------

    def start(self) -> None:
        check_can_run(self.allow_install)
        self._acquire_lock()
        install_debian_packages()
        install_plugin()
        self._check_nothing_running()
        self.paths = ClusterPaths(Path(tempfile.mkdtemp(prefix="featdyn-slurm-")))
        self.paths.make()
        db_password, db_port = secrets.token_hex(12), free_port()
        self._write(self.paths.slurm_conf, render_slurm_conf(self.paths, node_memory_mb()), 0o644)
        self._write(self.paths.slurmdbd_conf, render_slurmdbd_conf(self.paths, db_password, db_port), 0o600)
        self._conf_restore = link_etc_slurm_conf(self.paths.slurm_conf)
        self._start_munge()
        self._start_mariadb(db_password, db_port)
        self._start_slurmdbd()
        self._start_slurmctld()
        self._start_slurmd()
        self._wait_until_ready()

    @property
    def env(self) -> dict[str, str]:
        """Environment for the daemons: SLURM_CONF also tells slurmdbd where slurmdbd.conf is."""
        assert self.paths is not None
        return {**os.environ, "SLURM_CONF": str(self.paths.slurm_conf)}

    def _acquire_lock(self) -> None:
        """One LocalSlurm per machine at a time (fixed ports, /etc/slurm, /run/mysqld)."""
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise SlurmUnavailable(f"another local SLURM cluster holds {LOCK_FILE}") from None
                time.sleep(1)

    def _check_nothing_running(self) -> None:
        for port in (SLURMCTLD_PORT, SLURMD_PORT, SLURMDBD_PORT):
            if port_in_use(port):
                raise SlurmUnavailable(f"port {port} is in use: another SLURM daemon runs here")
        if unix_socket_alive(MYSQL_SOCKET):
            raise SlurmUnavailable(f"a MariaDB/MySQL server already listens on {MYSQL_SOCKET}")

    @staticmethod
    def _write(path: Path, text: str, mode: int) -> None:
        path.write_text(text)
        path.chmod(mode)

    def _spawn(self, name: str, cmd: Sequence[str], user: str | None = None) -> Daemon:
        assert self.paths is not None
        daemon = spawn(name, cmd, self.paths.log / f"{name}.out", self.env, user)
        self.daemons.append(daemon)
        return daemon

    def _wait(self, daemon: Daemon, what: str, condition: Callable[[], bool], logs: Sequence[Path]) -> None:
        """Wait for `condition`; fail early, with the logs, if the daemon exits."""

        def ready() -> bool:
            if not daemon.alive():
                raise SlurmStartError(f"{daemon.name} exited with {daemon.process.returncode}")
            return condition()

        try:
            wait_for(what, ready, self.startup_timeout)
        except SlurmStartError as err:
            details = "\n".join(f"--- {log}:\n{tail(log)}" for log in (daemon.log, *logs))
            raise SlurmStartError(f"{err}\n{details}") from None

    def _start_munge(self) -> None:
        """munged as user munge; an already running munged is used, not restarted."""
        if unix_socket_alive(MUNGE_RUN_DIR / "munge.socket.2"):
            return
        MUNGE_RUN_DIR.mkdir(mode=0o755, exist_ok=True)
        chown(MUNGE_RUN_DIR, "munge")
        if not MUNGE_KEY.exists():
            run_command(["runuser", "-u", "munge", "--", "mungekey", "--create", "--keyfile", str(MUNGE_KEY)])
        daemon = self._spawn("munged", ["/usr/sbin/munged", "--foreground"], user="munge")
        self._wait(daemon, "munged", lambda: unix_socket_alive(MUNGE_RUN_DIR / "munge.socket.2"), [])

    def _start_mariadb(self, password: str, port: int) -> None:
        assert self.paths is not None
        datadir, error_log = self.paths.mysql / "data", self.paths.mysql / "error.log"
        install = ["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={datadir}"]
        run_command([*install, "--skip-test-db", "--auth-root-authentication-method=socket"], timeout=120)
        MYSQL_RUN_DIR.mkdir(mode=0o755, exist_ok=True)
        chown(MYSQL_RUN_DIR, "mysql")
        cmd = [
            "/usr/sbin/mariadbd", "--no-defaults", "--user=mysql", f"--datadir={datadir}",
            f"--socket={MYSQL_SOCKET}", "--bind-address=127.0.0.1", f"--port={port}",
            f"--pid-file={self.paths.mysql / 'mariadbd.pid'}", f"--log-error={error_log}",
            "--skip-log-bin", "--innodb-buffer-pool-size=64M",
        ]  # fmt: skip
        daemon = self._spawn("mariadbd", cmd)
        self._wait(daemon, "MariaDB", lambda: unix_socket_alive(MYSQL_SOCKET), [error_log])
        sql = (
            f"CREATE USER 'slurm'@'localhost' IDENTIFIED BY '{password}'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
        )
        run_command(["mariadb", "--no-defaults", f"--socket={MYSQL_SOCKET}", "-u", "root", "-e", sql])

    def _start_slurmdbd(self) -> None:
        assert self.paths is not None
        log = self.paths.log / "slurmdbd.log"
        daemon = self._spawn("slurmdbd", ["/usr/sbin/slurmdbd", "-D"])
        self._wait(daemon, "slurmdbd", lambda: port_in_use(SLURMDBD_PORT), [log])

    def _start_slurmctld(self) -> None:
        assert self.paths is not None
        log = self.paths.log / "slurmctld.log"
        daemon = self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i"])
        self._wait(daemon, "slurmctld", lambda: port_in_use(SLURMCTLD_PORT), [log])

    def _start_slurmd(self) -> None:
        assert self.paths is not None
        log = self.paths.log / "slurmd.log"
        daemon = self._spawn("slurmd", ["/usr/sbin/slurmd", "-D", "-N", NODE_NAME])
        self._wait(daemon, "slurmd", lambda: port_in_use(SLURMD_PORT), [log])

    def _wait_until_ready(self) -> None:
        assert self.paths is not None
        slurmd = next(d for d in self.daemons if d.name == "slurmd")
        logs = [self.paths.log / "slurmctld.log", self.paths.log / "slurmd.log"]
        self._wait(slurmd, f"node {NODE_NAME} idle in sinfo", self.node_idle, logs)
        self._wait(slurmd, f"cluster {CLUSTER_NAME} and account {ACCOUNT} in sacctmgr",
                   self.accounting_ready, [self.paths.log / "slurmdbd.log"])  # fmt: skip

    # -- queries -----------------------------------------------------------------------

    def node_idle(self) -> bool:
        result = run_command(["sinfo", "-h", "-N", "-n", NODE_NAME, "-o", "%T"], check=False)
        return result.returncode == 0 and result.stdout.strip() == "idle"

    def accounting_ready(self) -> bool:
        clusters = run_command(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"], check=False)
        accounts = run_command(
            ["sacctmgr", "-n", "-P", "-s", "list", "user", "root", "format=account"], check=False
        )
        return CLUSTER_NAME in clusters.stdout.split() and ACCOUNT in accounts.stdout.split()

    def job_ids(self) -> list[str]:
        result = run_command(["squeue", "-h", "-o", "%A"], check=False)
        return result.stdout.split() if result.returncode == 0 else []

    def log_tail(self, name: str, lines: int = 40) -> str:
        """Tail of a daemon log (slurmctld, slurmd, slurmdbd) for test failure messages."""
        assert self.paths is not None
        return tail(self.paths.log / f"{name}.log", lines)

    # -- stop --------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel jobs, stop every daemon this instance started (by PID, newest first),
        restore /etc/slurm/slurm.conf, remove the temporary folder. Safe to call twice."""
        try:
            if any(d.name == "slurmctld" and d.alive() for d in self.daemons):
                self._cancel_jobs()
        finally:
            for daemon in reversed(self.daemons):
                daemon.stop()
            self.daemons.clear()
            if self._conf_restore is not None:
                self._conf_restore()
                self._conf_restore = None
            if self.paths is not None and os.environ.get(KEEP_TMP_ENV, "") != "1":
                shutil.rmtree(self.paths.root, ignore_errors=True)
            self._release_lock()

    def _cancel_jobs(self) -> None:
        ids = self.job_ids()
        if ids:
            run_command(["scancel", *ids], check=False)
            with contextlib.suppress(SlurmStartError):
                wait_for("jobs to end", lambda: not self.job_ids(), STOP_TIMEOUT_S, interval=0.5)

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None


def link_etc_slurm_conf(target: Path) -> Callable[[], None]:
    """Point /etc/slurm/slurm.conf at `target`; return a function that restores it.

    An existing file or link is moved aside (slurm.conf.featdyn-backup) and moved back later.
    A backup left behind by a killed earlier run is restored first."""
    backup = ETC_SLURM_CONF.with_name(ETC_SLURM_CONF.name + CONF_BACKUP_SUFFIX)
    created_dir = not ETC_SLURM_CONF.parent.exists()
    ETC_SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(backup):
        if ETC_SLURM_CONF.is_symlink():
            ETC_SLURM_CONF.unlink()
        os.replace(backup, ETC_SLURM_CONF)
    had_conf = os.path.lexists(ETC_SLURM_CONF)
    if had_conf:
        os.replace(ETC_SLURM_CONF, backup)
    ETC_SLURM_CONF.symlink_to(target)

    def restore() -> None:
        if ETC_SLURM_CONF.is_symlink() and Path(os.readlink(ETC_SLURM_CONF)) == target:
            ETC_SLURM_CONF.unlink()
        if had_conf:
            os.replace(backup, ETC_SLURM_CONF)
        if created_dir:
            with contextlib.suppress(OSError):
                ETC_SLURM_CONF.parent.rmdir()

    return restore


# --------------------------------------------------------------------------------------
# running Snakemake


def cpu_only_overrides(profile: Path = SLURM_PROFILE) -> list[str]:
    """Command-line arguments that run the GPU rules on a CPU-only cluster.

    `--set-resources` on the command line replaces the profile's whole `set-resources`, so
    every entry of the profile is repeated with `gpu` set to 0 (the plugin then asks for
    --cpus-per-task instead of --gpus/--cpus-per-gpu), and the pipeline's GPU rules get gpu=0
    also where only their Snakefile asks for a GPU. `--max-threads` caps the threads of the
    profile's `set-threads` at the CPUs of the test node."""
    config = yaml.safe_load((profile / "config.yaml").read_text())
    resources = {rule: dict(res) for rule, res in (config.get("set-resources") or {}).items()}
    for rule in PIPELINE_GPU_RULES:
        resources.setdefault(rule, {})
    overrides = [
        f"{rule}:{name}={value}"
        for rule, res in resources.items()
        for name, value in {**res, "gpu": 0}.items()
    ]
    return ["--max-threads", str(NODE_CPUS), "--set-resources", *overrides]


def slurm_test_env() -> dict[str, str]:
    """The caller's environment plus the profile's account and partition variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env.update(FEATDYN_SLURM_ACCOUNT=ACCOUNT, FEATDYN_SLURM_PARTITION=PARTITION)
    return env


def run_snakemake(
    args: Sequence[str], workdir: Path, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m snakemake ARGS` in `workdir`, stdout and stderr together in `.stdout`.

    Runs in its own process group; past `timeout` seconds the whole group gets SIGKILL and
    SnakemakeTimeout is raised with the tail of the output."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    process = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise SnakemakeTimeout(
            f"snakemake killed after {timeout:.0f} s: {' '.join(cmd)}\n{output[-4000:]}"
        ) from None
    return subprocess.CompletedProcess(cmd, process.returncode, output, None)


FAST_STATUS_CHECKS = [
    "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
]  # fmt: skip
"""Job status queries every 2 s (the profile waits 10 s first): the test cluster's jobs take seconds."""


def run_snakemake_on_slurm(
    workdir: Path,
    snakefile: Path,
    extra_args: Sequence[str] = (),
    timeout: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    """Run `snakefile` in `workdir` on the running LocalSlurm with profiles/slurm.

    Test-cluster overrides: account `root` and partition `debug` through the profile's
    FEATDYN_SLURM_* variables, no GPUs (cpu_only_overrides), and `--workflow-profile none`
    so that a profiles/default/ next to the Snakefile is not mixed in. `extra_args` go last,
    e.g. targets or `--configfile configs/tiny.yaml`."""
    args = [
        "--snakefile", str(snakefile), "--directory", str(workdir),
        "--profile", str(SLURM_PROFILE), "--workflow-profile", "none",
        *cpu_only_overrides(), *FAST_STATUS_CHECKS, *extra_args,
    ]  # fmt: skip
    return run_snakemake(args, workdir, timeout, slurm_test_env())


def run_snakemake_locally(
    workdir: Path,
    snakefile: Path,
    extra_args: Sequence[str] = (),
    timeout: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    """The reference run: same Snakefile, local executor, one core, no profile."""
    args = [
        "--snakefile", str(snakefile), "--directory", str(workdir),
        "--cores", "1", "--workflow-profile", "none", *extra_args,
    ]  # fmt: skip
    return run_snakemake(args, workdir, timeout)
