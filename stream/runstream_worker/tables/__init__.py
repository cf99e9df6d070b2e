"""One module per ClickHouse table the worker writes: its column list and the mapping from events to
its rows, each written once. Pure functions: no I/O, no clock, no state.

Point tables (``metrics``, ``hardware``) are built column by column with ``list.extend``, never point
by point; the other tables get a few rows per lifecycle event.
"""
