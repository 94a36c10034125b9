"""Classify: models and the weight-free classifier per square, squares combined into categories."""

#: Default confidence a call needs to count as high (here, not in ``combine``: the command
#: line shows it in its help, and must not import pandas to build its parser).
DEFAULT_THRESHOLD = 0.7
