"""The revattr data contract (../shared/CONTRACT.md) as pyarrow schemas.

Single source of truth: readers, validators, DuckDB DDL and expectation suites
are derived from the definitions here. This package imports nothing of ours.
"""
