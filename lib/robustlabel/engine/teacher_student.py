"""Teacher → pseudo-label → student, written once over pluggable steps (Cui et al., Sec. 2.2).

The seed paper's semi-supervised protocol, independent of the task (BraTS segmentation,
CIFAR-10 classification):

1. **Teacher** (round 0, job ``Job(0, "teacher", "teacher")``): trained with CE on the labelled
   part only (the paper's "lower bound"), then evaluated.
2. **Pseudo-label** the unlabelled pool with the teacher.
3. **Students** (round 1): one per :class:`StudentSpec` (e.g. CE, β-CE, GCE, SCE on the
   pseudo-labels, CE on the true labels), trained on the labelled part plus the pool's
   pseudo-labels, from scratch (``init="scratch"``, the paper) or from the teacher's weights
   (``init="teacher"``), then evaluated.
4. With ``rounds = K > 1`` (a single student spec), the student of round ``k`` is the teacher of
   round ``k + 1`` (steps 2–3 again).

What "train", "pseudo-label" and "evaluate" mean is the caller's: a :class:`TeacherStudentSteps`
object (a :class:`typing.Protocol`) supplies them.  The BraTS steps (TransBTS trainer, pool
pseudo-labeller, held-out Dice) are :class:`robustlabel.engine.segmentation_steps.SegmentationSteps`;
the CIFAR-10 classifier steps live with the Table-1 experiment.

Resume.  ``steps.recorded(job)`` may return a result recorded by an earlier run: such a job is
neither trained nor evaluated again, unless its model is needed (a teacher of a student still to
run, or a student that teaches the next round): then ``steps.train`` is called to get it (the
engine's training returns a finished run at once).  When every student of a round is recorded,
its teacher is not even pseudo-labelling.

Under ``torch.distributed`` every rank calls :func:`run_rounds` with its own steps object; the
order of the calls is the same on every rank, so collective steps (data-parallel training, a
sharded pool, scores broadcast from rank 0) line up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .config import INITS

__all__ = ["TEACHER", "STUDENT", "Job", "StudentSpec", "Outcome", "TeacherStudentSteps", "run_rounds"]

TEACHER = "teacher"
STUDENT = "student"

ModelT = TypeVar("ModelT")
PoolT = TypeVar("PoolT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class StudentSpec:
    """One student variant of a round.

    Attributes:
        name: the student's name, unique within a round (e.g. ``"gce"`` or ``"gce/q=0.7"``).
        loss: the loss on the pseudo-labelled part (a :func:`~robustlabel.losses.get_loss` name).
        params: that loss's hyper-parameters; ``None`` leaves them to the steps (e.g. the
            paper's defaults).
    """

    name: str
    loss: str
    params: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Job:
    """One training run of the orchestration: the teacher (``round == 0``) or a student.

    Attributes:
        round: ``0`` for the first teacher, ``k ≥ 1`` for the students of round ``k``.
        role: ``"teacher"`` or ``"student"``.
        name: ``"teacher"``, or the student's :attr:`StudentSpec.name`.
        loss: the loss on the pseudo-labelled part: ``"ce"`` for the teacher (which has none).
        params: the loss's hyper-parameters (``{}`` for the teacher; ``None``: the steps' default).
    """

    round: int
    role: str
    name: str
    loss: str = "ce"
    params: Mapping[str, float] | None = field(default_factory=dict)

    @classmethod
    def teacher(cls) -> Job:
        """The round-0 teacher: CE on the labelled part."""
        return cls(0, TEACHER, TEACHER, "ce", {})

    @classmethod
    def student(cls, round: int, spec: StudentSpec) -> Job:
        """The student ``spec`` of round ``round``."""
        return cls(round, STUDENT, spec.name, spec.loss, spec.params)


@dataclass
class Outcome(Generic[ModelT, ResultT]):
    """A finished job.

    Attributes:
        job: the job.
        result: what ``steps.evaluate`` returned (or ``steps.recorded``, when ``recorded``).
        model: what ``steps.train`` returned; ``None`` for a recorded job whose model was not needed.
        recorded: read back from an earlier run instead of trained and evaluated now.
    """

    job: Job
    result: ResultT
    model: ModelT | None = None
    recorded: bool = False


class TeacherStudentSteps(Protocol[ModelT, PoolT, ResultT]):
    """The task-specific steps of :func:`run_rounds`."""

    def train(self, job: Job, pool: PoolT | None, init: ModelT | None) -> ModelT:
        """Train ``job`` and return its model.

        Args:
            job: what to train (its ``role``, ``loss`` and ``params``).
            pool: ``None`` for the teacher (labelled part only); for a student, the pseudo-labelled
                pool that :meth:`predict_pool` returned for its teacher.
            init: the teacher's model when the student starts from it (``init="teacher"``), else ``None``.
        """
        ...

    def predict_pool(self, teacher_job: Job, teacher: ModelT) -> PoolT:
        """Pseudo-label the unlabelled pool with ``teacher`` (labels and per-case uncertainty)."""
        ...

    def evaluate(self, job: Job, model: ModelT) -> ResultT:
        """Score ``model`` (e.g. on the held-out test split) and return the job's result."""
        ...

    def recorded(self, job: Job) -> ResultT | None:
        """The result an earlier run recorded for ``job``, or ``None`` to train and evaluate it.

        Steps that subclass this protocol inherit this default: nothing is recorded.
        """
        return None


def run_rounds(
    steps: TeacherStudentSteps[ModelT, PoolT, ResultT],
    students: Sequence[StudentSpec],
    *,
    rounds: int = 1,
    init: str = "scratch",
    on_outcome: Callable[[Outcome[ModelT, ResultT]], None] | None = None,
) -> list[Outcome[ModelT, ResultT]]:
    """Run the teacher and ``rounds`` rounds of ``students`` (module docstring).

    Args:
        steps: train / predict-pool / evaluate (/ recorded) of the task.
        students: the student variants of each round; none: train and evaluate the teacher only
            (e.g. an upper bound trained on every true label).
        rounds: student rounds ``K ≥ 1``; ``K > 1`` needs exactly one student spec (it teaches
            the next round).
        init: ``"scratch"`` (the paper) or ``"teacher"`` (a student starts from its teacher's model).
        on_outcome: called with every finished job, in order (the teacher, then each round's students).

    Returns:
        The outcomes in the order of ``on_outcome``.

    Raises:
        ValueError: ``rounds < 1``, ``K > 1`` with other than one student, an unknown ``init`` or
            repeated student names.
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    if rounds > 1 and len(students) != 1:
        raise ValueError(f"rounds > 1 needs exactly one student (it teaches the next round), got {len(students)}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    names = [s.name for s in students]
    if len(set(names)) != len(names) or TEACHER in names:
        raise ValueError(f"student names must be unique and not {TEACHER!r}, got {names}")
    report = on_outcome or (lambda outcome: None)
    outcomes: list[Outcome[ModelT, ResultT]] = []

    def finish(outcome: Outcome[ModelT, ResultT]) -> Outcome[ModelT, ResultT]:
        outcomes.append(outcome)
        report(outcome)
        return outcome

    teacher_job = Job.teacher()
    earlier = steps.recorded(teacher_job)
    teacher: ModelT | None = None
    if earlier is None:
        teacher = steps.train(teacher_job, None, None)
        finish(Outcome(teacher_job, steps.evaluate(teacher_job, teacher), teacher))
    else:
        finish(Outcome(teacher_job, earlier, None, recorded=True))
    if not students:
        return outcomes

    for k in range(1, rounds + 1):
        jobs = [Job.student(k, spec) for spec in students]
        done = [steps.recorded(job) for job in jobs]
        teaches_next = k < rounds
        needed = [result is None or teaches_next for result in done]  # models to train (or read back)
        pool: PoolT | None = None
        if any(needed):
            if teacher is None:  # recorded round-0 teacher: read its model back
                teacher = steps.train(teacher_job, None, None)
            pool = steps.predict_pool(teacher_job, teacher)
        start = teacher if init == "teacher" else None
        round_models: list[ModelT | None] = []
        for job, result, need in zip(jobs, done, needed):
            model = steps.train(job, pool, start) if need else None
            round_models.append(model)
            if result is None:
                finish(Outcome(job, steps.evaluate(job, model), model))
            else:
                finish(Outcome(job, result, model, recorded=True))
        if teaches_next:
            teacher_job, teacher = jobs[0], round_models[0]
    return outcomes

