# W&B's define_metric guide (docs.wandb.ai/guides/track/log/customize-logging-axes and the summary
# options), with only the import changed and the random seed fixed.
import random

import runstream.wandb as wandb

random.seed(11)

wandb.init(project="define-metric", name="custom-axes")
# define our custom x axis metric
wandb.define_metric("custom_step")
# define which metrics will be plotted against it
wandb.define_metric("validation_loss", step_metric="custom_step")
# every metric under "val/" against the epoch, and its summary as its best (lowest) value
wandb.define_metric("epoch")
wandb.define_metric("val/*", step_metric="epoch", summary="min")
wandb.define_metric("acc", summary="max")
wandb.define_metric("loss", summary="min,mean")

for i in range(10):
    log_dict = {
        "train_loss": 1 / (i + 1),
        "custom_step": i**2,
        "validation_loss": 1 / (i + 1),
        "acc": random.uniform(1 / (i + 1), 1),
        "loss": random.uniform(0, 1 / (i + 1)),
    }
    wandb.log(log_dict)
    if i % 5 == 4:
        wandb.log({"epoch": i // 5})
        wandb.log({"val/loss": 1 / (i + 2), "val/acc": i / 10})

wandb.finish()
