"""Report: the HTML report and its figures."""
