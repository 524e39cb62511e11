"""label_issues.html: the flagged images as thumbnails grouped by given -> suggested class, the
estimated noise matrix and the errors per class; self-contained, like report.html."""

from __future__ import annotations

from pathlib import Path

import jinja2
import torch

from imgcls.evaluation import charts
from imgcls.evaluation.report import data_uri
from imgcls.tools.labels.findings import LabelFindings
from imgcls.utils.files import write_text

THUMBS_PER_GROUP = 48  # a group of thousands would make a page no browser opens quickly


def write_page(findings: LabelFindings, images: torch.Tensor, target: Path, *, source: str,
               folds: int) -> Path:
    """`images`: uint8 [N, C, H, W], one per analysed item, in the findings' order."""
    names = findings.class_names
    template = jinja2.Environment(
        loader=jinja2.PackageLoader("imgcls.evaluation", "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    ).get_template("label_issues.html.j2")
    write_text(target, template.render(
        source=source, folds=folds, analysed=len(findings.given),
        flagged=int(findings.is_issue.sum()), class_names=names,
        per_class=[{"name": name, "count": int((findings.given == k).sum()),
                    "flagged": int((findings.is_issue & (findings.given == k)).sum())}
                   for k, name in enumerate(names)],
        noise=[{"name": name, "cells": [_cell(findings.noise_matrix[k, j], k == j)
                                        for j in range(len(names))]}
               for k, name in enumerate(names)],
        groups=_groups(findings, images)))
    return target


def _cell(value: float, diagonal: bool) -> dict:
    count = int(round(float(value)))
    return {"value": count, "kind": "zero" if count == 0 else ("" if diagonal else "off")}


def _groups(findings: LabelFindings, images: torch.Tensor) -> list[dict]:
    flagged = [row for row in findings.order if findings.is_issue[row]]
    pairs: dict[tuple[int, int], list[int]] = {}
    for row in flagged:
        pairs.setdefault((int(findings.given[row]), int(findings.suggested[row])), []).append(row)
    names = findings.class_names
    return [{"given": names[given], "suggested": names[suggested], "count": len(rows),
             "thumbs": [{"uri": data_uri(charts.thumbnail_png(images[row])),
                         "item": findings.names[row],
                         "quality": f"{float(findings.quality[row]):.3f}"}
                        for row in rows[:THUMBS_PER_GROUP]]}
            for (given, suggested), rows in sorted(pairs.items(),
                                                   key=lambda pair: -len(pair[1]))]
