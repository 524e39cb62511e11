"""The data doctor's console summary: tables of a DoctorReport (doctor.py finds, this file
only formats), for `imgcls data check`. The JSON report (DoctorReport.to_json) holds every
finding; the console lists up to CONSOLE_ROWS of each table."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.table import Table
from rich.text import Text

from imgcls.data.doctor import DoctorReport, Finding, SizeSummary, display

CONSOLE_ROWS = 40  # problems listed on the console; the JSON report holds them all

_SEVERITY_STYLE = {"error": "red", "warning": "yellow", "note": "cyan"}


def print_report(report: DoctorReport, console: Console) -> None:
    """Tables: problems, conversions, duplicates, classes, sizes; then one summary line."""
    problems = [f for f in report.problems if f.severity != "note"]
    if problems:
        console.print(_problem_table(report, problems))
    notes = [f for f in report.problems if f.severity == "note"]
    if notes:
        console.print(_note_table(report, notes))
    if report.duplicates:
        console.print(_duplicate_table(report))
    if report.class_counts:
        console.print(_class_table(report))
    if report.imbalance_ratio is not None:
        console.print(f"imbalance (largest / smallest non-empty class): "
                      f"{report.imbalance_ratio:.2f}")
    if report.sizes.count:
        console.print(_size_table(report.sizes))
        buckets = ", ".join(f"{label}: {n}" for label, n in report.sizes.buckets.items() if n)
        console.print(f"shorter side, pixels: {buckets}")
    console.print(_summary_line(report))


def _problem_table(report: DoctorReport, problems: list[Finding]) -> Table:
    table = Table("severity", "kind", "path", "reason", title="Problems")
    for finding in problems[:CONSOLE_ROWS]:
        table.add_row(Text(finding.severity, style=_SEVERITY_STYLE[finding.severity]),
                      finding.kind, Text(report.display_path(finding.path)),
                      Text(finding.reason))
    if len(problems) > CONSOLE_ROWS:
        table.add_row("", "", Text(f"... and {len(problems) - CONSOLE_ROWS} more "
                                   f"(all in --report)"), "")
    return table


def _note_table(report: DoctorReport, notes: list[Finding]) -> Table:
    table = Table("kind", "files", "for example", "what decoding does",
                  title="Conversions (notes, not errors)")
    by_kind: dict[str, list[Finding]] = defaultdict(list)
    for note in notes:
        by_kind[note.kind].append(note)
    for kind, group in sorted(by_kind.items()):
        table.add_row(kind, str(len(group)), Text(report.display_path(group[0].path)),
                      Text(group[0].reason))
    return table


def _duplicate_table(report: DoctorReport) -> Table:
    table = Table("kind", "files", "paths", "classes", title="Exact duplicates (same bytes)")
    for group in report.duplicates[:CONSOLE_ROWS]:
        classes = ", ".join(sorted({display(name) if name else "-" for name in group.classes}))
        table.add_row(", ".join(group.kinds), str(len(group.paths)),
                      Text("\n".join(report.display_path(path) for path in group.paths)),
                      Text(classes))
    if len(report.duplicates) > CONSOLE_ROWS:
        table.add_row("", "", Text(f"... and {len(report.duplicates) - CONSOLE_ROWS} more "
                                   f"groups (all in --report)"), "")
    return table


def _class_table(report: DoctorReport) -> Table:
    splits = list(report.split_counts or {})
    table = Table("class", *splits, "total", title="Classes (readable images)")
    for name, total in report.class_counts.items():
        per_split = [str((report.split_counts or {})[split].get(name, 0)) for split in splits]
        table.add_row(Text(display(name)), *per_split,
                      Text(str(total), style="red" if total == 0 else ""))
    return table


def _size_table(sizes: SizeSummary) -> Table:
    table = Table("", "min", "median", "max", title=f"Image sizes ({sizes.count} images)")
    for axis, values in (("width", sizes.width), ("height", sizes.height)):
        if values is not None:
            table.add_row(axis, *(f"{value:g}" for value in values))
    return table


def _summary_line(report: DoctorReport) -> Text:
    errors = report.count("error")
    line = Text(f"{report.files_checked} files checked in {display(report.source)}: ")
    line.append(f"{errors} errors", style="red" if errors else "green")
    line.append(f", {report.count('warning')} warnings, {report.count('note')} notes, "
                f"{len(report.duplicates)} duplicate groups, {len(report.ignored)} non-image "
                f"files ignored")
    return line
