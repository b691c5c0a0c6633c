"""Process groups (hsens_jax.engine.distributed) with local processes on the CPU (Gloo
collectives), each with one CPU device: a sweep of 2 processes equals one of 1, a process
killed mid-sweep stops the other and a relaunch on 1 process completes it, and bad launches
are refused with a message. Every subprocess has a timeout, so no failure can hang the suite."""

import glob
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hsens_jax.cli import main
from hsens_jax.engine import distributed
from hsens_jax.engine.distributed import LaunchError
from hsens_jax.results import load_results

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "_distributed_worker.py"
# One xdist worker for the whole file (addopts: --dist loadgroup): the 1-process reference sweep
# (a module fixture) is then computed once.
pytestmark = pytest.mark.xdist_group("distributed")
TIMEOUT = 150  # seconds for any subprocess: far above the seconds each takes

CONFIG = """
[data]
name = "digits"
n_train = 200
[budget]
steps = 6
[design]
kind = "sobol"
n = {n}
[sweep]
n_evals = 2
chunk_size = 2
[fixed]
width = 8
depth = 1
[space.learning_rate]
type = "float"
low = 0.001
high = 0.5
log = true
[space.optimizer]
type = "categorical"
choices = ["sgd", "adam"]
"""


def _config(tmp_path, name="sweep.toml", n=8):
    path = tmp_path / name
    path.write_text(CONFIG.format(n=n))
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    return env


def _launch(tmp_path, config, output, n_processes, *, worker_args=None, configs=None, init_timeout=60, only=None,
            cpu_devices=None):
    """Start the workers of a group of ``n_processes`` (those in ``only``, default all); returns
    their Popen objects (logs in tmp_path)."""
    port = _free_port()
    procs = []
    for i in (range(n_processes) if only is None else only):
        own = (worker_args or {}).get(i, [])
        cmd = [sys.executable, str(WORKER), *own, "--", "sweep", str((configs or {}).get(i, config)), "--output",
               str(output), "--no-progress", "--cpu-devices", str((cpu_devices or {}).get(i, 1)), "--coordinator", f"127.0.0.1:{port}",
               "--num-processes", str(n_processes), "--process-id", str(i), "--init-timeout", str(init_timeout)]
        log = open(tmp_path / f"{output.name}-p{i}.log", "w")
        procs.append(subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, text=True))
        log.close()
    return procs


def _finish(procs, tmp_path, output):
    """Exit statuses and logs of the group's processes (killed past TIMEOUT: a hang fails the test)."""
    deadline = time.monotonic() + TIMEOUT
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a process of the group still runs after {TIMEOUT} s:\n" + _logs(tmp_path, output, procs))
    return codes, [(tmp_path / f"{output.name}-p{i}.log").read_text() for i in range(len(procs))]


def _logs(tmp_path, output, procs):
    return "\n".join((tmp_path / f"{output.name}-p{i}.log").read_text()[-2000:] for i in range(len(procs)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep of one process (in this test process: one CPU device)."""
    tmp = tmp_path_factory.mktemp("reference")
    assert main(["sweep", str(_config(tmp)), "--output", str(tmp / "one"), "--no-progress", "--cpu-devices", "1"]) == 0
    return load_results(tmp / "one")


def _assert_same_runs(result, reference):
    for name, ref in reference.metrics.items():
        got = np.asarray(result.metrics[name])
        if name in ("group_wall_time",):
            continue
        assert got.shape == np.asarray(ref).shape, name
        # the same programs on other device counts: equal up to float32 reassociation
        np.testing.assert_allclose(got, np.asarray(ref), rtol=2e-5, atol=1e-6, equal_nan=True, err_msg=name)


def _chunk_run_ids(run_dir):
    return np.concatenate([np.load(f)["run_ids"] for f in sorted(glob.glob(str(run_dir / "chunks" / "*.npz")))])


def test_two_processes_give_the_sweep_of_one_and_distributed_hsic_equals_one_device(tmp_path, reference):
    config, output = _config(tmp_path), tmp_path / "two"
    estimators = tmp_path / "estimators.npz"
    procs = _launch(tmp_path, config, output, 2, worker_args={0: ["--estimators", str(estimators)],
                                                             1: ["--estimators", str(estimators)]})
    codes, logs = _finish(procs, tmp_path, output)
    assert codes == [0, 0], "\n".join(logs)
    assert "Best configurations" in logs[0] and "process 1 of 2: done (4 new chunk(s))" in logs[1]
    result = load_results(output)
    assert result.meta["processes"] == 2 and result.meta["device"].endswith("in 2 processes")
    _assert_same_runs(result, reference)
    ids = _chunk_run_ids(output)
    assert len(ids) == len(set(ids.tolist())) == 8  # process 0 alone wrote each chunk, once

    with np.load(estimators) as f:
        est = {k: f[k] for k in f.files}
    keys = [k.split(":", 1)[1] for k in est if k.startswith("one:")]
    assert {k.split("/")[0] for k in keys} == {"V_perm"}
    for k in keys:
        if k == "V_perm/pvalue":  # the same permutations: the same counts
            np.testing.assert_array_equal(est[f"group:{k}"], est[f"one:{k}"], err_msg=k)
        else:
            np.testing.assert_allclose(est[f"group:{k}"], est[f"one:{k}"], rtol=1e-9, atol=1e-13, err_msg=k)


def test_three_processes_of_two_devices_give_the_sweep_of_one(tmp_path, reference):
    """6 devices in 3 processes (each splits its CPU in two; the processes must have equal counts):
    chunks of 6 runs, the last one padded."""
    config, output = _config(tmp_path), tmp_path / "three"
    procs = _launch(tmp_path, config, output, 3, cpu_devices={0: 2, 1: 2, 2: 2})
    codes, logs = _finish(procs, tmp_path, output)
    assert codes == [0, 0, 0], "\n".join(logs)
    result = load_results(output)
    assert result.meta["processes"] == 3 and result.meta["device"].startswith("6 x cpu")
    _assert_same_runs(result, reference)
    ids = _chunk_run_ids(output)
    assert len(ids) == len(set(ids.tolist())) == 8


def test_a_killed_process_stops_the_group_and_one_process_resumes(tmp_path, reference, capsys):
    config, output = _config(tmp_path), tmp_path / "killed"
    t0 = time.monotonic()
    procs = _launch(tmp_path, config, output, 2, worker_args={1: ["--die-at-chunk", "2"]})
    codes, logs = _finish(procs, tmp_path, output)
    assert codes[1] == -9  # SIGKILL, as a crash
    assert codes[0] == 3, logs[0]
    assert "process 0 of 2 lost contact with another process while gathering chunk 2" in logs[0]
    assert "re-launch the same command to resume" in logs[0]
    assert time.monotonic() - t0 < TIMEOUT
    saved = _chunk_run_ids(output)
    assert len(saved) == 2  # chunk 1 only: the second was never gathered

    # the same command on another number of processes is refused without the flag...
    args = ["sweep", str(config), "--output", str(output), "--no-progress", "--cpu-devices", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "devices" in err and "--allow-device-change" in err
    # ...and with it completes the sweep: every run once, equal to the uninterrupted sweep
    assert main(args + ["--allow-device-change"]) == 0
    result = load_results(output)
    _assert_same_runs(result, reference)
    ids = _chunk_run_ids(output)
    design_ids = np.load(output / "configs.npz")["run_ids"].ravel()
    assert len(ids) == len(set(ids.tolist())) and sorted(ids.tolist()) == sorted(design_ids.tolist())
    assert set(saved.tolist()) <= set(ids.tolist())
    by_device = {e["device"]: e["runs"] for e in result.meta["chunk_devices"]}
    assert sorted(by_device.values()) == [2, 6] and any(d.endswith("in 2 processes") for d in by_device)


def test_mismatched_configurations_and_a_group_that_never_forms_end_with_messages(tmp_path):
    """Two processes with different designs are told what differs; process 0 of 2 alone stops
    after --init-timeout, saying what to check (both launched at once, to share the waiting)."""
    output, alone = tmp_path / "mismatch", tmp_path / "alone"
    configs = {0: _config(tmp_path, "a.toml", n=8), 1: _config(tmp_path, "b.toml", n=6)}
    group = _launch(tmp_path, configs[0], output, 2, configs=configs)
    lonely = _launch(tmp_path, configs[0], alone, 2, init_timeout=4, only=[0])

    codes, logs = _finish(group, tmp_path, output)
    assert codes == [2, 2], "\n".join(logs)
    for log in logs:
        assert "do not agree about the sweep" in log and "design: process(es) 1 differ from process 0" in log
    assert not (output / "chunks").exists() or not any((output / "chunks").iterdir())

    codes, logs = _finish(lonely, tmp_path, alone)
    assert codes == [distributed.EXIT_LAUNCH], logs[0]
    assert "the process group did not form within 4 s" in logs[0] and "all 2 processes were started" in logs[0]


def test_bad_launch_arguments_are_refused_before_anything_starts(capsys, monkeypatch):
    cfg = "unused.toml"
    assert main(["sweep", cfg, "--coordinator", "127.0.0.1:29500", "--num-processes", "2", "--process-id", "2"]) == 2
    assert "--process-id 2 is out of range for --num-processes 2: process ids are 0 .. 1" in capsys.readouterr().err
    with pytest.raises(LaunchError, match="--coordinator must be HOST:PORT"):
        distributed.initialize("host0", 2, 1)
    with pytest.raises(LaunchError, match="--num-processes must be an integer >= 1"):
        distributed.initialize("host0:1234", 0, 0)
    with pytest.raises(LaunchError, match="--process-id missing"):
        distributed.initialize("host0:1234", 2)
    port = _free_port()  # nobody serves it
    t0 = time.monotonic()
    with pytest.raises(LaunchError, match=f"the coordinator 127.0.0.1:{port} cannot be reached .* after 1.5 s"):
        distributed.initialize(f"127.0.0.1:{port}", 2, 1, initialization_timeout=1.5)
    assert time.monotonic() - t0 < 10
    with socket.socket() as busy:  # process 0 on a port another program listens on
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        with pytest.raises(LaunchError, match=f"port {busy.getsockname()[1]} is already in use"):
            distributed.initialize(f"127.0.0.1:{busy.getsockname()[1]}", 2, 0)
    monkeypatch.setattr(distributed, "detect_cluster", lambda: None)  # (should the tests run under SLURM)
    with pytest.raises(LaunchError, match="no cluster launcher detected"):
        distributed.initialize()
