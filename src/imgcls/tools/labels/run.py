"""`imgcls data labels DATA`: out-of-fold probabilities, then cleanlab's findings, written as
label_issues.csv, relabel.csv and label_issues.html in the output folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from imgcls.tools.labels.findings import LabelFindings, find_issues, write_tables
from imgcls.tools.labels.folds import LabelsRequest, out_of_fold
from imgcls.tools.labels.page import write_page


@dataclass(frozen=True)
class LabelsResult:
    findings: LabelFindings
    issues_csv: Path
    relabel_csv: Path
    page: Path


def find_label_issues(request: LabelsRequest,
                      say: Callable[[str], None] = print) -> LabelsResult:
    oof = out_of_fold(request, say)
    findings = find_issues(oof)
    issues_csv, relabel_csv = write_tables(findings, request.output)
    page = write_page(findings, oof.image_set.images[torch.as_tensor(oof.items)],
                      request.output / "label_issues.html", source=oof.image_set.source,
                      folds=request.folds)
    return LabelsResult(findings, issues_csv, relabel_csv, page)
