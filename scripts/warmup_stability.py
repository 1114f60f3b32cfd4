"""How reliably does warmup make a RecurrentPPO policy multistable? VAA* per seed and setting.

For each cell x learning rate x warmup steps x target x seed, builds a fresh
``RecurrentPPO(RecurrentCellPolicy)`` on the environment (8 envs, the given hidden size), warms
it up with :func:`~rl_warmup.sb3.warmup.warmup_recurrent_ppo` on 64 random-policy episodes and
prints, for the actor: the mean VAA* over the last 20 warmup steps, VAA* at the last step, and
VAA* re-measured after warmup with ``--check-settle-steps`` settling steps (``1/batch``: every
state in one attractor, "collapsed"). A summary line per setting counts the collapsed seeds.

Example (the diagnosis of ``docs/rl_results.md``, about 2 minutes)::

    python scripts/warmup_stability.py --env rl_warmup/PassiveTMaze-v0 --cells lstm gru
    python scripts/warmup_stability.py --cells lstm --lrs 0.01 0.003 0.001 --steps 100 300
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env

import envs  # noqa: F401  (registers the rl_warmup/ environments)
from rl_warmup.sb3.policies import RecurrentCellPolicy
from rl_warmup.sb3.warmup import warmup_recurrent_ppo
from rl_warmup.warmup import WarmupConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="rl_warmup/PassiveTMaze-v0", help="gymnasium id (default: %(default)s)")
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"], help="cells (default: %(default)s)")
    parser.add_argument("--hidden-size", type=int, default=32, help="units (default: %(default)s)")
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-2], help="warmup lr (default: %(default)s)")
    parser.add_argument("--steps", nargs="+", type=int, default=[100], help="warmup steps (default: %(default)s)")
    parser.add_argument("--targets", nargs="+", type=float, default=[0.95], help="VAA* target (default: %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="seeds (default: %(default)s)")
    parser.add_argument("--check-settle-steps", type=int, default=1000,
                        help="settling steps of the VAA* measured after warmup (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    print(f"{'cell':<12}{'lr':>8}{'steps':>7}{'target':>8}{'seed':>6}{'last20':>9}{'last':>8}{'after':>8}{'s':>7}")
    for cell, lr, steps, target in itertools.product(args.cells, args.lrs, args.steps, args.targets):
        finals = []
        for seed in args.seeds:
            env = make_vec_env(args.env, n_envs=8, seed=seed)
            model = RecurrentPPO(
                RecurrentCellPolicy,
                env,
                policy_kwargs=dict(cell=cell, lstm_hidden_size=args.hidden_size),
                seed=seed,
                device=args.device,
                verbose=0,
            )
            config = WarmupConfig(lr=lr, steps=steps, target=target, seed=seed,
                                  check_settle_steps=args.check_settle_steps)
            start = time.perf_counter()
            actor = warmup_recurrent_ppo(model, config=config)["actor"]
            history = [stars[0] for stars in actor.vaa_star_history]
            finals.append(actor.final_vaa_star[0])
            print(
                f"{cell:<12}{lr:>8g}{steps:>7}{target:>8g}{seed:>6}{np.mean(history[-20:]):>9.3f}"
                f"{history[-1]:>8.3f}{actor.final_vaa_star[0]:>8.3f}{time.perf_counter() - start:>7.1f}",
                flush=True,
            )
            env.close()
        collapsed = sum(f <= 1.0 / config.batch_size + 1e-6 for f in finals)
        print(f"  -> {cell} lr={lr:g} steps={steps} target={target:g}: collapsed (VAA* = 1/{config.batch_size}) "
              f"in {collapsed}/{len(finals)} seeds, mean VAA* after warmup {np.mean(finals):.3f}", flush=True)


if __name__ == "__main__":
    main()
