"""What each piece of a sweep's training program costs XLA to compile, on this machine.

The program measured is the one the classic ``GridSearchCV`` grid compiles for its largest
architecture (``hidden_layer_sizes=(100, 50)``, activation relu/tanh, solver adam/sgd,
scikit-learn's stopping rule, 3 folds; 6 runs per call as on a CPU), built with the engine's
own functions, then compiled whole (``train_batch``) and piece by piece: the initial carry
(parameter initialization and the initial evaluation), one vectorized loop step, its training
step alone (forward, backward, optimizer, guard), the final evaluation and metrics, and one
evaluation. Variants: one optimizer instead of two, one activation instead of two, and XLA's
CPU option ``xla_cpu_use_fusion_emitters=False`` (passed as a compiler option). Every
compilation is a fresh one (JAX's persistent cache off); times are XLA's (``compile()``), and
tracing plus lowering beside them. Best of ``--repeats``.

Usage: python benchmarks/bench_compile_programs.py [--repeats 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("HSENS_EXECUTABLE_CACHE", "off")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from machine import describe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build(acts, sols):
    from sklearn.datasets import make_classification
    from sklearn.neural_network import MLPClassifier

    from hsens_jax.data import Dataset
    from hsens_jax.engine import hyperparameters as hpm
    from hsens_jax.engine.sweep import plan_sweep
    from hsens_jax.engine.train import prepare_data
    from hsens_jax.search.sklearn import _IGNORED, _space_and_configs, _stopping, engine_values

    X, y = make_classification(n_samples=1000, random_state=42)
    ds = Dataset.from_arrays(X[:-1], y[:-1], x_val=X[-1:], y_val=y[-1:], task="classification", name="grid")
    base = MLPClassifier(max_iter=300, random_state=42).get_params()
    recs = []
    for act in acts:
        for sol in sols:
            for lr in (1e-3, 1e-2, 1e-1):
                p = {**base, "hidden_layer_sizes": (100, 50), "activation": act, "solver": sol, "learning_rate_init": lr}
                for n in _IGNORED:
                    p.pop(n)
                recs.append(engine_values(p, 666, "classification", 1))
    space, configs, fixed = _space_and_configs(recs)
    stop = _stopping({**base, "hidden_layer_sizes": (100, 50)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_sweep(ds, space, configs, fixed=fixed, cv=3, n_evals=1, patience=stop.patience("classification"))
    spec = plan.groups[0].spec
    data = prepare_data(ds, 512, plan.dtype, plan.folds)
    runs = 6
    hp = hpm.encode(plan.resolved, np.arange(runs) // 3 % len(recs), spec.model, plan.resolved.choices, plan.dtype)
    keys = jax.vmap(jax.random.key)(jnp.arange(runs))
    fold = jnp.arange(runs) % 3
    return spec, data, hp, keys, fold


def pieces(spec, data, hp, keys, fold):
    from hsens_jax.engine.train import (_final_evaluation, batch_indices, evaluate, finalize, init_carry, step,
                                        train_batch, train_step)

    init = jax.vmap(lambda a, b, c: init_carry(spec, data, a, b, c))
    carry = jax.eval_shape(init, hp, keys, fold)
    n = keys.shape[0]

    def one_train_step(h, c, t):
        def one(a, b):
            _, bi, dk = batch_indices(spec, b.keys, b.perm, t, data=data, fold=b.fold)
            return train_step(spec, data, a, b.state, bi, dk, t)
        return jax.vmap(one)(h, c)

    return {
        "train_batch (the whole program)": (lambda h, k, f: train_batch(spec, data, h, k, f), (hp, keys, fold)),
        "initial carry": (init, (hp, keys, fold)),
        "one loop step": (lambda h, c, t: jax.vmap(lambda a, b: step(spec, data, a, b, t))(h, c),
                          (hp, carry, jnp.int32(0))),
        "its training step": (one_train_step, (hp, carry, jnp.int32(0))),
        "final evaluation and metrics": (lambda h, c, e: jax.vmap(lambda a, b, t: finalize(
            spec, _final_evaluation(spec, data, a, b, t), data, a))(h, c, e), (hp, carry, jnp.zeros(n, jnp.int32))),
        "one evaluation": (lambda h, c: jax.vmap(lambda a, b: evaluate(spec, data, a, b.state, b.fold))(h, c),
                           (hp, carry)),
    }


def timed(fn, args, options, repeats):
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        low = jax.jit(lambda *a: fn(*a)).lower(*args)  # a new function: nothing reused
        t1 = time.perf_counter()
        low.compile(compiler_options=options) if options else low.compile()
        t2 = time.perf_counter()
        best = (t1 - t0, t2 - t1) if best is None or t2 - t1 < best[1] else best
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", default=None, help="result file suffix (default: cpu or gpu, from JAX's devices)")
    args = p.parse_args()
    tag = args.tag or ("cpu" if jax.devices()[0].platform == "cpu" else "gpu")
    import hsens_jax as hs

    hs.disable_compilation_cache()
    variants = {
        "default (2 optimizers, 2 activations)": (("relu", "tanh"), ("adam", "sgd"), None),
        "one optimizer (adam)": (("relu", "tanh"), ("adam",), None),
        "one activation (relu)": (("relu",), ("adam", "sgd"), None),
        "xla_cpu_use_fusion_emitters=False": (("relu", "tanh"), ("adam", "sgd"), {"xla_cpu_use_fusion_emitters": False}),
    }
    rows = []
    for vname, (acts, sols, options) in variants.items():
        progs = pieces(*build(acts, sols))
        for pname, (fn, fargs) in progs.items():
            if vname != next(iter(variants)) and not pname.startswith(("train_batch", "its training")):
                continue
            tl, c = timed(fn, fargs, options, args.repeats)
            rows.append({"variant": vname, "program": pname, "trace_lower_s": tl, "compile_s": c})
            print(f"{vname:40s} {pname:32s} trace+lower {tl:.2f} s  compile {c:.2f} s", flush=True)
    doc = {"benchmark": "XLA compile time of a training program and its pieces", "machine": describe("jax"),
           "device": jax.devices()[0].device_kind,
           "repeats": args.repeats, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"compile_programs_{tag}.json").write_text(json.dumps(doc, indent=2))
    m = doc["machine"]
    lines = [f"# What a training program costs to compile ({tag}, {jax.devices()[0].device_kind})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, load {m['load_1min']:.1f}; JAX's persistent cache off; best of "
             f"{args.repeats}. The classic grid's (100, 50) program, 6 runs x 3 folds' data "
             "(`python benchmarks/bench_compile_programs.py`).", "",
             "| variant | program | tracing + lowering (s) | XLA compile (s) |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['variant']} | {r['program']} | {r['trace_lower_s']:.2f} | {r['compile_s']:.2f} |" for r in rows]
    (out / f"compile_programs_{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
