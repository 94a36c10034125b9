"""Evaluate: calls against labels (label files, the paper's metrics)."""
