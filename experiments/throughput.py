"""What vectorization changes: configurations trained per minute, vectorized against one at a time.

The same configurations of the MNIST study's MLP space are trained twice by the same engine:
all in one vectorized call per program (``chunk_size = K``: ``jit(vmap(train))`` over the
configurations), and one configuration per call (``chunk_size = 1``: the same program over a
single configuration, i.e. a sequential loop of compiled trainings). Each is timed cold (the
first call in the process: compilation included) and warm (a second call with the programs
compiled). Writes ``OUT/throughput/summary.json`` and ``throughput.md``.

    python experiments/throughput.py [--quick] [--out DIR] [--data-dir DIR]

Quick mode: 32 configurations on the bundled 8x8 digits, 5 epochs. Full mode: 256 configurations
on a 10k-image MNIST subset, 2 epochs.
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

import hsens_jax as hs
from hsens_jax import design

SETTINGS = {
    "quick": dict(data="digits", n_configs=32, epochs=5, max_width=128, max_depth=3),
    "full": dict(data="mnist", n_configs=256, epochs=2, max_width=512, max_depth=3),
}


def timed(ds, space, configs, fixed, chunk_size, seed):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = hs.run_sweep(ds, space, configs, fixed=fixed, chunk_size=chunk_size, seeds=(seed,), progress=False)
    return time.perf_counter() - t0, r


def main(argv=None):
    args = arguments(__doc__.split("\n")[0], argv)
    st = SETTINGS[args.mode]
    device = setup_devices()
    if st["data"] == "digits":
        ds, note = hs.load_dataset("digits"), "scikit-learn's 8x8 digits"
    else:
        ds, note = load_images("mnist", n_train=10000, n_val=2000, n_test=2000, data_dir=args.data_dir, quick=False)
    space = mlp_space(st["max_width"], st["max_depth"], (128,))
    configs = design.sample(space, st["n_configs"], kind="sobol", seed=0)
    fixed = {"epochs": st["epochs"]}
    k = st["n_configs"]
    rows = {}
    for label, chunk in (("vectorized", k), ("one at a time", 1)):
        cold, r1 = timed(ds, space, configs, fixed, chunk, seed=0)
        warm, r2 = timed(ds, space, configs, fixed, chunk, seed=1)
        rows[label] = {"chunk_size": chunk, "cold_s": cold, "warm_s": warm, "cold_per_minute": k / cold * 60,
                       "warm_per_minute": k / warm * 60,
                       "val_accuracy_seed0": np.asarray(r1.metrics["final_val_accuracy"])[:, 0].tolist()}
        print(f"[throughput] {label}: cold {cold:.1f} s, warm {warm:.1f} s for {k} configurations", file=sys.stderr)
    same = np.allclose(rows["vectorized"]["val_accuracy_seed0"], rows["one at a time"]["val_accuracy_seed0"],
                       atol=0.02, equal_nan=True)
    summary = {"mode": args.mode, "device": device, "machine": machine(), "data": note, "n_configs": k,
               "epochs": st["epochs"], "rows": rows,
               "speedup_warm": rows["one at a time"]["warm_s"] / rows["vectorized"]["warm_s"],
               "speedup_cold": rows["one at a time"]["cold_s"] / rows["vectorized"]["cold_s"],
               "same_results": bool(same)}
    out = Path(args.out) / "throughput"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1, allow_nan=False))
    lines = ["### What the vectorized engine changed", "",
             f"*Mode: {args.mode}, device: {device}, load average at the end "
             f"{', '.join(f'{v:.1f}' for v in summary['machine']['load_average'] or [])}.* {k} configurations of the "
             f"MNIST study's MLP space (width up to {st['max_width']}, depth up to {st['max_depth']}, batch size 128) "
             f"on {note}, {st['epochs']} epochs each.", "",
             "| engine call | configurations per call | cold: s (configurations / min) | warm: s (configurations / min) |",
             "|---|---|---|---|"]
    for label, r in rows.items():
        lines.append(f"| {label} | {r['chunk_size']} | {r['cold_s']:.1f} ({r['cold_per_minute']:.0f}) | "
                     f"{r['warm_s']:.1f} ({r['warm_per_minute']:.0f}) |")
    lines += ["", f"Vectorized / one at a time: {summary['speedup_warm']:.1f}x faster warm, "
                  f"{summary['speedup_cold']:.1f}x cold (compilation included). Cold = first call in the process; "
                  "warm = the same configurations again (another seed) with the programs compiled. The two ways give "
                  + ("the same validation accuracies (within 0.02)." if same else
                     "validation accuracies that differ by more than 0.02 for some configuration."), ""]
    (out / "throughput.md").write_text("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
