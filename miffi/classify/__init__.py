"""Classify: models and the weight-free classifier per square, squares combined into categories."""
