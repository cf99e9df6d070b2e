"""Offline W&B runs made by the real wandb SDK (WANDB_MODE=offline, WANDB_DIR set by the caller)."""

from __future__ import annotations

import math

import numpy as np
import wandb

T0 = 1_700_000_000.0


def main() -> None:
    run = wandb.init(
        project="wb-proj",
        name="first",
        group="sweep-1",
        tags=["baseline", "cifar"],
        config={"lr": 0.1, "optimizer": {"name": "adam", "betas": [0.9, 0.99]}, "epochs": 3},
    )
    for step, (loss, acc) in enumerate([(1.5, 0.25), (math.nan, 0.5), (0.5, 0.75)]):
        run.log({"loss": loss, "eval": {"acc": acc}, "_timestamp": T0 + step}, step=step)
    run.log({"flag": True, "note": "text", "hist": wandb.Histogram(np.arange(5.0)), "_timestamp": T0 + 3}, step=3)
    run.summary["best_acc"] = 0.75
    run.summary["checkpoint"] = "s3://ckpt/3"
    run.finish()

    failed = wandb.init(project="wb-proj", name="failed")
    failed.log({"loss": math.inf, "_timestamp": T0 + 10}, step=0)
    failed.finish(exit_code=1)

    long = wandb.init(project="wb-proj", name="long")
    for step in range(200):
        long.log({"x": float(step), "_timestamp": T0 + 20 + step}, step=step)
    long.finish()
    print(run.id, failed.id, long.id)


if __name__ == "__main__":
    main()
