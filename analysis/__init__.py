"""Analysis: pure functions over the results lake's tables (polars in, tables out)."""
