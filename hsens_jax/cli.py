"""The ``hsens`` command line.

::

    hsens demo                     # a few hundred MLPs on the bundled digits, then their analysis
    hsens sweep CONFIG.toml        # a sweep described by a TOML file (resumes if interrupted)
    hsens optimize CONFIG.toml     # a search that learns ([design] kind = "tpe"), batch by batch
    hsens sweep CONFIG.toml --coordinator HOST:PORT --num-processes N --process-id I
                                   # one of N cooperating processes (hosts, GPUs); under SLURM
                                   # or Open MPI the group is found in the environment
    hsens show RUN_DIR             # the best configurations of a run
    hsens analyze RUN_DIR          # sensitivity of the run's objectives to each hyperparameter
    hsens data fetch mnist         # download a data set (mnist, fashion-mnist, cifar10)

Every subcommand has ``--help``. Errors in the configuration, the data or the
arguments print one line naming the culprit and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import hsens_jax
from hsens_jax.engine.distributed import ProcessGroupError

DEMO_SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "optimizer": {"type": "categorical", "choices": ["sgd", "momentum", "adam", "rmsprop"]},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99, "condition": {"optimizer": ["momentum"]}},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "width": {"type": "int", "low": 8, "high": 128, "log": True},
    "depth": {"type": "int", "low": 1, "high": 3},
    "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "batch_size": {"type": "categorical", "choices": [32, 128]},
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hsens",
        description="Which hyperparameters do your deep-learning results depend on, and how much.",
    )
    p.add_argument("--version", action="version", version=f"hsens_jax {hsens_jax.__version__}")
    p.add_argument("--compilation-cache", metavar="DIR|off", default=None,
                   help="where compiled programs are kept between runs (default: $HSENS_COMPILATION_CACHE, else "
                        "~/.cache/hsens_jax/jax-<version>); 'off' to compile afresh every time")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="sweep a few hundred MLPs on the bundled digits and analyse them",
                          description="Train a Sobol design of MLP configurations on scikit-learn's bundled "
                                      "8x8 digits in one vectorized sweep, print the best ones and the "
                                      "sensitivity of the validation loss to each hyperparameter.")
    demo.add_argument("--n-configs", type=int, default=256, help="configurations in the design (default 256)")
    demo.add_argument("--epochs", type=float, default=10, help="training epochs per configuration (default 10)")
    demo.add_argument("--seeds", type=int, default=1, help="seeds per configuration (default 1)")
    demo.add_argument("--output", default="runs/demo", help="run directory (default runs/demo)")
    demo.add_argument("--top", type=int, default=10, help="rows of the best-configurations table")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.add_argument("--overwrite", action="store_true", help="discard a different sweep found in --output")
    _device_args(demo)
    _analysis_args(demo, ("final_val_loss", "param_count"))

    sweep = sub.add_parser("sweep", help="run the sweep a TOML configuration describes",
                           description="Run a sweep described by a TOML file (see hsens_jax.config for the "
                                       "format). Results are written chunk by chunk; re-running the same "
                                       "command resumes an interrupted sweep.")
    sweep.add_argument("config", help="the TOML configuration file")
    sweep.add_argument("--output", help="run directory (overrides [sweep] output)")
    sweep.add_argument("--chunk-size", type=int, help="runs per compiled call (overrides [sweep] chunk_size)")
    sweep.add_argument("--overwrite", action="store_true", help="discard a different sweep found in the output")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sweep.add_argument("--top", type=int, default=10, help="rows of the best-configurations table")
    _device_args(sweep)
    _process_group_args(sweep)

    opt = sub.add_parser("optimize", help="a search that learns: Optuna's TPE, GP or CMA-ES proposes the configurations",
                         description="Run the search a TOML file's [design] describes (kind = tpe | gp | cmaes; n "
                                     "trials, batch per vectorized training call; see hsens_jax.config): each batch "
                                     "of configurations is trained in one call and told to the Optuna study "
                                     "(OUTPUT/study.db), and a table of the best configurations so far is printed. "
                                     "Re-running the same command resumes an interrupted search.")
    opt.add_argument("config", help="the TOML configuration file")
    opt.add_argument("--output", help="run directory (overrides [sweep] output)")
    opt.add_argument("--trials", type=int, help="the budget: trials in the study when done (overrides [design] n)")
    opt.add_argument("--batch", type=int, help="configurations per training call (overrides [design] batch)")
    opt.add_argument("--chunk-size", type=int, help="runs per compiled call (overrides [sweep] chunk_size)")
    opt.add_argument("--overwrite", action="store_true", help="discard a different sweep found in the output")
    opt.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    opt.add_argument("--top", type=int, default=5, help="rows of the best-configurations table after each batch")
    _device_args(opt)

    an = sub.add_parser("analyze", help="HSIC sensitivity of a run's objectives to each hyperparameter",
                        description="Compute the R2-HSIC index and independence-test p-value of every "
                                    "hyperparameter of a finished run against one or more objectives; "
                                    "write sensitivity.json/.csv (and plots) into the run directory.")
    an.add_argument("run_dir", help="a run directory written by `hsens sweep` or `hsens demo`")
    _analysis_args(an)
    an.add_argument("--interactions", action="store_true",
                    help="also pairs of hyperparameters: their R2-HSIC and their second-order HSIC-ANOVA index "
                         "(the interaction with main effects removed)")

    show = sub.add_parser("show", help="print the best configurations of a finished run",
                          description="Print the best configurations of a run, ranked by one metric in its "
                                      "recorded direction, with the mean and spread over seeds of each metric.")
    show.add_argument("run_dir", help="a run directory written by `hsens sweep` or `hsens demo`")
    show.add_argument("--objective", default="final_val_loss", help="metric to rank by (default final_val_loss)")
    show.add_argument("--direction", choices=("minimize", "maximize"), default=None,
                      help="rank lowest or highest first (default: the direction the run records for the metric)")
    show.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    _data_parser(sub)
    return p


def _data_parser(sub) -> None:
    from hsens_jax.data.fetch import MIRROR_ENV, SOURCES

    data = sub.add_parser("data", help="get the file-based data sets (MNIST, Fashion-MNIST, CIFAR-10)")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "fetch", help="download data sets from their canonical sources, checking their MD5 sums",
        description="Download MNIST (the ossci-datasets S3 mirror of yann.lecun.com), Fashion-MNIST "
                    "(Zalando's S3 bucket) or CIFAR-10 (cs.toronto.edu) into the data directory, in the "
                    "layout the loaders read. Files already present with the right checksum are skipped; "
                    "an interrupted download resumes when the command is run again.")
    fetch.add_argument("names", nargs="+", choices=list(SOURCES), metavar="NAME",
                       help="one or more of: " + ", ".join(SOURCES))
    fetch.add_argument("--dir", default=None, metavar="DIR",
                       help="data directory (default: $HSENS_DATA, else ~/.cache/hsens_jax)")
    fetch.add_argument("--mirror", default=None, metavar="URL",
                       help=f"download from URL/NAME/FILE instead of the canonical source (default: ${MIRROR_ENV} "
                            f"if set); the checksums stay those of the canonical files")
    fetch.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _data_command(args) -> int:
    from hsens_jax.data.fetch import FetchError, fetch_dataset

    try:
        for name in args.names:
            paths = fetch_dataset(name, args.dir, mirror=args.mirror, progress=not args.no_progress)
            print(f"{name}: " + ", ".join(str(p) for p in paths))
    except FetchError as e:
        print(f"hsens data fetch: error: {e}", file=sys.stderr)
        return 2
    return 0


def _analysis_args(p, objectives=("final_val_loss",)):
    p.add_argument("--objective", action="append", dest="objectives", metavar="NAME",
                   help="objective to analyse, repeatable (default: " + ", ".join(objectives) + "); e.g. "
                        "final_val_loss, best_val_accuracy, param_count, flops_per_example")
    p.add_argument("--target", type=float, default=None, metavar="Q",
                   help="goal-oriented analysis of the best fraction Q of configurations (e.g. 0.1)")
    p.add_argument("--direction", action="append", dest="directions", metavar="[NAME=]DIR",
                   help="minimize or maximize: the direction of every objective, or NAME=DIR for one "
                        "(default: the direction the run records; needed with --target and for diverged runs)")
    p.add_argument("--estimator", choices=("U", "V"), default="U",
                   help="HSIC estimator of the indices and p-values (default U, unbiased); rankings always "
                        "use the U-statistic R2-HSIC, indices from fewer than 30 configurations after the others")
    p.add_argument("--pvalue", choices=("permutation", "gamma", "none"), default="permutation",
                   help="independence test for the p-values (default permutation)")
    p.add_argument("--permutations", type=int, default=1000, help="permutations for the p-values (default 1000)")
    p.add_argument("--diverged", choices=("rank", "clip", "drop"), default="rank",
                   help="how runs flagged as diverged enter the indices: rank (default: rank-transformed "
                        "objective, diverged runs tied last), clip (to the worst other value, or --cap), drop")
    p.add_argument("--cap", type=float, default=None, help="the value diverged runs are clipped to (--diverged clip)")
    p.add_argument("--no-plot", action="store_true", help="do not write PNG plots")
    p.set_defaults(default_objectives=list(objectives))


def _directions(values):
    """``--direction`` values: one bare direction for all objectives, or NAME=DIR items."""
    if not values:
        return None
    bare = [v for v in values if "=" not in v]
    named = dict(v.split("=", 1) for v in values if "=" in v)
    if bare and (len(bare) > 1 or named):
        raise ValueError(f"--direction: give one direction for all objectives or NAME=DIR items, got {values}")
    return bare[0] if bare else named


def _analyze(result, run_dir, args, interactions=False):
    from hsens_jax.analysis import analyze

    objectives = args.objectives or args.default_objectives
    if args.permutations < 1:
        raise ValueError(f"--permutations must be >= 1, got {args.permutations}")
    pvalue = None if args.pvalue == "none" else args.pvalue
    report = analyze(result, objectives, target=args.target, directions=_directions(args.directions),
                     pvalue=pvalue, n_permutations=args.permutations, estimator=args.estimator,
                     diverged=args.diverged, cap=args.cap, interactions=interactions)
    tests = {"permutation": f"permutation p-values ({args.permutations} permutations)",
             "gamma": "Gamma-approximation p-values", "none": "no p-values"}[args.pvalue]
    print(f"\nSensitivity (R2-HSIC, {args.estimator}-statistic, {tests}; normalization of Novello et al. 2023):\n")
    print(report.table())
    stem = "sensitivity" if args.target is None else f"sensitivity_target{args.target:g}"
    files = report.save(run_dir, stem)
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for obj in report.objectives:
            fig, ax = plt.subplots(figsize=(max(7, 0.8 * len(report.names) + 2), 4))
            report.plot(obj, ax=ax)
            fig.tight_layout()
            f = Path(run_dir) / f"{stem}_{obj}.png"
            fig.savefig(f, dpi=120)
            plt.close(fig)
            files.append(f)
        for obj in report.interactions:
            for part, suffix in (("interaction", "interactions"), ("pair", "pairs")):
                fig, ax = plt.subplots(figsize=(6.5, 5.5))
                report.plot_interactions(obj, part=part, ax=ax)
                fig.tight_layout()
                f = Path(run_dir) / f"{stem}_{obj}_{suffix}.png"
                fig.savefig(f, dpi=120)
                plt.close(fig)
                files.append(f)
    print("Wrote " + ", ".join(str(f) for f in files))
    return report


def _sweep(config, output, overwrite, progress, top, chunk_size=None, allow_device_change=False):
    from hsens_jax.engine import distributed
    from hsens_jax.engine.sweep import run_sweep

    dataset = config.load_data()
    configs = config.make_design()
    result = run_sweep(
        dataset, config.space, configs, model=config.make_model(), fixed=config.fixed, seeds=config.seeds,
        cv=config.cv, chunk_size=chunk_size or config.chunk_size, n_evals=config.n_evals,
        group_by=config.group_by, eval_batch_size=config.eval_batch_size, run_dir=output, overwrite=overwrite,
        progress=progress, design=config.design, allow_device_change=allow_device_change,
    )
    if not distributed.is_leader():  # process 0 reports for the group
        print(f"process {distributed.process_index()} of {distributed.process_count()}: done "
              f"({result.meta['new_chunks']} new chunk(s))")
        return result
    print(f"\n{result.n_configs} configurations x {len(result.seeds)} seed(s) on {dataset.name} "
          f"in {result.meta['wall_time']:.1f} s ({result.meta['device']})")
    print(f"\nBest configurations by validation loss (mean over seeds):\n{result.table(k=top)}")
    print(f"\nResults: {Path(output).resolve()}  (results.npz, results.csv, meta.json; "
          f"hsens_jax.load_results() loads them)")
    return result


def _optimize(config, output, overwrite, progress, top, trials=None, batch=None, chunk_size=None):
    """The search of ``config`` ([design] kind = tpe | gp | cmaes), printing the best configurations
    after every batch."""
    from hsens_jax.search.optuna import optimize

    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    design = config.design
    objective = design.get("objective", "final_val_loss")
    batch = batch or design["batch"]
    # a search's chunks hold one batch's runs at most: [sweep] chunk_size only lowers that
    chunk_size = min(chunk_size or config.chunk_size, batch * len(config.seeds) * (config.cv or 1))
    dataset = config.load_data()

    def live(res, record):
        numbers = record["trials"]
        resumed = f", {record['resumed']} resumed from an interrupted session" if record["resumed"] else ""
        print(f"\nbatch {len(res.batches)}: trials {numbers[0]}-{numbers[-1]}{resumed} in {record['wall_s']:.1f} s "
              f"({record['compilations']} compilations); best {objective} so far: {record['best_value']:.4g}")
        print(res.table(top), flush=True)

    res = optimize(
        dataset, config.space, n_trials=trials or design["n"], batch_size=batch,
        sampler=design["kind"], objective=objective, direction=design.get("direction"), seed=design["seed"],
        model=config.make_model(), fixed=config.fixed, seeds=config.seeds, cv=config.cv, run_dir=output,
        storage=design.get("storage"), study_name=design.get("study_name"), chunk_size=chunk_size,
        n_evals=config.n_evals, eval_batch_size=config.eval_batch_size, group_by=config.group_by, overwrite=overwrite,
        progress=progress, callback=live)
    n_done = len(res.study.trials)
    if not res.batches:
        print(f"the study already holds {n_done} trials (the budget): nothing to train")
    try:
        print(f"\nBest of {n_done} trials: {objective} = {res.best_value:.4g} with {res.best_params}")
    except ValueError:
        print(f"\nNo trial of the {n_done} has a finite {objective}")
    where = Path(output).resolve()
    storage = design.get("storage") or f"sqlite:///{where / 'study.db'}"
    print(f"Results: {where} (hsens_jax.load_results() loads them); study: {storage} "
          f"(optuna-dashboard {storage})")
    return res


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help="JAX devices to split the CPU into, each training a share of every chunk "
                        "(default: one per core; 1 keeps JAX's single CPU device; no effect on a GPU or TPU)")


def _process_group_args(p: argparse.ArgumentParser) -> None:
    from hsens_jax.engine import distributed

    g = p.add_argument_group(
        "several processes", "Run as one of N cooperating processes (one per host, or per GPU), each training its "
        "devices' share of every chunk; process 0 writes the results. Under SLURM (srun) or Open MPI (mpirun) the "
        "group is read from the environment; otherwise give all three of --coordinator, --num-processes and "
        "--process-id. Every process runs the same command.")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="where process 0 serves the group: its host name and a free port")
    g.add_argument("--num-processes", type=int, metavar="N", default=None, help="processes in the group")
    g.add_argument("--process-id", type=int, metavar="I", default=None, help="this process, 0 .. N-1")
    g.add_argument("--init-timeout", type=float, metavar="S", default=distributed.DEFAULT_INIT_TIMEOUT,
                   help=f"seconds to wait for every process to join (default {distributed.DEFAULT_INIT_TIMEOUT})")
    g.add_argument("--heartbeat-timeout", type=int, metavar="S", default=distributed.DEFAULT_HEARTBEAT_TIMEOUT,
                   help="seconds of silence after which a process is declared dead and the others stop "
                        f"(default {distributed.DEFAULT_HEARTBEAT_TIMEOUT})")
    g.add_argument("--single-process", action="store_true",
                   help="ignore a cluster launcher's environment (SLURM, Open MPI) and run alone")
    g.add_argument("--allow-device-change", action="store_true",
                   help="resume a run directory computed on another number of devices or processes (refused by "
                        "default: results then differ in their last bits; meta.json lists each chunk's devices)")


def _process_group(args):
    """Join the process group the flags or the launcher's environment describe (None: alone)."""
    from hsens_jax.engine import distributed

    explicit = (args.coordinator, args.num_processes, args.process_id)
    if all(v is None for v in explicit):
        found = None if args.single_process else distributed.detect_cluster()
        if found is None or found[1] <= 1:
            return None
        return distributed.initialize(initialization_timeout=args.init_timeout,
                                      heartbeat_timeout=args.heartbeat_timeout)
    if args.single_process:
        raise ValueError("--single-process contradicts --coordinator/--num-processes/--process-id")
    return distributed.initialize(*explicit, initialization_timeout=args.init_timeout,
                                  heartbeat_timeout=args.heartbeat_timeout)


def _leave_group(status: int) -> None:
    """In a process group, end this process now: the others then see it leave at once and stop
    (a normal exit would first wait at JAX's shutdown barrier for processes that wait for it)."""
    from hsens_jax.engine import distributed

    if distributed.is_multiprocess():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _use_cpu_devices(n) -> None:
    from hsens_jax.engine.devices import use_cpu_cores

    if n is not None and n < 1:
        raise ValueError(f"--cpu-devices must be >= 1, got {n}")
    use_cpu_cores(n)


def _compilation_cache(choice) -> None:
    """The --compilation-cache option: a directory, 'off', or the default (see hsens_jax.compile_cache)."""
    from hsens_jax import compile_cache

    if choice is None:
        compile_cache.ensure_compilation_cache()
    elif choice.strip().lower() in ("0", "off", "false", "none", "no"):
        compile_cache.disable_compilation_cache()
    else:
        compile_cache.enable_compilation_cache(choice)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _compilation_cache(args.compilation_cache)
    try:
        if args.command == "demo":
            from hsens_jax.config import SweepConfig

            if args.n_configs < 1 or args.epochs <= 0 or args.seeds < 1:
                raise ValueError("--n-configs, --epochs and --seeds must be positive")
            _use_cpu_devices(args.cpu_devices)
            config = SweepConfig.from_dict({
                "data": {"name": "digits"},
                "budget": {"epochs": args.epochs},
                "design": {"kind": "sobol", "n": args.n_configs, "seed": 0},
                "sweep": {"n_seeds": args.seeds, "chunk_size": 64, "output": args.output},
                "space": DEMO_SPACE,
            }, source="hsens demo")
            result = _sweep(config, args.output, args.overwrite, not args.no_progress, args.top)
            _analyze(result, args.output, args)
        elif args.command == "sweep":
            from hsens_jax.config import SweepConfig

            _use_cpu_devices(args.cpu_devices)
            _process_group(args)
            config = SweepConfig.load(args.config)
            if config.is_search:
                _optimize(config, args.output or config.output, args.overwrite, not args.no_progress, args.top,
                          chunk_size=args.chunk_size)
            else:
                _sweep(config, args.output or config.output, args.overwrite, not args.no_progress, args.top,
                       args.chunk_size, args.allow_device_change)
        elif args.command == "optimize":
            from hsens_jax.config import SEARCH_KINDS, SweepConfig

            _use_cpu_devices(args.cpu_devices)
            config = SweepConfig.load(args.config)
            if not config.is_search:
                raise ValueError(f"{args.config}: [design] kind = {config.design['kind']!r} is a design, not a search: "
                                 f"set kind to one of {list(SEARCH_KINDS)} (with n trials and a batch), or run "
                                 f"`hsens sweep`")
            _optimize(config, args.output or config.output, args.overwrite, not args.no_progress, args.top,
                      args.trials, args.batch, args.chunk_size)
        elif args.command == "analyze":
            from hsens_jax.results import load_results

            _analyze(load_results(args.run_dir, partial=True), args.run_dir, args, interactions=args.interactions)
        elif args.command == "data":
            return _data_command(args)
        elif args.command == "show":
            from hsens_jax.results import load_results

            if args.top < 1:
                raise ValueError(f"--top must be >= 1, got {args.top}")
            result = load_results(args.run_dir, partial=True)  # an unfinished run too, with a warning
            print(result.table(args.objective, k=args.top, direction=args.direction))
    except (ValueError, FileNotFoundError, TypeError, ImportError) as e:
        print(f"hsens {args.command}: error: {e}", file=sys.stderr)
        _leave_group(2)
        return 2
    except KeyboardInterrupt:
        print(f"\nhsens {args.command}: interrupted; finished chunks are saved, re-run the same command to resume",
              file=sys.stderr)
        _leave_group(130)
        return 130
    except ProcessGroupError as e:
        print(f"hsens {args.command}: error: {e}", file=sys.stderr)
        _leave_group(3)
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
