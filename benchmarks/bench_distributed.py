"""Process groups (hsens_jax.engine.distributed): the demo's sweep and HSIC over 1, 2 and 4
local processes, one device each, and what coordination costs per chunk.

    python benchmarks/bench_distributed.py [--processes 1 2 4] [--configs 64] [--epochs 1]
        [--hsic-n 100000] [--hsic-d 2] [--tag cpu] [--out benchmarks/results]

For each process count P the script launches P fresh processes of itself (``--worker``) that
form a group with explicit flags on 127.0.0.1 (Gloo collectives on the CPU; one process per
GPU with ``--platform gpu``), as ``hsens sweep --coordinator ... --num-processes P
--process-id I`` would. Measured in every process and reported by process 0:

* the time to form the group (``distributed.initialize``);
* the sweep of the demo's search space (``hsens demo``'s space on digits; ``--configs``
  configurations, ``--epochs`` epochs, chunks of 16 runs) at fixed size over P (strong
  scaling) and at ``--configs`` per process (weak scaling): wall time, and per chunk the
  training time and the time of the gather (the collective that brings every process the
  chunk's results; it includes waiting for the slowest process);
* HSIC (V statistic, R2, Gamma p-values, float32) of n = ``--hsic-n`` runs and d inputs with
  ``devices="all"``: the first call of the fresh process (compilation included) and a warm call.

On a machine with fewer cores than processes the processes share the cores: what such a run
measures is the overhead (forming the group, agreement check, gathers), not a speed-up.
The projection for a large sweep on several hosts is computed from the measured per-chunk
costs and labelled as a projection.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHUNK = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- one process


def worker(spec: dict) -> None:
    import jax

    if spec["platform"] == "cpu":
        jax.config.update("jax_num_cpu_devices", 1)
    t0 = time.perf_counter()
    from hsens_jax.engine import distributed

    n_proc, pid = spec["processes"], spec["process_id"]
    if n_proc > 1:
        distributed.initialize(spec["coordinator"], n_proc, pid, initialization_timeout=120)
    t_init = time.perf_counter() - t0
    out = {"process_id": pid, "processes": n_proc, "init_s": t_init, "devices": len(jax.devices()),
           "configs": spec["configs"]}

    gathers: list[float] = []
    gather = distributed.gather

    def timed_gather(tree, what="", advice=""):
        t = time.perf_counter()
        r = gather(tree, what, advice)
        gathers.append(time.perf_counter() - t)
        return r

    distributed.gather = timed_gather
    if spec["configs"]:
        from hsens_jax.cli import DEMO_SPACE
        from hsens_jax.config import SweepConfig
        from hsens_jax.engine.sweep import run_sweep
        from hsens_jax.results import RunDirectory

        # one program (batch_size fixed), so that every chunk after the first measures training
        space = {k: v for k, v in DEMO_SPACE.items() if k != "batch_size"}
        config = SweepConfig.from_dict({
            "data": {"name": "digits"}, "budget": {"epochs": spec["epochs"]}, "fixed": {"batch_size": 128},
            "design": {"kind": "sobol", "n": spec["configs"], "seed": 0},
            "sweep": {"n_seeds": 1, "chunk_size": CHUNK, "output": spec["run_dir"]}, "space": space,
        }, source="bench_distributed")
        dataset, configs = config.load_data(), config.make_design()
        t = time.perf_counter()
        result = run_sweep(dataset, config.space, configs, model=config.make_model(), fixed=config.fixed,
                           seeds=config.seeds, chunk_size=CHUNK, n_evals=config.n_evals, run_dir=spec["run_dir"],
                           progress=False, overwrite=True)
        out["sweep_s"] = time.perf_counter() - t
        out["gather_s"] = gathers
        out["new_chunks"] = result.meta["new_chunks"]
        out["groups"] = len(result.meta["group_wall_times"])
        if distributed.is_leader():
            store = RunDirectory(spec["run_dir"])
            chunks = sorted(p.stem for p in (Path(spec["run_dir"]) / "chunks").glob("*.npz"))
            out["chunk_wall_s"] = [float(store.provenance(c)["wall_time"]) for c in chunks]
    if spec["hsic_n"]:
        import numpy as np

        from hsens_jax.sensitivity.hsic import hsic

        rng = np.random.default_rng(0)
        X = rng.uniform(size=(spec["hsic_n"], spec["hsic_d"])).astype(np.float32)
        Y = (np.sin(3 * X[:, 0]) + 0.3 * rng.normal(size=len(X))).astype(np.float32)
        distributed.barrier("hsic")
        for label in ("hsic_first_s", "hsic_warm_s")[:spec["hsic_calls"]]:
            t = time.perf_counter()
            r = hsic(X, Y, pvalue="gamma", devices="all")
            np.asarray(r.pvalue)
            out[label] = time.perf_counter() - t
        out["hsic_r2"] = np.asarray(r.r2).tolist()
    if distributed.is_leader():
        Path(spec["result"]).write_text(json.dumps(out))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # a group leaves at once (see hsens_jax.cli)


# ----------------------------------------------------------------------------- the driver


def launch(n_proc: int, spec: dict, tmp: Path, timeout: float) -> dict:
    port = _free_port()
    procs = []
    result = tmp / f"result-{spec['label']}-{n_proc}.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    for i in range(n_proc):
        s = dict(spec, processes=n_proc, process_id=i, coordinator=f"127.0.0.1:{port}", result=str(result),
                 run_dir=str(tmp / f"run-{spec['label']}-{n_proc}"))
        if spec["platform"] == "gpu":
            env_i = dict(env, CUDA_VISIBLE_DEVICES=str(i))
        else:
            env_i = dict(env, JAX_PLATFORMS="cpu")
        log = open(tmp / f"log-{spec['label']}-{n_proc}-p{i}.txt", "w")
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(s)], env=env_i,
                                      stdout=log, stderr=subprocess.STDOUT))
        log.close()
    for p in procs:
        try:
            p.wait(timeout=max(1, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise RuntimeError(f"{spec['label']} on {n_proc} processes did not finish in {timeout} s; logs in {tmp}")
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{spec['label']} on {n_proc} processes failed; logs in {tmp}")
    out = json.loads(result.read_text())
    out["launch_wall_s"] = wall
    return out


def agreement(tmp: Path) -> dict:
    """How the strong-scaling sweep of each process count differs from that of 1 process (the
    same configurations): the largest relative difference of the scalar metrics over all runs
    and over the runs that diverged in neither (diverged runs are chaotic: last-bit differences
    from another device count grow), and how many runs differ by more than 1e-4."""
    import numpy as np

    from hsens_jax.results import load_results

    ref_dir = tmp / "run-strong-1"
    if not (ref_dir / "meta.json").exists():
        return {}
    ref = load_results(ref_dir)
    out = {}
    for d in sorted(tmp.glob("run-strong-*")):
        n_proc = int(d.name.rsplit("-", 1)[1])
        if n_proc == 1 or not (d / "meta.json").exists():
            continue
        got = load_results(d)
        calm = ~(np.asarray(ref.metrics["diverged"]) | np.asarray(got.metrics["diverged"]))
        rel_all, rel_calm, differ = 0.0, 0.0, np.zeros(calm.shape, bool)
        for name, a in ref.metrics.items():
            a, b = np.asarray(a), np.asarray(got.metrics[name])
            if a.dtype.kind != "f" or a.shape != calm.shape:
                continue
            rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-6)
            rel = np.where(np.isnan(a) & np.isnan(b), 0.0, rel)
            differ |= ~(rel <= 1e-4)
            rel_all = max(rel_all, float(np.nanmax(rel)))
            if calm.any():
                rel_calm = max(rel_calm, float(np.nanmax(rel[calm])))
        out[n_proc] = {"max_rel_diff": rel_all, "max_rel_diff_not_diverged": rel_calm,
                       "runs_differing_1e-4": int(differ.sum()), "runs": int(differ.size),
                       "diverged_runs": int((~calm).sum())}
    return out


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--configs", type=int, default=64, help="configurations of the strong-scaling sweep")
    p.add_argument("--weak-configs", type=int, default=32, help="configurations per process (weak scaling)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--hsic-n", type=int, default=100_000)
    p.add_argument("--hsic-d", type=int, default=2)
    p.add_argument("--hsic-calls", type=int, default=2, choices=[1, 2],
                   help="1: the first call only (compilation included); 2: and a warm call")
    p.add_argument("--platform", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--skip", nargs="*", default=[], choices=["strong", "weak", "hsic"])
    p.add_argument("--timeout", type=float, default=1200)
    p.add_argument("--tag", default="cpu")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--agreement", metavar="TMPDIR", help="only add the agreement of the sweeps of an earlier run "
                   "(its temporary directory, printed at the start) to the results files")
    args = p.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    if args.agreement:
        path = Path(args.out) / f"distributed_{args.tag}.json"
        payload = json.loads(path.read_text())
        payload["agreement"] = agreement(Path(args.agreement))
        path.write_text(json.dumps(payload, indent=1))
        (Path(args.out) / f"distributed_{args.tag}.md").write_text(_markdown(payload))
        print(_markdown(payload))
        return

    import tempfile

    sys.path.insert(0, str(HERE))
    from machine import describe

    tmp = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    print(f"runs and logs in {tmp}", flush=True)
    machine = describe("jax", "jaxlib", "numpy")
    base = {"platform": args.platform, "epochs": args.epochs, "hsic_n": 0, "hsic_d": args.hsic_d,
            "hsic_calls": args.hsic_calls}
    rows = []
    for n_proc in args.processes:
        for label in ("strong", "weak", "hsic"):
            if label in args.skip:
                continue
            spec = dict(base, label=label,
                        configs={"strong": args.configs, "weak": args.weak_configs * n_proc, "hsic": 0}[label],
                        hsic_n=args.hsic_n if label == "hsic" else 0)
            load = os.getloadavg()[0]
            r = launch(n_proc, spec, tmp, args.timeout)
            r.update(label=label, load_before=load, load_after=os.getloadavg()[0])
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k not in ("gather_s", "chunk_wall_s")}), flush=True)
            _write(rows, machine, args, tmp)  # after every launch: an interrupted benchmark keeps what it measured
    print(_markdown(json.loads((Path(args.out) / f"distributed_{args.tag}.json").read_text())))


def _write(rows, machine, args, tmp) -> None:
    # per-chunk costs, from the strong-scaling runs
    per_chunk = {}
    for r in rows:
        if r["label"] in ("strong", "weak") and r.get("chunk_wall_s"):
            per_chunk.setdefault(r["processes"], {"train_s": [], "gather_s": []})
            g = r["gather_s"]
            walls = r["chunk_wall_s"]
            # the first chunk waits for the compilation: the steady state is the chunks after it
            per_chunk[r["processes"]]["gather_s"] += g[1:]
            per_chunk[r["processes"]]["train_s"] += [w - (g[i] if i < len(g) else 0.0)
                                                     for i, w in enumerate(walls)][1:]
    summary = {P: {"median_train_s": _median(v["train_s"]), "median_gather_s": _median(v["gather_s"]),
                   "chunks": len(v["train_s"])} for P, v in sorted(per_chunk.items())}
    projection = None
    multi = [P for P in summary if P > 1]
    if multi and 1 in summary:
        P = max(multi)
        gather = summary[P]["median_gather_s"]
        train_1 = summary[1]["median_train_s"]
        init = max(r["init_s"] for r in rows if r["processes"] == P)
        hosts, n_cfg = 8, 10_000
        chunks = -(-n_cfg // (CHUNK * hosts))  # chunks of CHUNK runs per host, 8 hosts: CHUNK*8 runs per chunk
        projection = {
            "label": "PROJECTION (not measured): 10^4 configurations of this sweep on 8 hosts, one such "
                     f"process per host, chunks of {CHUNK} runs per host",
            "assumes": f"a chunk trains in the measured 1-process time per {CHUNK} runs ({train_1:.3g} s) on every "
                       f"host (its program compiled once per host, beforehand or overlapped, not counted), and each chunk's gather costs the measured {P}-process gather ({gather:.3g} s; on a "
                       "network of hosts add the transfer of the chunk's results, a few kB per run)",
            "chunks": chunks, "train_s": chunks * train_1, "gather_s": chunks * gather, "init_s": init,
            "total_s": init + chunks * (train_1 + gather),
            "one_host_s": -(-n_cfg // CHUNK) * train_1,
        }
    payload = {"machine": machine, "args": vars(args), "runs": rows, "per_chunk": summary, "projection": projection,
               "agreement": agreement(tmp),
               "note": "local processes on one machine share its cores: the point is the overhead per chunk"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"distributed_{args.tag}.json").write_text(json.dumps(payload, indent=1))
    (out / f"distributed_{args.tag}.md").write_text(_markdown(payload))


def _markdown(payload: dict) -> str:
    m, a = payload["machine"], payload["args"]
    lines = [
        "# Process groups: the demo's sweep and HSIC over local processes", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; Python {m['python']}, jax {m['jax']}. "
        f"Load average (1 min) at start: {m['load_1min']:.1f} (shared machine: other sessions were running).", "",
        f"Each process has one {a['platform'].upper()} device; the processes form a group with explicit flags on "
        "127.0.0.1 (Gloo collectives on the CPU). **With more processes than cores the processes share the "
        "cores**: these runs measure what coordination costs (forming the group, the agreement check, one "
        "gather per chunk), not a speed-up; one host per process is where the speed-up comes from.", "",
        f"Sweep: `hsens demo`'s search space on digits with batch_size fixed at 128 (one program), "
        f"{a['epochs']:g} epoch(s), chunks of {CHUNK} runs (the demo: 256 configurations, 10 epochs, chunks of "
        "64: smaller here to fit the machine's time). "
        f"Strong scaling: {a['configs']} configurations whatever the processes; weak scaling: "
        f"{a['weak_configs']} per process. HSIC: n = {a['hsic_n']}, d = {a['hsic_d']}, V statistic, R2 and Gamma "
        "p-values, float32, `devices=\"all\"`. `python benchmarks/bench_distributed.py`.", "",
        "Chunk columns: the first chunk (its time includes waiting for the program's compilation), then the "
        "median over the chunks after it of the training time (the chunk's program, until its results are "
        "ready in this process) and of the gather (the collective that brings every process the whole chunk; it "
        "includes waiting for the slowest process). Times are process 0's.", "",
        "| run | processes | configs | group formed (s) | sweep (s) | chunks | first chunk (s) | median chunk "
        "train (s) | median gather (s) | HSIC first call (s) | HSIC warm (s) | whole launch (s) | load before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["runs"]:
        g = r.get("gather_s") or []
        walls = r.get("chunk_wall_s") or []
        train = [w - (g[i] if i < len(g) else 0) for i, w in enumerate(walls)][1:]
        first = walls[0] if walls else None
        g = g[1:]
        f = lambda v: "" if v is None else f"{v:.3g}"  # noqa: E731
        lines.append(f"| {r['label']} | {r['processes']} | {r.get('configs', '') or ''} | {f(r['init_s'])} | "
                     f"{f(r.get('sweep_s'))} | {len(walls) or ''} | {f(first)} | {f(_median(train)) if train else ''} | "
                     f"{f(_median(g)) if g else ''} | {f(r.get('hsic_first_s'))} | {f(r.get('hsic_warm_s'))} | "
                     f"{f(r['launch_wall_s'])} | {r['load_before']:.1f} / {r['load_after']:.1f} |")
    agree = payload.get("agreement") or {}
    if agree:
        lines += ["", "Agreement with 1 process (the strong-scaling sweeps, the same configurations, float32; largest "
                  "relative difference over the scalar metrics). Runs that diverged (loss blow-ups) are chaotic: the "
                  "last-bit differences of another device count grow in them, as documented in "
                  "hsens_jax/engine/devices.py.", ""]
        lines += [f"- {P} processes: runs that diverged in neither sweep {v['max_rel_diff_not_diverged']:.3g}; all runs "
                  f"{v['max_rel_diff']:.3g}; {v['runs_differing_1e-4']} of {v['runs']} runs differ by more than 1e-4 "
                  f"({v['diverged_runs']} runs diverged)" for P, v in sorted(agree.items())]
    pr = payload["projection"]
    if pr:
        lines += ["", f"## {pr['label']}", "", f"Assumes {pr['assumes']}.", "",
                  f"- chunks per host: {pr['chunks']}; training {pr['train_s']:.0f} s + gathers {pr['gather_s']:.0f} s "
                  f"+ forming the group {pr['init_s']:.1f} s = **{pr['total_s']:.0f} s** "
                  f"(one host alone: {pr['one_host_s']:.0f} s of training).",
                  f"- the gathers are {100 * pr['gather_s'] / max(pr['total_s'], 1e-9):.1f} % of the projected time."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
