"""Loggers for training frameworks, each on the SDK's ``Run`` (the framework is imported only by its module).

- ``runstream.integrations.lightning.RunstreamLogger``: a PyTorch Lightning ``Logger``.
- ``runstream.integrations.transformers.RunstreamCallback``: a Hugging Face ``TrainerCallback``; importing
  the module also makes ``TrainingArguments(report_to="runstream")`` work.
- ``runstream.integrations.keras.RunstreamCallback``: a Keras 3 callback (batch end and epoch end).
"""
