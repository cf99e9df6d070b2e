"""The runstream worker: Faust agents that write Kafka events into ClickHouse in batches.

Installed as ``runstream_worker`` (extra ``runstream[stream]``).
"""
