"""The results lake: one Parquet file per model and table, written atomically, hive-partitioned."""

from core.results.lake import TABLES, provenance, read_table, write_table

__all__ = ["TABLES", "provenance", "read_table", "write_table"]
