"""Results JSON, Markdown tables of paper vs ours, and plots."""

from dl.report.markdown import report_markdown
from dl.report.results import Bar, at_least, at_most, environment, write_results

__all__ = ["Bar", "at_least", "at_most", "environment", "report_markdown", "write_results"]
