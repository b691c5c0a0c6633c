"""One process of a test's process group (tests/engine/test_distributed.py).

    python _distributed_worker.py [--die-at-chunk K] [--estimators OUT.npz] -- HSENS ARGS...

runs ``hsens HSENS ARGS...`` in this process; ``--die-at-chunk K`` kills this process
(SIGKILL, as a crash would) when it reaches the K-th chunk's gather; ``--estimators OUT.npz``
then runs estimator cases of tests/sensitivity/_sharded_cases.py in float64, on this
process's device alone and sharded over the group's devices, and (process 0) saves both.
"""

import os
import signal
import sys


def main(argv):
    split = argv.index("--")
    own, hsens_args = argv[:split], argv[split + 1:]
    die_at = int(own[own.index("--die-at-chunk") + 1]) if "--die-at-chunk" in own else None
    estimators = own[own.index("--estimators") + 1] if "--estimators" in own else None

    from hsens_jax import cli
    from hsens_jax.engine import distributed

    if die_at is not None:
        gather, seen = distributed.gather, [0]

        def dying_gather(tree, what="", advice=""):
            if what.startswith("gathering chunk"):
                seen[0] += 1
                if seen[0] == die_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return gather(tree, what, advice)

        distributed.gather = dying_gather
    status = cli.main(hsens_args)
    if status or estimators is None:
        return status
    import jax
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sensitivity"))
    from _sharded_cases import run_cases

    cases = ["V_perm"]  # permutation p-values: the same keys in every process
    with jax.enable_x64(True):
        one = run_cases(cases, None)
        group = run_cases(cases, "all")
    if distributed.is_leader():
        np.savez(estimators, **{f"one:{k}": v for k, v in one.items()}, **{f"group:{k}": v for k, v in group.items()})
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
