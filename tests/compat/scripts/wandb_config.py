# W&B's config guide (docs.wandb.ai/guides/track/config), with only the import changed.
import argparse

import runstream.wandb as wandb

config = {"epochs": 4, "batch_size": 32, "optimizer": {"name": "adamw", "betas": [0.9, 0.999]}}
run = wandb.init(project="config-usage", config=config, tags=["baseline", "cnn"], job_type="train", group="sweep-a")

# attribute and item access
assert wandb.config.epochs == 4 and wandb.config["batch_size"] == 32
wandb.config.update({"lr": 0.1, "channels": 16})
wandb.config.dropout = 0.2
wandb.config["activation"] = "relu"

parser = argparse.ArgumentParser()
parser.add_argument("-b", "--hidden", type=int, default=8, metavar="N")
args = parser.parse_args([])
wandb.config.update(args)

for step in range(3):
    # W&B's step and commit rules: commit=False adds to the current step
    wandb.log({"train/loss": 1.0 / (step + 1)}, commit=False)
    wandb.log({"train": {"acc": step / 10}})
wandb.log({"late": 1.0}, step=10)  # pending at step 10
wandb.log({"same": 2.0}, step=10)  # still step 10
wandb.log({"back": 3.0}, step=4)  # behind: dropped with a warning
wandb.log({"final": 4.0})  # commits step 10

# not supported yet: each warns once and does nothing
wandb.log({"examples": [wandb.Image([[0, 1], [1, 0]], caption="x")], "with_image": 5.0})
table = wandb.Table(columns=["a"], data=[[1]])
wandb.log({"table": table})
artifact = wandb.Artifact("model", type="model")
artifact.add_file("model.pt")
run.log_artifact(artifact)
wandb.watch(object())

run.summary["best_accuracy"] = 0.93
run.summary.update({"note": "fine"})
wandb.alert(title="Low accuracy", text="Accuracy 0.2 is below 0.3", level=wandb.AlertLevel.WARN)
wandb.alert(title="Low accuracy", text="sent again within a minute: not recorded")
print("RUN", run.id, run.name, run.project, run.step)
wandb.finish(exit_code=0)
