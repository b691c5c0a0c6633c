"""Cost of one hypergradient relative to one training run, per mode, for T = 100, 1000, 10000.

Run: ``python benchmarks/bench_hypergrad.py [--steps 100 1000 10000] [--repeats 9]``.

Problem: the engine's MLP (1 hidden layer of 32 units, relu) on the scikit-learn digits
(1438 training images, minibatches of 64), Adam with L2 weight decay, float32, one CPU
process. Hyperparameters differentiated: learning rate and weight decay (h = 2); the
implicit mode only handles weight decay (h = 1).

Columns: the compiled program's run time (fastest of ``repeats`` round-robin runs after one warm-up call,
and the median over rounds of its ratio to the training run of the same round;
compile time reported separately) divided by the run time of one training run (the
engine's ``train``, which also records 20 validation points), and the peak temporary
memory XLA allocates for the program (``compiled.memory_analysis().temp_size_in_bytes``).
Finite differences: ``2h + 1`` runs of the training objective, measured.

Targets (from the task): reverse with checkpointing <= 3x a training run; forward <=
1 + 0.5 h (2x at h = 2; a row with h = 1, the learning rate alone, shows the scaling).

Devices: like the CLI, the process makes one JAX CPU device per core
(:func:`hsens_jax.use_cpu_cores`). Every program runs on one device, except the row
"forward, tangents split over D devices" (``hypergradient``'s default when several
devices exist): each device trains the configuration and carries h / D of the tangents.

Adjoints: reverse modes use ``adjoint="symmetric"`` (the default: a step's adjoint is a
Hessian-vector product, :mod:`hsens_jax.hypergrad.adjoint`); the rows "autodiff adjoint"
run JAX's own transpose of the step in the same process, for comparison.

Adam's derivative: the engine's Adam is :mod:`hsens_jax.engine.adam` (optax's values, its own
derivative rule); the rows "optax's Adam derivative" trace the same program with
``optax.adam`` in its place, in the same process, for comparison.

Writes ``benchmarks/results/hypergrad_cpu.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from pathlib import Path

from hsens_jax.engine.devices import use_cpu_cores

use_cpu_cores()  # one JAX device per core, as the CLI does (before JAX starts its backend)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from hsens_jax.data import load_dataset  # noqa: E402
from hsens_jax.hypergrad.core import _one, _one_sharded  # noqa: E402
from hsens_jax.hypergrad.unrolled import final_state, objective_value, segment_for  # noqa: E402
from hsens_jax.engine.builtin import sized_model  # noqa: E402
from hsens_jax.engine.train import TrainSpec, hp_from_values, prepare_data, train  # noqa: E402

WRT = ("learning_rate", "weight_decay")
VALUES = {"learning_rate": 1e-3, "weight_decay": 1e-4, "optimizer": "adam"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    import flax
    import optax

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "numpy": np.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "device": str(jax.devices()[0]),
        "n_devices": len(jax.devices()),
        "dtype": "float32",
    }


@contextlib.contextmanager
def optax_adam_derivative():
    """Trace with ``optax.adam`` / ``optax.adamw`` in place of :mod:`hsens_jax.engine.adam`'s.

    The tracing caches are cleared on entry and exit, so that neither the jitted inner
    functions traced before nor those traced inside are reused by the other variant
    (compiled programs already held stay valid).
    """
    import optax

    import hsens_jax.engine.optimizers as optimizers

    saved = optimizers.adam, optimizers.adamw
    jax.clear_caches()
    optimizers.adam, optimizers.adamw = optax.adam, optax.adamw
    try:
        yield
    finally:
        optimizers.adam, optimizers.adamw = saved
        jax.clear_caches()


def compile_program(fn, args):
    """(compiled, compile seconds, XLA temp bytes) of jitted ``fn`` at ``args``, warmed up once."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    t_compile = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp = int(getattr(mem, "temp_size_in_bytes", -1)) if mem is not None else -1
    jax.block_until_ready(compiled(*args))  # warm-up
    return compiled, t_compile, temp


def bench_T(T, data, n_train, repeats):
    """Compile every program, then time them round-robin ``repeats`` times; keep each one's fastest run.

    Round-robin: on a shared machine a burst of interference hits every program alike
    instead of one of them; the minimum discards it.
    """
    spec = TrainSpec(sized_model("mlp", 32, 1, 10, (8, 8, 1)), "classification", batch_size=64, n_steps=T,
                     n_train=n_train, optimizers=("adam",), n_evals=20)
    hp = hp_from_values(VALUES, spec)
    key = jax.random.PRNGKey(0)
    h = len(WRT)
    k = max(1, T // 10)
    seg = segment_for(spec, data, hp, key)  # the default of mode='checkpointed'
    seg_ad = segment_for(spec, data, hp, key, "autodiff")
    programs = []  # (row, callable running it once)

    train_fn = jax.jit(lambda hp, key: train(spec, data, hp, key)["final_val_loss"])
    compiled, c, m = compile_program(train_fn, (hp, key))
    programs.append((dict(mode="training run (engine train)", h=0, compile_s=c, temp_bytes=m),
                     lambda compiled=compiled: compiled(hp, key)))
    obj_fn = jax.jit(lambda hp, key: objective_value(spec, data, hp, final_state(spec, data, hp, key)))
    compiled_obj, c, m = compile_program(obj_fn, (hp, key))
    programs.append((dict(mode="objective only (final_state + evaluate)", h=0, compile_s=c, temp_bytes=m),
                     lambda: compiled_obj(hp, key)))
    # finite differences: 2h + 1 objective evaluations, measured
    pts = [hp] + [{**hp, n: hp[n] * (1 + s * 1e-2)} for n in WRT for s in (1, -1)]
    programs.append((dict(mode=f"finite differences (2h+1 = {2 * h + 1} runs)", h=h, compile_s=0.0, temp_bytes=m),
                     lambda: [jax.block_until_ready(compiled_obj(p, key)) for p in pts]))

    configs = [
        ("reverse", dict(mode="reverse", checkpoint_every=None, truncate=None), WRT),
        ("reverse, autodiff adjoint", dict(mode="reverse", checkpoint_every=None, truncate=None,
                                           adjoint="autodiff"), WRT),
        (f"checkpointed (segment {seg})", dict(mode="checkpointed", checkpoint_every=seg, truncate=None), WRT),
        (f"checkpointed, autodiff adjoint (segment {seg_ad})",
         dict(mode="checkpointed", checkpoint_every=seg_ad, truncate=None, adjoint="autodiff"), WRT),
        ("forward", dict(mode="forward", checkpoint_every=None, truncate=None), WRT),
        ("forward (learning rate only)", dict(mode="forward", checkpoint_every=None, truncate=None), WRT[:1]),
        (f"truncated (last k = {k} steps)", dict(mode="truncated", checkpoint_every=None, truncate=k), WRT),
        ("implicit (CG, 50 iterations max)", dict(mode="implicit", checkpoint_every=None, truncate=None,
                                                  solver_options=(("maxiter", 50), ("tol", 1e-6))),
         ("weight_decay",)),
        (f"checkpointed (segment {seg}), optax's Adam derivative",
         dict(mode="checkpointed", checkpoint_every=seg, truncate=None, optax_adam=True), WRT),
        ("forward, optax's Adam derivative", dict(mode="forward", checkpoint_every=None, truncate=None,
                                                  optax_adam=True), WRT),
        ("forward (learning rate only), optax's Adam derivative",
         dict(mode="forward", checkpoint_every=None, truncate=None, optax_adam=True), WRT[:1]),
    ]
    devices = tuple(jax.local_devices()[:h])
    if len(devices) > 1:  # the tangents split over the devices (hypergradient's default with several)
        configs.insert(5, (f"forward, tangents split over {len(devices)} devices",
                           dict(mode="forward", checkpoint_every=None, truncate=None, devices=devices), WRT))
    failed = []
    for name, kw, wrt in configs:
        kw = {"objective": "final_val_loss", "solver_options": (), **kw}
        variant = optax_adam_derivative() if kw.pop("optax_adam", False) else contextlib.nullcontext()
        one = _one_sharded if "devices" in kw else _one
        fn = jax.jit(lambda hp, key, kw=kw, wrt=wrt, one=one: one(spec, data, hp, key, wrt=wrt, **kw))
        try:
            with variant:
                compiled, c, m = compile_program(fn, (hp, key))
        except Exception as e:  # e.g. out of memory for plain reverse at long horizons
            failed.append(dict(mode=name, h=len(wrt), error=f"{type(e).__name__}: {e}"[:300]))
            continue
        out = compiled(hp, key)
        g = {n: float(v) for n, v in out[1].items()}
        programs.append((dict(mode=name, h=len(wrt), compile_s=c, temp_bytes=m, grad=g, value=float(out[0]),
                              finite=bool(np.all(np.isfinite(list(g.values()))))),
                         lambda compiled=compiled: compiled(hp, key)))

    times = [[] for _ in programs]
    for _ in range(repeats):
        for i, (_, run) in enumerate(programs):
            t0 = time.perf_counter()
            jax.block_until_ready(run())
            times[i].append(time.perf_counter() - t0)
    rows = []
    for (row, _), ts in zip(programs, times):
        row["run_s"] = min(ts)
        row["run_s_all"] = ts
        rows.append(row)
    t_train, t_obj = rows[0]["run_s"], rows[1]["run_s"]
    for r in rows:
        r["time_ratio"] = r["run_s"] / t_train
        r["time_ratio_objective"] = r["run_s"] / t_obj
        # paired: this program's time over the training run's time in the same round
        r["time_ratio_median_paired"] = float(np.median(np.asarray(r["run_s_all"]) / np.asarray(rows[0]["run_s_all"])))
    return rows + failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "hypergrad_cpu"))
    args = ap.parse_args()
    ds = load_dataset("digits")
    data = prepare_data(ds)
    info = machine()
    t_start = time.perf_counter()
    results = {}
    for T in args.steps:
        repeats = args.repeats if T <= 1000 else max(3, (2 * args.repeats) // 3)
        rows = bench_T(T, data, ds.n_train, repeats)
        results[str(T)] = rows
        print(f"\nT = {T} steps (one training run: {rows[0]['run_s'] * 1e3:.1f} ms)")
        print(f"{'mode':44s} {'h':>2s} {'time/train':>10s} {'median':>7s} {'time/obj':>9s} {'run ms':>10s} "
              f"{'compile s':>9s} {'temp MiB':>9s}")
        for r in rows:
            if "error" in r:
                print(f"{r['mode']:44s} {r['h']:2d}  failed: {r['error'][:60]}")
                continue
            print(f"{r['mode']:44s} {r['h']:2d} {r['time_ratio']:10.2f} {r['time_ratio_median_paired']:7.2f} "
                  f"{r['time_ratio_objective']:9.2f} "
                  f"{r['run_s'] * 1e3:10.1f} "
                  f"{r['compile_s']:9.1f} {r['temp_bytes'] / 2**20:9.2f}")
    total = time.perf_counter() - t_start
    info["load_average_at_end"] = list(os.getloadavg())
    info["total_seconds"] = total
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "hypergradient cost relative to one training run", "machine": info,
               "problem": {"data": "digits (1438 train, 359 val)", "model": "MLP 64-32-10 relu",
                           "optimizer": "adam + L2 weight decay", "batch_size": 64, "values": VALUES,
                           "wrt": list(WRT)},
               "results": results}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    lines = ["# Hypergradient cost relative to one training run (CPU)", "",
             f"Machine: {info['cpu']}, {info['cores']} cores, load average at start "
             f"{info['load_average_at_start'][0]:.1f} (shared machine: absolute times are noisy, ratios less so); "
             f"jax {info['jax']}, numpy {info['numpy']}, flax {info['flax']}, optax {info['optax']}, float32.", "",
             "Problem: digits, MLP 64-32-10 (relu), Adam + L2 weight decay, minibatches of 64; "
             "h = 2 hyperparameters (learning rate, weight decay), implicit: h = 1 (weight decay).", "",
             "`time/train`: run time of the compiled program / run time of one `train` (fastest of repeats, compile "
             "excluded; `train` also runs 20 validation passes); `median`: the median over the rounds of the same ratio "
             "within one round (a robustness check on a noisy machine). `time/objective`: the same over one run of the "
             "objective actually differentiated (the engine's step without the recorded curves and without the divergence "
             "freeze, + one validation). Reverse modes use the symmetric adjoint by default (a step's adjoint is a "
             "Hessian-vector product; it stores the step's inputs and minibatch gradient); the \"autodiff adjoint\" rows "
             "use JAX's transpose of the step (it stores every intermediate). Checkpointed: the default segment "
             "(`segment_for`: whole epochs, about a third of the memory-optimal segment). Adam is `hsens_jax.engine.adam` (optax's "
             "values with its own derivative rule); the \"optax's Adam derivative\" rows trace the same program with "
             "`optax.adam`, in the same process. `temp MiB`: XLA's peak temporary buffer (`memory_analysis().temp_size_in_bytes`).", "",
             f"Devices: {info['n_devices']} JAX CPU devices (one per core, as the CLI makes). Every program runs on one "
             "device, except \"forward, tangents split over D devices\" (`hypergradient`'s default with several devices): "
             "each device trains the configuration and carries h / D of the tangents; its time is wall time, its temp "
             "memory per device.", "",
             "Targets: checkpointed <= 3x, forward <= 1 + 0.5 h (2x at h = 2, 1.5x at h = 1).", ""]
    for T, rows in results.items():
        lines += [f"## T = {T} steps", "",
                  "| mode | h | time / train | median | time / objective | run ms | compile s | temp MiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['mode']} | {r['h']} | failed: {r['error'][:80]} | | | | | |")
            else:
                lines.append(f"| {r['mode']} | {r['h']} | {r['time_ratio']:.2f} | {r['time_ratio_median_paired']:.2f} | "
                             f"{r['time_ratio_objective']:.2f} | "
                             f"{r['run_s'] * 1e3:.1f} | "
                             f"{r['compile_s']:.1f} | {r['temp_bytes'] / 2**20:.2f} |")
        lines.append("")
    lines.append(f"Total benchmark time: {total:.0f} s.")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {out.with_suffix('.json')} and .md ({total:.0f} s)")


if __name__ == "__main__":
    main()
