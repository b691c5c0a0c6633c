"""What vectorization changes: configurations trained per minute, vectorized against one at a time.

Two workloads (the MNIST study's built-in MLP on image data, and the Runge study's user-written
per-layer MLP on 256 points, full batch) are trained twice by the same engine: all
configurations in one vectorized call per program (``chunk_size = K``: ``jit(vmap(train))``
over the configurations), and one configuration per call (``chunk_size = 1``: the same
compiled program in a loop; on several devices, one configuration per device). Each is timed
cold (the first call in the process: compilation included) and warm (three more calls of each
way, alternated, other training seeds, with the programs compiled; the median is reported). Writes ``OUT/throughput/summary.json`` and
``throughput.md``.

    python experiments/throughput.py [--quick] [--out DIR] [--data-dir DIR]

Quick mode: 32 configurations, the MLP on the bundled 8x8 digits for 5 epochs, the Runge network
for 300 steps. Full mode: 256 configurations, the MLP on a 10k-image MNIST subset for 2 epochs,
the Runge network for 2000 steps.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from common import _jsonable, arguments, load_images, machine, setup_devices
from mnist import mlp_space
from models import REGRESSION_DIRECTIONS, per_layer_mlp, regression_loss, regression_metrics
from runge import per_layer_space, runge_data

import hsens_jax as hs
from hsens_jax import design

SETTINGS = {
    "quick": dict(n_configs=32, mlp=dict(data="digits", epochs=5, max_width=128, max_depth=3),
                  runge=dict(steps=300, max_width=32, max_depth=3)),
    "full": dict(n_configs=256, mlp=dict(data="mnist", epochs=2, max_width=512, max_depth=3),
                 runge=dict(steps=2000, max_width=64, max_depth=4)),
}


REPEATS = 3
"""Warm calls per way, alternated; the median is reported."""


def timed(ds, space, configs, model, fixed, chunk_size, seed):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = hs.run_sweep(ds, space, configs, model=model, fixed=fixed, chunk_size=chunk_size, seeds=(seed,),
                         progress=False)
    return time.perf_counter() - t0, r


def workloads(st, args):
    """(label, description, dataset, space, model, fixed, objective) of each workload timed."""
    mlp = st["mlp"]
    if mlp["data"] == "digits":
        ds, note = hs.load_dataset("digits"), "scikit-learn's 8x8 digits"
    else:
        ds, note = load_images("mnist", n_train=10000, n_val=2000, n_test=2000, data_dir=args.data_dir, quick=False)
    space = mlp_space(mlp["max_width"], mlp["max_depth"], (128,))
    yield ("built-in MLP", f"the MNIST study's MLP space (width up to {mlp['max_width']}, depth up to "
           f"{mlp['max_depth']}), batch size 128, {mlp['epochs']} epochs on {note}", ds, space, "mlp",
           {"epochs": mlp["epochs"]}, "final_val_accuracy")
    r = st["runge"]
    ds = runge_data(320)
    space = hs.Space(per_layer_space(r["max_depth"], 4, r["max_width"]) + [
        hs.Float("learning_rate", 1e-4, 0.1, log=True), hs.Categorical("activation", ["tanh", "sin"])])
    model = per_layer_mlp(space, 1, 1, loss=regression_loss, metrics=regression_metrics,
                          directions=REGRESSION_DIRECTIONS)
    yield ("user-written per-layer MLP", f"the Runge study's network (widths up to {r['max_width']}, depth up to "
           f"{r['max_depth']}), Adam, full batch (256 points), {r['steps']} steps", ds, space, model,
           {"steps": r["steps"], "batch_size": 256, "optimizer": "adam"}, "final_val_mse")


def main(argv=None):
    args = arguments(__doc__.split("\n")[0], argv)
    st = SETTINGS[args.mode]
    device = setup_devices()
    k = st["n_configs"]
    results = []
    for label, description, ds, space, model, fixed, objective in workloads(st, args):
        configs = design.sample(space, k, kind="sobol", seed=0)
        ways = (("vectorized", k), ("one at a time", 1))
        rows = {}
        for how, chunk in ways:
            cold, r1 = timed(ds, space, configs, model, fixed, chunk, seed=0)
            rows[how] = {"chunk_size": chunk, "cold_s": cold, "cold_per_minute": k / cold * 60, "warm_all_s": [],
                         "objective_seed0": np.asarray(r1.metrics[objective], float)[:, 0].tolist()}
        for repeat in range(REPEATS):  # alternated, so that a change of the machine's load hits both
            for how, chunk in ways:
                rows[how]["warm_all_s"].append(timed(ds, space, configs, model, fixed, chunk, seed=1 + repeat)[0])
        for how, _ in ways:
            r = rows[how]
            r["warm_s"] = float(np.median(r["warm_all_s"]))
            r["warm_per_minute"] = k / r["warm_s"] * 60
            print(f"[throughput] {label}, {how}: cold {r['cold_s']:.1f} s, warm {r['warm_all_s']} s for {k} "
                  f"configurations", file=sys.stderr)
        a, b = (np.asarray(rows[h]["objective_seed0"]) for h in ("vectorized", "one at a time"))
        results.append({"workload": label, "description": description, "rows": rows,
                        "speedup_warm": rows["one at a time"]["warm_s"] / rows["vectorized"]["warm_s"],
                        "speedup_cold": rows["one at a time"]["cold_s"] / rows["vectorized"]["cold_s"],
                        "max_relative_difference": float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))})
    summary = {"mode": args.mode, "device": device, "machine": machine(), "n_configs": k, "workloads": results}
    out = Path(args.out) / "throughput"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1, allow_nan=False))
    (out / "throughput.md").write_text(markdown(summary))
    return summary


def markdown(s) -> str:
    load = s["machine"]["load_average"] or []
    lines = ["### Vectorized against one configuration at a time", "",
             f"*Mode: {s['mode']}, device: {s['device']}, load average at the end "
             f"{', '.join(f'{v:.1f}' for v in load)} (a shared machine).* The same {s['n_configs']} configurations "
             "trained by the same engine in one vectorized call per program (`chunk_size` = all of them: "
             "`jit(vmap(train))` over configurations) and one configuration per call (`chunk_size=1`: the same "
             "compiled program in a loop). Cold: the first call in the process, compilation included; warm: the "
             f"same configurations again (another training seed) with the programs compiled, {REPEATS} calls of "
             "each way alternated, median (and range).", "",
             "| workload | engine call | cold: s (configurations / min) | warm: s (configurations / min) | warm range (s) |",
             "|---|---|---|---|---|"]
    for w in s["workloads"]:
        for how, r in w["rows"].items():
            lines.append(f"| {w['workload']} | {how} | {r['cold_s']:.1f} ({r['cold_per_minute']:.0f}) | "
                         f"{r['warm_s']:.1f} ({r['warm_per_minute']:.0f}) | {min(r['warm_all_s']):.1f}-"
                         f"{max(r['warm_all_s']):.1f} |")
    lines.append("")
    for w in s["workloads"]:
        lines.append(f"- {w['workload']}: {w['description']}. Vectorized / one at a time: "
                     f"{w['speedup_warm']:.2f}x the throughput warm, {w['speedup_cold']:.2f}x cold; the two give "
                     f"objectives equal to a relative {w['max_relative_difference']:.1e} at most.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
