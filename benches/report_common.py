"""Helpers shared by the benchmark reports (read/, deltas/, compact/report.py)."""

import json
import os


def load(path):
    """The JSON in `path`, or None if it is missing or not JSON (a step that did not run)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def log_findings(run_dir, title):
    """The report section listing the WARN/ERROR lines the run script collected from the
    daemon logs into RUN_DIR/log_findings.txt (at most 40, each cut at 400 characters)."""
    try:
        findings = open(os.path.join(run_dir, "log_findings.txt")).read().strip()
    except OSError:
        findings = ""
    lines = [f"## {title}", ""]
    if findings:
        lines += ["```", "\n".join(line[:400] for line in findings.splitlines()[:40]), "```"]
    else:
        lines.append("none")
    return lines


def median(values):
    """The median of a non-empty list of numbers."""
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2
