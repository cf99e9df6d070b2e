"""``runstream import SOURCE``: runs recorded by MLflow, TensorBoard, Neptune (neptune-exporter's Parquet)
or W&B (offline run directories) brought into runstream.

Each reader (``from_<source>``) turns what its source recorded into ``runstream._history.HistoricRun``
objects and counts what it leaves out; ``run.py`` sends them through the SDK's path (spool, Kafka,
the worker's exactly-once) with progress bars and prints the report.
"""
