"""Vectorized sweep vs scikit-learn GridSearchCV, side by side in one process.

The grid of the classic scikit-learn example: hidden_layer_sizes in {(50,), (100,), (50,50),
(100,50)}, activation in {relu, tanh}, solver in {adam, sgd}, learning_rate_init in
{1e-3, 1e-2, 1e-1}, 3-fold stratified cross-validation, MLPClassifier(max_iter=300,
random_state=42) on make_classification(n_samples=1000, random_state=42).

hsens_jax trains the same 48 configurations x 3 folds = 144 networks with ``jax.vmap`` over
folds of ``jax.vmap`` over configurations of ``hsens_jax.engine.train.train``: by default one program
per hidden_layer_sizes (exactly sized; activation and solver vary inside by selection),
the four compiled and run concurrently (``--group-by ''`` for one masked program). It mirrors MLPClassifier's settings: batch 200, 300 epochs,
adam (b1 0.9, b2 0.999, eps 1e-8) or sgd with Nesterov momentum 0.9 and a constant rate,
L2 penalty alpha=1e-4 (as weight decay alpha / batch). Differences, stated: no early
stopping (sklearn stops when the training loss stalls for 10 epochs; we train all 300
epochs), the incomplete last batch of an epoch is dropped, and the folds are equalized to
666 training examples (the one extra example of two folds is dropped; validation folds are
padded with zero-weight rows).

A floor, timed in the same run: hand-written minimal JAX programs of the same shapes and
steps (``run_floor``: relu and Adam only, no shuffling, no guard), i.e. the least any vmapped
JAX program of this grid costs here, compilation included.

Second part: one vmapped sweep vs a Python loop of the same jitted single-configuration
training, for K = 1, 8, 64, 512 configurations (digits, MLP).

Usage: python benchmarks/bench_sweep.py [--quick] [--skip-sklearn] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hsens_jax.data import Dataset, load_dataset
from hsens_jax.engine.builtin import sized_model
from hsens_jax.engine.train import TrainData, TrainSpec, hp_from_values, prepare_data, train

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

GRID = {
    "hidden_layer_sizes": [(50,), (100,), (50, 50), (100, 50)],
    "activation": ["relu", "tanh"],
    "solver": ["adam", "sgd"],
    "learning_rate_init": [1e-3, 1e-2, 1e-1],
}


def machine() -> dict:
    """:func:`machine.describe` plus the JAX devices."""
    out = describe("jax", "flax", "optax", "numpy", "sklearn")
    out.update(jax_devices=[str(d) for d in jax.devices()], device_kind=jax.devices()[0].device_kind)
    return out


def run_sklearn(X, y, folds):
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    import warnings
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    search = GridSearchCV(MLPClassifier(max_iter=300, random_state=42), GRID, cv=folds, n_jobs=-1)
    t0 = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - t0, float(search.best_score_), search.best_params_, search.cv_results_


def _fold_data(X, y, folds):
    """The folds as one TrainData with a leading fold axis (equal sizes, see the module doc)."""
    n_train = min(len(tr) for tr, _ in folds)
    n_val = max(len(va) for _, va in folds)
    datasets = []
    for tr, va in folds:
        tr = tr[:n_train]
        ds = Dataset(name="make_classification", task="classification", x_train=X[tr].astype(np.float32),
                     y_train=y[tr].astype(np.int32), x_val=X[va].astype(np.float32), y_val=y[va].astype(np.int32),
                     n_classes=2)
        d = prepare_data(ds, eval_batch_size=n_val)
        pad = n_val - d.x_val.shape[0]
        if pad:
            d = TrainData(d.x_train, d.y_train, jnp.pad(d.x_val, ((0, pad), (0, 0))), jnp.pad(d.y_val, (0, pad)),
                          jnp.pad(d.val_weight, (0, pad)))
        datasets.append(d)
    return jax.tree.map(lambda *a: jnp.stack(a), *datasets), n_train, n_val


def run_hsens(X, y, folds, epochs=300, batch=200, seed=42, group_by=()):
    """Train the grid on every fold; one compiled program per value of the ``group_by`` grid keys.

    Programs are compiled concurrently, then run concurrently (one thread each: XLA releases
    the GIL, so the cores share the work). Compiling each program and training it at once on
    its own thread measured no faster here (25.2 s against 24.3 s): the two cores are busy
    either way. Inside a program, the configurations differ by masking and selection as in
    any sweep. Returns the wall time, the compilation phase's wall time, the best mean
    accuracy and its configuration, all means, the diverged count and the rate of the
    training arithmetic during the run phase (GFLOP/s).
    """
    from concurrent.futures import ThreadPoolExecutor

    t_start = time.perf_counter()
    configs = list(itertools.product(*GRID.values()))
    data, n_train, n_val = _fold_data(X, y, folds)
    keys = list(GRID)
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(tuple(c[keys.index(k)] for k in group_by), []).append(i)

    def build(members):
        sub = [configs[i] for i in members]
        arch = [c[0] for c in sub]
        depth = max(len(a) for a in arch)
        # one depth in the program: build each layer at its own largest size (exact (100, 50))
        layer_widths = tuple(max(a[l] for a in arch) for l in range(depth)) if all(len(a) == depth for a in arch) else ()
        model = sized_model("mlp", max(max(a) for a in arch), depth, 2, (X.shape[1],),
                          activations=tuple(a for a in ("relu", "tanh") if a in {c[1] for c in sub}),
                          layer_widths=layer_widths)
        opts = tuple(o for o in ("nesterov", "adam") if o in {"adam" if c[2] == "adam" else "nesterov" for c in sub})
        spec = TrainSpec(model, "classification", batch_size=batch, n_steps=epochs * (n_train // batch),
                         n_train=n_train, optimizers=opts, n_evals=10, eval_batch_size=n_val)
        values = {
            "hidden_layer_sizes": np.array([",".join(map(str, c[0])) for c in sub], dtype=object),
            "activation": np.array([c[1] for c in sub]),
            "optimizer": np.array(["adam" if c[2] == "adam" else "nesterov" for c in sub]),
            "learning_rate": np.array([c[3] for c in sub]),
        }
        fixed = {"momentum": 0.9, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4 / batch}
        hp = hp_from_values({**values, **{k: np.full(len(sub), v) for k, v in fixed.items()}}, spec)
        per_config = jax.vmap(lambda d, h: train(spec, d, h, jax.random.key(seed)), in_axes=(None, 0))
        fn = jax.jit(jax.vmap(per_config, in_axes=(0, None)))  # folds x configs
        t0 = time.perf_counter()
        compiled = fn.lower(data, hp).compile()
        built = np.array(layer_widths or (model.max_width,) * depth, float)
        # training arithmetic the program executes: forward + backward ~ 3 forward passes
        flops = 3 * float(model.flops_per_example(built, depth)) * batch * spec.n_steps * len(sub) * len(folds)
        return compiled, hp, time.perf_counter() - t0, flops

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        t0 = time.perf_counter()
        built = list(pool.map(build, groups.values()))
        t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        outs = list(pool.map(lambda b: jax.block_until_ready(b[0](data, b[1])), built))
        t_run = time.perf_counter() - t0
    acc = np.zeros((len(folds), len(configs)))
    n_div = 0
    for members, out in zip(groups.values(), outs):
        acc[:, members] = np.asarray(out["final_val_accuracy"])
        n_div += int(np.asarray(out["diverged"]).sum())
    total = time.perf_counter() - t_start
    mean = acc.mean(0)
    best = int(np.argmax(mean))
    flops = sum(b[3] for b in built)
    return total, t_compile, float(mean[best]), dict(zip(GRID, configs[best])), mean, n_div, flops / t_run / 1e9


def run_floor(X, y, folds, epochs=300, batch=200, seed=42):
    """A floor for any vmapped JAX program of this grid: hand-written, minimal, same shapes.

    Per hidden_layer_sizes, one jitted program of plain ``jnp`` dense layers trains the
    group's 12 networks on each of the 3 folds (vmap over folds of vmap over learning
    rates): the same layer shapes, batch, step count and number of networks as
    :func:`run_hsens`, but with relu and Adam only (no selection between activations or
    optimizers), the batches in a fixed order (no shuffling), no divergence guard and one
    validation at the end. It is what the engine's programs cost at least, not a way to
    run the grid. Programs are compiled then run concurrently, as in :func:`run_hsens`.
    Returns the wall time and the compilation phase's wall time (seconds).
    """
    import optax
    from concurrent.futures import ThreadPoolExecutor

    t_start = time.perf_counter()
    data, n_train, _ = _fold_data(X, y, folds)
    steps, spe = epochs * (n_train // batch), n_train // batch
    per_group = len(GRID["activation"]) * len(GRID["solver"])
    lrs = jnp.asarray(np.tile(GRID["learning_rate_init"], per_group), jnp.float32)

    def program(sizes):
        widths = (X.shape[1], *sizes, 2)

        def fit(d, lr):
            keys = jax.random.split(jax.random.key(seed), len(widths) - 1)
            params = [(jax.random.normal(k, (a, b)) / np.sqrt(a), jnp.zeros(b))
                      for k, a, b in zip(keys, widths[:-1], widths[1:])]

            def forward(p, x):
                for i, (w, b) in enumerate(p):
                    x = x @ w + b
                    x = jax.nn.relu(x) if i < len(p) - 1 else x
                return x

            def loss(p, x, yb):
                return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), yb).mean()

            opt = optax.adam(lr)

            def step(carry, t):
                p, s = carry
                x = jax.lax.dynamic_slice_in_dim(d.x_train, (t % spe) * batch, batch)
                yb = jax.lax.dynamic_slice_in_dim(d.y_train, (t % spe) * batch, batch)
                u, s = opt.update(jax.grad(loss)(p, x, yb), s, p)
                return (optax.apply_updates(p, u), s), None

            (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
            hit = (jnp.argmax(forward(params, d.x_val), -1) == d.y_val) * d.val_weight
            return hit.sum() / d.val_weight.sum()

        return jax.jit(jax.vmap(jax.vmap(fit, in_axes=(None, 0)), in_axes=(0, None))).lower(data, lrs).compile()

    with ThreadPoolExecutor(max_workers=len(GRID["hidden_layer_sizes"])) as pool:
        t0 = time.perf_counter()
        built = list(pool.map(program, GRID["hidden_layer_sizes"]))
        t_compile = time.perf_counter() - t0
        list(pool.map(lambda compiled: jax.block_until_ready(compiled(data, lrs)), built))
    return time.perf_counter() - t_start, t_compile


def matmul_rate(batch=36, n=200, k=100, m=50, reps=300):
    """GFLOP/s of a bare chain of batched float32 matrix products shaped like the grid's
    layers (one program, this machine): the ceiling the training's arithmetic could reach."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, n, k)), jnp.float32) * 0.01
    w1 = jnp.asarray(rng.normal(size=(batch, k, m)), jnp.float32) * 0.01
    w2 = jnp.asarray(rng.normal(size=(batch, m, k)), jnp.float32) * 0.01

    @jax.jit
    def chain(x):
        body = lambda h, _: (jnp.einsum("bnm,bmk->bnk", jnp.einsum("bnk,bkm->bnm", h, w1), w2) + h, None)
        return jax.lax.scan(body, x, None, length=reps)[0]

    from concurrent.futures import ThreadPoolExecutor

    jax.block_until_ready(chain(x))
    cores = os.cpu_count() or 1
    with ThreadPoolExecutor(cores) as pool:  # one chain per core, as the grid's programs run
        best = min(_timed(lambda: list(pool.map(lambda _: jax.block_until_ready(chain(x + 0)), range(cores))))
                   for _ in range(3))
    return 4 * batch * n * k * m * reps * cores / best / 1e9


def _timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def vmap_vs_loop(ks, steps):
    ds = load_dataset("digits")
    data = prepare_data(ds)
    model = sized_model("mlp", 64, 2, 10, tuple(ds.input_shape))
    spec = TrainSpec(model, "classification", batch_size=64, n_steps=steps, n_train=ds.n_train,
                     optimizers=("adam",), n_evals=5)
    rng = np.random.default_rng(0)
    single = jax.jit(lambda h, k: train(spec, data, h, k))
    batched = jax.jit(jax.vmap(lambda h, k: train(spec, data, h, k)))
    rows = []
    kmax = max(ks)
    lrs = 10 ** rng.uniform(-4, -1, kmax)
    widths = rng.integers(8, 65, kmax).astype(float)
    hp_all = hp_from_values({"learning_rate": lrs, "width": widths}, spec)
    one = jax.tree.map(lambda a: a[0], hp_all)
    jax.block_until_ready(single(one, jax.random.key(0)))  # compile once, outside the timing
    for k in ks:
        hp = jax.tree.map(lambda a: a[:k], hp_all)
        keys = jax.vmap(jax.random.key)(jnp.arange(k))
        t0 = time.perf_counter()
        for i in range(k):
            jax.block_until_ready(single(jax.tree.map(lambda a: a[i], hp), keys[i]))
        t_loop = time.perf_counter() - t0
        jax.block_until_ready(batched(hp, keys))  # compile for this K outside the timing
        t0 = time.perf_counter()
        jax.block_until_ready(batched(hp, keys))
        t_vmap = time.perf_counter() - t0
        rows.append({"K": k, "loop_s": t_loop, "vmap_s": t_vmap, "speedup": t_loop / t_vmap})
        print(f"  K={k:4d}  loop {t_loop:8.2f} s  vmap {t_vmap:7.2f} s  speedup {t_loop / t_vmap:6.1f}x", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer epochs and K values (a smoke run)")
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--group-by", default="hidden_layer_sizes",
                   help="comma-separated grid keys compiled as separate programs ('' for one masked program)")
    p.add_argument("--tag", default=None, help="result file suffix (default: the JAX platform)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    from sklearn.datasets import make_classification
    from sklearn.model_selection import StratifiedKFold

    X, y = make_classification(n_samples=1000, random_state=42)
    folds = list(StratifiedKFold(n_splits=3).split(X, y))  # what GridSearchCV(cv=3) uses for a classifier
    result = {"machine": machine(), "benchmark": "sklearn GridSearchCV grid, 48 configs x 3 folds"}
    epochs = 30 if args.quick else 300
    print(f"hsens_jax: 48 configurations x 3 folds, {epochs} epochs, one program ...", flush=True)
    group_by = tuple(k for k in args.group_by.split(",") if k)
    t, tc, score, params, mean, n_div, gflops = run_hsens(X, y, folds, epochs=epochs, group_by=group_by)
    result["group_by"] = list(group_by)
    print(f"  {t:.1f} s (compilation {tc:.1f} s), best CV accuracy {score:.4f} with {params}; {n_div} diverged; "
          f"training arithmetic at {gflops:.1f} GFLOP/s in the run phase")
    floor, floor_compile = run_floor(X, y, folds, epochs=epochs)
    print(f"  floor (hand-written minimal JAX programs of the same shapes): {floor:.1f} s "
          f"(compilation {floor_compile:.1f} s)")
    peak = matmul_rate()
    print(f"  bare chains of batched matrix products, one per core, run at {peak:.1f} GFLOP/s here")
    result["hsens_jax"] = {"wall_s": t, "compile_s": tc, "best_score": score, "best_params": str(params),
                           "epochs": epochs, "diverged_runs": n_div, "training_gflops_per_s": gflops,
                           "bare_batched_matmul_gflops_per_s": peak,
                           "floor_wall_s": floor, "floor_compile_s": floor_compile}
    if not args.skip_sklearn:
        print("scikit-learn GridSearchCV(n_jobs=-1) ...", flush=True)
        ts, ss, ps, _ = run_sklearn(X, y, folds)
        print(f"  {ts:.1f} s, best CV accuracy {ss:.4f} with {ps}")
        result["sklearn"] = {"wall_s": ts, "best_score": ss, "best_params": str(ps)}
        result["speedup"] = ts / t
        result["score_difference"] = score - ss
        print(f"speedup {ts / t:.2f}x, best-score difference {score - ss:+.4f}")
    ks = [1, 8] if args.quick else [1, 8, 64, 512]
    steps = 50 if args.quick else 200
    print(f"vmapped sweep vs Python loop of the jitted single training (digits MLP, {steps} steps):", flush=True)
    result["vmap_vs_loop"] = {"steps": steps, "rows": vmap_vs_loop(ks, steps)}
    tag = args.tag or jax.devices()[0].platform
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"sweep_{tag}.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Sweep benchmark ({tag})", "", f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
             f"JAX {jax.__version__} on {result['machine']['device_kind']}", "",
             "| | wall time (s) | best 3-fold CV accuracy |", "| --- | --- | --- |",
             f"| hsens_jax ({len(result.get('group_by', [])) and 'one program per ' + '/'.join(result['group_by']) or 'one masked program'}, compiled concurrently; compile {tc:.1f} s incl.) | {t:.1f} | {score:.4f} |"]
    if "sklearn" in result:
        lines.append(f"| sklearn GridSearchCV(n_jobs=-1) | {result['sklearn']['wall_s']:.1f} | {result['sklearn']['best_score']:.4f} |")
        lines += ["", f"Speedup: **{result['speedup']:.2f}x**; best-score difference {result['score_difference']:+.4f}."]
    lines += ["", f"Floor: hand-written minimal JAX programs of the same shapes (plain dense layers, relu and Adam "
              f"only, fixed batch order, no divergence guard, one validation; `run_floor`) train the same "
              f"144 networks for the same steps in {floor:.1f} s, compilation {floor_compile:.1f} s included"
              + (f": {result['sklearn']['wall_s'] / floor:.2f}x GridSearchCV." if "sklearn" in result else ".")]
    lines += ["", f"Run phase: the training arithmetic (forward + backward = 3 forward passes of the built "
              f"networks) ran at {gflops:.1f} GFLOP/s; bare chains of batched matrix products of the grid's "
              f"shapes, one per core, run at {peak:.1f} GFLOP/s in this process."]
    lines += ["", f"## vmapped sweep vs Python loop ({steps} steps, digits MLP up to 64x2)", "",
              "| K | loop (s) | vmap (s) | speedup |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['K']} | {r['loop_s']:.2f} | {r['vmap_s']:.2f} | {r['speedup']:.1f}x |" for r in result["vmap_vs_loop"]["rows"]]
    (out / f"sweep_{tag}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / f'sweep_{tag}.json'} and .md")


if __name__ == "__main__":
    main()
