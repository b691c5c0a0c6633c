"""Several processes, one computation: JAX's multi-controller SPMD across hosts (or GPUs).

A sweep (:func:`hsens_jax.run_sweep`) or an estimator (``hsic(..., devices="all")``,
``sobol_indices(..., devices="all")``) can run as N cooperating processes, one per host or
one per GPU. Every process runs the same Python program on the same inputs; JAX joins their
devices into one global set (``jax.devices()``), a :class:`jax.sharding.Mesh` over all of them
shards the work, and each process computes the shards of its own devices. There is no
scheduler: this is JAX's multi-controller model (``jax.distributed``).

:func:`initialize` forms the process group, before anything is computed:

* explicitly: ``initialize("host0:29500", num_processes=4, process_id=i)`` in process ``i``
  (``hsens sweep CONFIG --coordinator host0:29500 --num-processes 4 --process-id i``);
* or from the launcher's environment: under SLURM (``srun``), Open MPI (``mpirun``), and the
  other clusters JAX detects, ``initialize()`` without arguments (the ``hsens`` command line
  does this by itself when the launcher started more than one task).

Failures are stopped, never waited on forever:

* a bad launch is refused before anything starts, naming the culprit (a process id outside
  ``0..N-1``, a malformed ``HOST:PORT``, an unreachable coordinator: :class:`LaunchError`);
* a group that does not form within ``initialization_timeout`` seconds (a process missing,
  two processes with the same id, different ``--num-processes``) ends every waiting process
  with a message saying what to check, and exit status 2;
* processes that disagree about the computation (different configuration files, data,
  versions...) are told so by :func:`check_agreement`, which names what differs
  (:class:`ProcessMismatch`), on every process;
* a process that dies (or a host that is lost) is noticed by the others at their next
  collective operation (the connection is reset: :class:`ProcessGroupError`, at once) or by
  JAX's heartbeat after ``heartbeat_timeout`` seconds (JAX then ends the process with
  "Terminating process because the JAX distributed service detected fatal errors").

The CPU joins processes with JAX's Gloo collectives (``jax_cpu_collectives_implementation``),
so the whole machinery runs, and is tested, on one machine with local processes.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: Seconds every process waits for the others to join (:func:`initialize`).
DEFAULT_INIT_TIMEOUT = 120
#: Seconds without a heartbeat after which JAX declares a process dead.
DEFAULT_HEARTBEAT_TIMEOUT = 60
#: Exit status of a process ended because its group did not form.
EXIT_LAUNCH = 2
_MAX_COMPONENTS = 63


class LaunchError(ValueError):
    """The process group cannot be formed as asked (the message names the argument)."""


class ProcessMismatch(ValueError):
    """The processes of a group disagree about the computation; ``differences`` lists
    ``(component, [process ids that differ from process 0])``."""

    def __init__(self, message: str, differences: list[tuple[str, list[int]]]):
        super().__init__(message)
        self.differences = differences


class ProcessGroupError(RuntimeError):
    """A process of the group was lost (died, or its host did) during a collective operation."""


class ProcessZeroError(ValueError):
    """Process 0 failed at a step it takes for the group (e.g. opening the run directory)."""


@dataclass(frozen=True)
class ProcessGroup:
    """What :func:`initialize` formed.

    Attributes:
      process_id: this process's index, ``0 .. num_processes - 1``.
      num_processes: processes in the group (1: a single process, nothing distributed).
      coordinator: ``HOST:PORT`` of process 0's coordination service (None for one process).
      source: ``"explicit"``, the cluster JAX detected (``"slurm"``, ``"ompi"``, ...), or
        ``"single"``.
      local_devices: devices of this process.
      global_devices: devices of all processes together.
    """

    process_id: int
    num_processes: int
    coordinator: str | None
    source: str
    local_devices: int
    global_devices: int

    def describe(self) -> str:
        if self.num_processes == 1:
            return "1 process"
        return (f"process {self.process_id} of {self.num_processes} ({self.source}, coordinator "
                f"{self.coordinator}), {self.local_devices} of {self.global_devices} devices")


# ----------------------------------------------------------------------------- state


def process_count() -> int:
    """Processes in the group (1 when :func:`initialize` was not called)."""
    import jax

    return jax.process_count()


def process_index() -> int:
    """This process's index in the group (0 when single)."""
    import jax

    return jax.process_index()


def is_multiprocess() -> bool:
    """True when several processes share the computation."""
    return process_count() > 1


def is_leader() -> bool:
    """True in process 0, the one that writes files."""
    return process_index() == 0


def default_devices() -> list:
    """The devices a computation shards over by default: every device of every process
    (``jax.devices()``) in a process group, else this process's (``jax.local_devices()``)."""
    import jax

    return list(jax.devices()) if is_multiprocess() else list(jax.local_devices())


def describe_devices(devices: Sequence) -> str:
    """``"4 x cpu"``-style count and platform, with the processes they span when several."""
    n_proc = len({d.process_index for d in devices})
    return f"{len(devices)} x {devices[0].platform}" + (f" in {n_proc} processes" if n_proc > 1 else "")


def estimator_devices(devices):
    """The devices an estimator shards over (``devices=`` of ``hsic``, ``sobol_indices``...),
    or None for its single-device path.

    ``None``: None. ``"all"``: every device of every process (one device and one process:
    None). A sequence of devices: those (one device of this process: None).
    """
    import jax

    if devices is None:
        return None
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be None, 'all' or a sequence of JAX devices, got {devices!r}")
        chosen = default_devices()
    else:
        try:
            chosen = list(devices)
        except TypeError:
            raise TypeError(f"devices must be None, 'all' or a sequence of JAX devices, got "
                            f"{type(devices).__name__}") from None
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError("devices must be None, 'all' or a non-empty sequence of JAX devices (jax.devices())")
        if len(set(chosen)) != len(chosen):
            raise ValueError("devices lists a device twice")
    if not any(d.process_index == jax.process_index() for d in chosen):
        raise ValueError(f"devices: none of the {len(chosen)} devices belongs to this process "
                         f"(process {jax.process_index()}); each process computes on its own devices")
    if len(chosen) == 1:
        return None
    return chosen


# ----------------------------------------------------------------------------- forming the group


_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(?P<port>\d+)$")


def parse_address(address: str, what: str = "--coordinator") -> tuple[str, int]:
    """``(host, port)`` from ``"HOST:PORT"`` (IPv6 hosts in brackets); LaunchError naming ``what``."""
    m = _ADDRESS.match(str(address).strip()) if isinstance(address, str) else None
    if m is None or not 0 < int(m.group("port")) < 65536:
        raise LaunchError(f"{what} must be HOST:PORT (a port in 1..65535), got {address!r}")
    return m.group("host").strip("[]"), int(m.group("port"))


def _check_count(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise LaunchError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def detect_cluster() -> tuple[str, int] | None:
    """``(name, number of processes)`` of the cluster launcher JAX detects in the environment
    (SLURM, Open MPI, Kubernetes, Cloud TPU...), or None."""
    try:
        from jax._src import clusters
    except ImportError:  # pragma: no cover - JAX moved its cluster module
        return None
    for env in getattr(clusters.ClusterEnv, "_cluster_types", []):
        try:
            if getattr(env, "opt_in_only_method", False) or not env.is_env_present():
                continue
            return str(getattr(env, "name", env.__name__)), int(env.get_process_count())
        except Exception:  # noqa: BLE001 - a half-set environment is no cluster
            continue
    return None


def _probe(host: str, port: int, timeout: float) -> None:
    """Wait until ``host:port`` accepts TCP connections (process 0's coordination service)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, max(0.1, timeout))):
                return
        except OSError as e:
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    raise LaunchError(
        f"the coordinator {host}:{port} cannot be reached from this host ({socket.gethostname()}) after "
        f"{timeout:g} s ({type(last).__name__}: {last}): start process 0 (--process-id 0) on {host} with the same "
        f"--coordinator, check the host name and port, and that no firewall blocks the port")


def _check_bindable(port: int) -> None:
    """Process 0 serves the group on ``port``: refuse a port another program holds."""
    for family, addr in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            # as the coordination service binds: connections of an earlier group that linger in
            # TIME_WAIT do not hold the port, a program listening on it does
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            return
        except OSError as e:
            if e.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
                raise LaunchError(
                    f"--coordinator port {port} is already in use on this host: another program (or a "
                    f"process group still running) holds it; choose another port") from None
        finally:
            s.close()


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover
        return False


def _watchdog(done: threading.Event, timeout: float, message: str) -> threading.Thread:
    """End this process with ``message`` if the group has not formed after ``timeout`` s.

    JAX's own timeout aborts the process with a message that blames "another task" (even
    when the cause is a missing or duplicated process id), so this one fires first."""
    def watch():
        if not done.wait(timeout):
            sys.stdout.flush()
            sys.stderr.write(f"hsens: error: {message}\n")
            sys.stderr.flush()
            os._exit(EXIT_LAUNCH)

    t = threading.Thread(target=watch, name="hsens-group-watchdog", daemon=True)
    t.start()
    return t


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, local_device_ids: Sequence[int] | None = None,
               initialization_timeout: float = DEFAULT_INIT_TIMEOUT,
               heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT) -> ProcessGroup:
    """Join this process to its group (``jax.distributed.initialize``), before any computation.

    With ``coordinator``, ``num_processes`` and ``process_id`` all given, the group is formed
    from them; with none, from the launcher's environment (SLURM, Open MPI and the other
    clusters JAX detects), which also gives each process its own GPU (``SLURM_LOCALID``...).
    ``num_processes=1`` forms no group. The CPU uses Gloo collectives.

    Args:
      coordinator: ``"HOST:PORT"`` where process 0 serves the group (a free port on process
        0's host, reachable from every host).
      num_processes: N >= 1 processes in the group.
      process_id: this process's index, ``0 .. N - 1``, distinct in every process.
      local_device_ids: this process's GPUs (default: the launcher's choice, else all).
      initialization_timeout: seconds to wait for every process to join. Past it, every
        waiting process ends (status :data:`EXIT_LAUNCH`) with a message saying what to check.
      heartbeat_timeout: seconds without a heartbeat after which JAX declares a process dead
        and ends the others (a lost host; a process that dies is usually noticed at once, at
        the next collective operation: :class:`ProcessGroupError`).

    In a group, an exception nothing catches ends its process at once, after its traceback
    (``sys.excepthook``): the other processes then stop at their next collective operation
    instead of waiting for it.

    Returns:
      The :class:`ProcessGroup`.

    Raises:
      LaunchError: a missing or malformed argument (named), a process id outside
        ``0 .. N - 1``, an unreachable coordinator (for processes other than 0: probed for
        ``initialization_timeout`` seconds), the coordinator's port already in use (process
        0), no cluster environment to detect, JAX already computing (too late to join a
        group), or processes with different numbers of devices.
    """
    import jax

    explicit = (coordinator, num_processes, process_id)
    given = [v is not None for v in explicit]
    timeout = float(initialization_timeout)
    if not timeout > 0:
        raise LaunchError(f"the initialization timeout must be > 0 seconds, got {initialization_timeout!r}")
    heartbeat = int(heartbeat_timeout)
    if heartbeat < 1:
        raise LaunchError(f"the heartbeat timeout must be >= 1 second, got {heartbeat_timeout!r}")
    source = "explicit"
    if any(given) and not all(given):
        missing = [flag for flag, g in zip(("--coordinator", "--num-processes", "--process-id"), given) if not g]
        raise LaunchError(f"a process group needs --coordinator, --num-processes and --process-id together: "
                          f"{', '.join(missing)} missing")
    if all(given):
        num_processes = _check_count(num_processes, "--num-processes", 1)
        process_id = _check_count(process_id, "--process-id", 0)
        if process_id >= num_processes:
            raise LaunchError(f"--process-id {process_id} is out of range for --num-processes {num_processes}: "
                              f"process ids are 0 .. {num_processes - 1}")
        host, port = parse_address(coordinator)
    else:
        found = detect_cluster()
        if found is None:
            raise LaunchError("no cluster launcher detected in the environment (JAX knows SLURM, Open MPI, "
                              "mpi4py, Kubernetes and Cloud TPU): pass --coordinator HOST:PORT --num-processes N "
                              "--process-id I")
        source = found[0]
        try:
            from jax._src import clusters

            coordinator, num_processes, process_id, detected_ids = \
                clusters.ClusterEnv.auto_detect_unset_distributed_params(None, None, None, local_device_ids, None,
                                                                        int(timeout))
        except Exception as e:  # noqa: BLE001 - reported with the launcher's name
            raise LaunchError(f"the {source} environment does not describe a process group ({e}): pass "
                              "--coordinator HOST:PORT --num-processes N --process-id I") from None
        if local_device_ids is None:
            local_device_ids = detected_ids
        host, port = parse_address(coordinator, f"the coordinator address from {source}")
    if jax.distributed.is_initialized():
        current = (jax.process_count(), jax.process_index())
        if current != (num_processes, process_id):
            raise LaunchError(f"this process already belongs to a group of {current[0]} processes as process "
                              f"{current[1]}; it cannot join another")
        return _group(coordinator, source)
    if num_processes == 1:
        return _group(None, "single")
    if process_id == 0:
        _check_bindable(port)
    else:
        _probe(host, port, timeout)
    if _backends_initialized():
        raise LaunchError("JAX has already computed in this process, so it can no longer join a process group: "
                          "call hsens_jax.engine.distributed.initialize() before any JAX computation")
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):  # pragma: no cover - a JAX without the option
        pass
    done = threading.Event()
    _watchdog(done, timeout, (
        f"the process group did not form within {timeout:g} s: this is process {process_id} of {num_processes} "
        f"at coordinator {host}:{port}. Check that all {num_processes} processes were started, with the same "
        f"--coordinator and --num-processes and distinct --process-id values 0..{num_processes - 1}, and that "
        f"{host}:{port} is reachable from every host"))
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, local_device_ids=local_device_ids,
                                   initialization_timeout=int(timeout) + 30, heartbeat_timeout_seconds=heartbeat,
                                   cluster_detection_method="deactivate")
        group = _group(coordinator, source)  # the devices: JAX exchanges every process's topology here
    finally:
        done.set()
    _exit_on_uncaught_exception()
    return group


def _exit_on_uncaught_exception() -> None:
    """An uncaught exception ends the process at once (after its traceback): the others then
    see it leave and stop, instead of waiting for it at JAX's shutdown barrier."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    sys.excepthook = hook


def _group(coordinator, source) -> ProcessGroup:
    import jax

    devices = jax.devices()
    per_process: dict[int, int] = {}
    for d in devices:
        per_process[d.process_index] = per_process.get(d.process_index, 0) + 1
    if len(set(per_process.values())) > 1:
        counts = ", ".join(f"process {p}: {c}" for p, c in sorted(per_process.items()))
        raise LaunchError(f"the processes have different numbers of devices ({counts}): give every process the "
                          "same (--cpu-devices N on CPUs, the same number of GPUs per process)")
    return ProcessGroup(jax.process_index(), jax.process_count(), coordinator if jax.process_count() > 1 else None,
                        source if jax.process_count() > 1 else "single", jax.local_device_count(), len(devices))


# ----------------------------------------------------------------------------- collectives


_LOST = re.compile(r"gloo|connection reset|connection closed|socket closed|broken pipe|unavailable|"
                   r"deadline exceeded|heartbeat|coordination service|task .* (failed|died)|peer", re.I)


def _is_lost_peer(error: BaseException) -> bool:
    return isinstance(error, (RuntimeError, ValueError, OSError)) and bool(_LOST.search(str(error)))


class collective:  # noqa: N801 - used as a context manager, named for what it guards
    """``with collective("gathering chunk 3"):`` translates the error of a collective
    operation that lost a process into :class:`ProcessGroupError`, saying what to do."""

    def __init__(self, what: str, advice: str = ""):
        self.what, self.advice = what, advice

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if error is not None and is_multiprocess() and not isinstance(error, ProcessGroupError) \
                and _is_lost_peer(error):
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ProcessGroupError(
                f"process {process_index()} of {process_count()} lost contact with another process while "
                f"{self.what}: a process died or its host was lost ({first[:300]})."
                + (f" {self.advice}" if self.advice else "")) from error
        return False


def gather(tree: Any, what: str = "gathering results", advice: str = "") -> Any:
    """Every leaf of ``tree`` (arrays sharded over the global mesh, or NumPy arrays that are
    the same in every process) as a NumPy array holding the whole array, in every process.

    One program gathers all leaves (one collective step), rather than one per leaf.
    """
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    if not is_multiprocess():
        return jax.tree_util.tree_unflatten(treedef, [np.asarray(a) for a in leaves])
    sharded = [i for i, a in enumerate(leaves) if isinstance(a, jax.Array) and not a.is_fully_addressable]
    out = [None if i in sharded else np.asarray(a) for i, a in enumerate(leaves)]
    if sharded:
        arrays = [leaves[i] for i in sharded]
        targets = tuple(_replicated(a.sharding) for a in arrays)
        with collective(what, advice):
            full = _identity_to(targets)(*arrays)
            for i, a in zip(sharded, full):
                out[i] = np.asarray(a.addressable_data(0))
    return jax.tree_util.tree_unflatten(treedef, out)


def _replicated(sharding):
    from jax.sharding import NamedSharding, PartitionSpec

    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec())
    from jax._src import sharding_impls  # pragma: no cover - the sweep and estimators use NamedSharding

    return sharding_impls.GSPMDSharding.get_replicated(sharding._device_assignment)


_IDENTITIES: dict = {}


def _identity_to(targets):
    import jax

    fn = _IDENTITIES.get(targets)
    if fn is None:
        fn = _IDENTITIES[targets] = jax.jit(lambda *a: a, out_shardings=targets)
    return fn


def broadcast(tree: Any, what: str = "sharing process 0's data", advice: str = "") -> Any:
    """``tree`` of process 0 (NumPy arrays; the same shapes and dtypes in every process) in
    every process."""
    import jax
    from jax.experimental import multihost_utils

    if not is_multiprocess():
        return jax.tree.map(np.asarray, tree)
    with collective(what, advice):
        return multihost_utils.broadcast_one_to_all(tree)


def barrier(name: str, advice: str = "") -> None:
    """Wait until every process reaches ``barrier(name)``."""
    from jax.experimental import multihost_utils

    if is_multiprocess():
        with collective(f"waiting at {name!r}", advice):
            multihost_utils.sync_global_devices(name)


def put(tree, sharding):
    """``tree``'s arrays (NumPy arrays, or JAX arrays of this process; the same in every
    process) placed with ``sharding``: each process puts only its own devices' shards. PRNG
    key arrays keep their key type."""
    import jax

    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda a: _put_one(a, sharding), tree)


def _put_one(array, sharding):
    import jax

    if isinstance(array, jax.Array) and jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(array)
        data = np.asarray(jax.random.key_data(array))
        return jax.random.wrap_key_data(_from_host(data, sharding), impl=impl)
    return _from_host(np.asarray(array), sharding)


def _from_host(host: np.ndarray, sharding):
    import jax

    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


# ----------------------------------------------------------------------------- agreement


def _hash_words(value: Any) -> np.ndarray:
    from hsens_jax.results import fingerprint

    h = int(fingerprint(value), 16)
    return np.array([h >> 32, h & 0xFFFFFFFF], np.uint32)


def check_agreement(what: str, components: Mapping[str, Any]) -> None:
    """Raise :class:`ProcessMismatch` in every process unless all processes pass equal
    ``components`` (JSON-able values or NumPy arrays, compared by fingerprint).

    Every process must call it at the same point. The message names each component that
    differs and the processes that differ from process 0 in it.
    """
    if not is_multiprocess():
        return
    names = sorted(components)
    if len(names) > _MAX_COMPONENTS:
        raise ValueError(f"check_agreement: at most {_MAX_COMPONENTS} components, got {len(names)}")
    table = np.zeros((_MAX_COMPONENTS + 1, 2), np.uint32)
    table[0] = _hash_words(names)
    for i, name in enumerate(names):
        table[i + 1] = _hash_words(components[name])
    from jax.experimental import multihost_utils

    with collective(f"comparing the {what} of the processes"):
        everyone = np.asarray(multihost_utils.process_allgather(table))  # (processes, C, 2)
    if (everyone == everyone[0]).all():
        return
    if not (everyone[:, 0] == everyone[0, 0]).all():
        others = [p for p in range(process_count()) if (everyone[p, 0] != everyone[0, 0]).any()]
        raise ProcessMismatch(
            f"the processes do not run the same {what}: process(es) {others} describe it with other components "
            "than process 0 (different hsens_jax versions?); install the same version everywhere",
            [("components", others)])
    differences = []
    for i, name in enumerate(names):
        others = [p for p in range(process_count()) if (everyone[p, i + 1] != everyone[0, i + 1]).any()]
        if others:
            differences.append((name, others))
    lines = "\n".join(f"  - {name}: process(es) {', '.join(map(str, ps))} differ from process 0"
                      for name, ps in differences)
    raise ProcessMismatch(
        f"the {process_count()} processes do not agree about the {what} (this is process {process_index()}):\n"
        f"{lines}\nEvery process must run the same command with the same configuration file, data and package "
        "versions", differences)


def on_leader(fn: Callable[[], Any], what: str, *, share: bool = False) -> Any:
    """Run ``fn`` in process 0 only and share its outcome, so that no process waits for a
    step that will never come: if it raised, every process raises (process 0 its own
    exception, the others :class:`ProcessZeroError` with its message). Every process must
    call it at the same point.

    Returns:
      ``fn()`` in process 0; elsewhere None, or (``share=True``) process 0's result, which
      must then be a JSON value.
    """
    if not is_multiprocess():
        return fn()
    import json

    result, error = None, None
    if is_leader():
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - shared, then re-raised
            error = e
    if error is not None:
        text = f"{type(error).__name__}: {error}"
    else:
        text = json.dumps(result) if share else ""
    payload = np.frombuffer(text.encode(), np.uint8)
    header = broadcast(np.array([error is not None, len(payload)], np.int32), f"waiting for process 0 to {what}")
    failed, size = int(header[0]), int(header[1])
    body = np.zeros(size, np.uint8) if not is_leader() else payload
    if size:
        body = np.asarray(broadcast(body, f"waiting for process 0 to {what}"))
    if error is not None:
        raise error
    text = bytes(body).decode(errors="replace")
    if failed:
        raise ProcessZeroError(f"process 0 could not {what}: {text}")
    if share and not is_leader():
        return json.loads(text)
    return result
