"""`varctl check` / `varctl diff` / `varctl stats`: assertions and comparisons for pipelines."""
