"""The embedded engine: the batch pipeline's business steps as vectorised DuckDB SQL
in this process, over both cores, without a Beam runner (``revattr run`` and
``revattr follow`` by default). See ``pipelines/embedded/engine.py``.
"""
