"""The rows of Cui et al.'s Tables 1 (CIFAR-10) and 2 (BraTS): one definition for both.

Each table has the same six rows: the lower bound (the teacher, CE on the labelled part), four
students (CE on the true labels plus CE, β-CE ("BCE"), GCE or SCE on the teacher's pseudo-labels)
and the upper bound (CE on every true label).  A student's loss hyper-parameters are the paper's
for the dataset (:data:`robustlabel.losses.PAPER_HPARAMS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..engine.teacher_student import StudentSpec
from ..losses.hparams import paper_params

#: the row kinds: the teacher (lower bound), a student, the upper bound
KINDS: tuple[str, ...] = ("teacher", "student", "upper")


@dataclass(frozen=True)
class Row:
    """One row of a Cui et al. table.

    Attributes:
        name: the row label of the table (``"Lower bound"``, ``"GCE"``, ...).
        key: the row's key in run keys and folders (``"lower"``, ``"gce"``, ``"upper"``).
        kind: ``"teacher"`` (labelled part only), ``"student"`` (+ pseudo-labels) or ``"upper"``
            (every true label).
        pseudo_loss: a student's :func:`~robustlabel.losses.get_loss` name on the pseudo-labels.

    Raises:
        ValueError: an unknown ``kind``, or a student without ``pseudo_loss``.
    """

    name: str
    key: str
    kind: str
    pseudo_loss: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if (self.kind == "student") != (self.pseudo_loss is not None):
            raise ValueError("a student row (and only a student row) names its pseudo_loss")

    def pseudo_params(self, dataset: str) -> dict[str, float]:
        """The paper's hyper-parameters of ``pseudo_loss`` on ``dataset`` (``"brats"`` or ``"cifar10"``;
        ``{}`` for CE and for the teacher / upper bound)."""
        return paper_params(self.pseudo_loss, dataset) if self.pseudo_loss else {}

    def student(self, dataset: str, params: Mapping[str, float] | None = None, name: str | None = None) -> StudentSpec:
        """The orchestration's student spec of this row (``params``: default the paper's)."""
        if self.kind != "student":
            raise ValueError(f"row {self.name!r} is not a student")
        return StudentSpec(name or self.key, str(self.pseudo_loss),
                           dict(self.pseudo_params(dataset) if params is None else params))


LOWER = Row("Lower bound", "lower", "teacher")
STUDENTS: tuple[Row, ...] = tuple(
    Row(name, loss, "student", loss) for name, loss in (("CE", "ce"), ("BCE", "bce"), ("GCE", "gce"), ("SCE", "sce"))
)
UPPER = Row("Upper bound", "upper", "upper")
#: the six rows, in the tables' order
ROWS: tuple[Row, ...] = (LOWER, *STUDENTS, UPPER)
