"""Which labels are wrong, from out-of-fold probabilities: confident learning as cleanlab
implements it (find_label_issues, get_label_quality_scores, estimate_joint), not re-derived.

Writes label_issues.csv (item,given,suggested,quality,is_issue; worst first), relabel.csv
(path,label: the flagged items with the suggested class, for the user to edit and pass to
`imgcls train --relabel`) and outliers.csv (item,outlier_score: cleanlab's out-of-distribution
score from the same probabilities, least typical first); label_issues.html is page.py's.
"""

from __future__ import annotations

import contextlib
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgcls.data.label_fixes import item_names
from imgcls.tools.labels.folds import OutOfFold
from imgcls.utils.csv_safe import safe_row
from imgcls.utils.files import write_text


@dataclass(frozen=True)
class LabelFindings:
    names: list[str]  # item per analysed image, as relabel files name it
    given: np.ndarray  # class index per analysed image
    suggested: np.ndarray  # the out-of-fold models' class
    quality: np.ndarray  # cleanlab's label quality score in [0, 1]
    is_issue: np.ndarray  # bool: what confident learning flags
    noise_matrix: np.ndarray  # [given, true] estimated counts of the analysed images
    outlier_score: np.ndarray  # cleanlab's OutOfDistribution score in [0, 1]: low = atypical
    class_names: list[str]

    @property
    def order(self) -> np.ndarray:
        """Worst first: flagged before unflagged, then by quality."""
        return np.lexsort((self.quality, ~self.is_issue))


def find_issues(oof: OutOfFold) -> LabelFindings:
    from cleanlab.count import estimate_joint
    from cleanlab.filter import find_label_issues
    from cleanlab.outlier import OutOfDistribution
    from cleanlab.rank import get_label_quality_scores

    given = oof.image_set.labels.numpy()[oof.items]
    names = item_names(oof.image_set)
    probabilities = _full_rank(oof.probabilities)
    issues = find_label_issues(given, probabilities, filter_by="prune_by_noise_rate")
    joint = estimate_joint(given, probabilities)
    return LabelFindings(
        names=[names[i] for i in oof.items],
        given=given, suggested=probabilities.argmax(1),
        quality=get_label_quality_scores(given, probabilities),
        is_issue=np.asarray(issues, dtype=bool),
        noise_matrix=joint * len(given),
        outlier_score=_quietly(lambda: OutOfDistribution().fit_score(
            pred_probs=probabilities, labels=given)),
        class_names=list(oof.image_set.class_names))


def write_tables(findings: LabelFindings, folder: Path) -> tuple[Path, Path]:
    names = findings.class_names
    issues = io.StringIO()
    writer = csv.writer(issues)
    writer.writerow(["item", "given", "suggested", "quality", "is_issue"])
    relabel = io.StringIO()
    relabels = csv.writer(relabel)
    relabels.writerow(["path", "label"])
    for row in findings.order:
        given, suggested = names[findings.given[row]], names[findings.suggested[row]]
        writer.writerow(safe_row([findings.names[row], given, suggested,
                                  f"{findings.quality[row]:.6f}",
                                  int(findings.is_issue[row])]))
        if findings.is_issue[row]:
            relabels.writerow(safe_row([findings.names[row], suggested]))
    issues_file, relabel_file = folder / "label_issues.csv", folder / "relabel.csv"
    write_text(issues_file, issues.getvalue())
    write_text(relabel_file, relabel.getvalue())
    write_text(folder / "outliers.csv", _outliers(findings))
    return issues_file, relabel_file


def _outliers(findings: LabelFindings) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["item", "outlier_score"])
    for row in np.argsort(findings.outlier_score, kind="stable"):
        writer.writerow(safe_row([findings.names[row], f"{findings.outlier_score[row]:.6f}"]))
    return buffer.getvalue()


def _quietly(score):
    """cleanlab's OutOfDistribution prints a line as it fits: not part of our output."""
    with contextlib.redirect_stdout(io.StringIO()):
        return score()


def _full_rank(probabilities: np.ndarray) -> np.ndarray:
    """cleanlab needs rows that sum to 1; a float32 softmax can miss by a rounding step."""
    clipped = np.clip(probabilities.astype(np.float64), 1e-12, None)
    return clipped / clipped.sum(axis=1, keepdims=True)
