"""The study report: computed findings, tables and figures as one HTML file and a markdown file."""

from encoderlab.report.build import build_report
from encoderlab.report.findings import Finding, all_findings

__all__ = ["Finding", "all_findings", "build_report"]
