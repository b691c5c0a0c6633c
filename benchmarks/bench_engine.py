"""The engine's cost for a user's Flax module against a hand-written ``jit(vmap(train))`` floor.

A user brings a module (an MLP of static width 64 with a traced dropout rate, trained by
their own ``optax.adamw`` of traced learning rate and weight decay) and sweeps K
configurations of (learning rate, weight decay, dropout) on the bundled digits. Two ways:

* engine: ``hs.run_sweep(..., model=hs.Model(...))``, as a user calls it (NumPy design in,
  results out, no progress bar, no run directory);
* floor: what the same user would write by hand without hsens_jax: one ``jax.jit(jax.vmap(train))``
  of a ``lax.scan`` training loop (a permutation per epoch, dropout keys per step, the same
  optimizer), evaluated once at the end.

Both include compilation: each measurement is a fresh Python process, with the persistent
compilation cache off, and the two kinds alternate (the machine is shared and noisy). The
engine does more than the floor: validation curves (``n_evals`` points plus one at
initialization), the divergence guard, per-example evaluation, the results' bookkeeping;
``n_evals=2`` here keeps curves short.

Usage: python benchmarks/bench_engine.py [--repeats 3] [--k 8 64 256] [--epochs 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]

COMMON = """
import time, numpy as np, jax, jax.numpy as jnp, flax.linen as nn, optax
t0 = time.perf_counter()
import hsens_jax as hs

class Net(nn.Module):
    width: int
    dropout: float
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))
        x = hs.Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(10)(x)

def optimizer(hp):
    return optax.adamw(hp["learning_rate"], weight_decay=hp["weight_decay"])

space = hs.Space([hs.Float("learning_rate", 1e-3, 1e-1, log=True), hs.Float("weight_decay", 1e-5, 1e-2, log=True),
                  hs.Float("dropout", 0.0, 0.5)])
data = hs.load_dataset("digits")
configs = space.sample(K, "sobol", seed=0)
"""

ENGINE = COMMON + """
model = hs.Model(lambda hp: Net(64, hp["dropout"]), optimizer=optimizer)
res = hs.run_sweep(data, space, configs, model=model, fixed={"epochs": EPOCHS, "batch_size": 32}, n_evals=2,
                   progress=False, chunk_size=256)
loss = res.metrics["final_val_loss"][:, 0]
print("RESULT", time.perf_counter() - t0, float(np.nanmean(loss)))
"""

FLOOR = COMMON + """
x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
xv, yv = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
n, bs = len(data.x_train), 32
spe = n // bs
steps = int(np.ceil(EPOCHS * spe))

def train(lr, wd, rate, key):
    module = Net(64, rate)
    k_init, k_order, k_drop = jax.random.split(key, 3)
    params = module.init({"params": k_init}, x[:1])["params"]
    tx = optax.adamw(lr, weight_decay=wd)

    def step(carry, t):
        params, state, perm = carry
        perm = jax.lax.cond(t % spe == 0, lambda: jax.random.permutation(jax.random.fold_in(k_order, t // spe), n),
                            lambda: perm)
        idx = jax.lax.dynamic_slice(perm, ((t % spe) * bs,), (bs,))
        def loss(p):
            out = module.apply({"params": p}, x[idx], train=True, rngs={"dropout": jax.random.fold_in(k_drop, t)})
            return optax.softmax_cross_entropy_with_integer_labels(out, y[idx]).mean()
        g = jax.grad(loss)(params)
        u, state = tx.update(g, state, params)
        return (optax.apply_updates(params, u), state, perm), None

    (params, _, _), _ = jax.lax.scan(step, (params, tx.init(params), jnp.arange(n)), jnp.arange(steps))
    out = module.apply({"params": params}, xv)
    return optax.softmax_cross_entropy_with_integer_labels(out, yv).mean()

f = jax.jit(jax.vmap(train, in_axes=(0, 0, 0, None)))
loss = np.asarray(f(jnp.asarray(configs["learning_rate"], jnp.float32), jnp.asarray(configs["weight_decay"], jnp.float32),
                    jnp.asarray(configs["dropout"], jnp.float32), jax.random.key(0)))
print("RESULT", time.perf_counter() - t0, float(np.nanmean(loss)))
"""


def run(kind: str, k: int, epochs: float) -> tuple[float, float]:
    code = (ENGINE if kind == "engine" else FLOOR).replace("EPOCHS", repr(epochs)).replace("K,", f"{k},")
    env = {**os.environ, "HSENS_COMPILATION_CACHE": "off", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][-1].split()
    return float(line[1]), float(line[2]) if wall else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="+", default=[8, 64, 256])
    p.add_argument("--epochs", type=float, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    rows = []
    for k in args.k:
        times = {"engine": [], "floor": []}
        losses = {}
        for _ in range(args.repeats):
            for kind in ("engine", "floor"):
                t, loss = run(kind, k, args.epochs)
                times[kind].append(t)
                losses[kind] = loss
        ratios = [e / f for e, f in zip(times["engine"], times["floor"])]
        row = {"K": k, "engine_s": times["engine"], "floor_s": times["floor"], "ratio_paired": ratios,
               "ratio_median": statistics.median(ratios), "engine_mean_val_loss": losses["engine"],
               "floor_mean_val_loss": losses["floor"]}
        rows.append(row)
        print(f"K={k:4d}  engine {statistics.median(times['engine']):6.1f} s  floor "
              f"{statistics.median(times['floor']):6.1f} s  ratio {row['ratio_median']:.2f} "
              f"(paired {min(ratios):.2f}-{max(ratios):.2f})  mean val loss {losses['engine']:.3f} / "
              f"{losses['floor']:.3f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "engine vs hand-written jit(vmap(train)), user module, digits, compilation included",
           "epochs": args.epochs, "repeats": args.repeats, "machine": describe("jax", "flax", "optax", "numpy"), "rows": rows}
    (out / "engine_cpu.json").write_text(json.dumps(doc, indent=2))
    lines = ["# Engine vs hand-written floor (user module, digits, fresh process each, compilation included)", "",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cores']} cores, load {doc['machine']['load_1min']:.1f} "
             f"(1-min average at the end). {args.epochs} epochs, batch 32, MLP width 64 with traced dropout, "
             f"optax.adamw; {args.repeats} alternating repeats.", "",
             "| K | engine (s) | floor (s) | engine / floor (median of paired) | range |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['K']} | {statistics.median(r['engine_s']):.1f} | {statistics.median(r['floor_s']):.1f} | "
                     f"{r['ratio_median']:.2f} | {min(r['ratio_paired']):.2f}-{max(r['ratio_paired']):.2f} |")
    (out / "engine_cpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
