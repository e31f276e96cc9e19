"""Task arithmetic (Ilharco et al. 2023): fine-tune on the forget set, then subtract alpha times the change.

The forget task's vector is tau = theta_ft - theta, where theta_ft is the model fine-tuned
further on the forget set (:func:`edit.finetune_forget.reinforce`); negating it, theta - alpha
tau, moves the weights away from what the forget set taught them. The fine-tuning runs on the
masked elements of a Location in place and restores them, so the only extra memory is the
mask's, and the Edit's deltas are tau itself, scaled in place: no copy of the model is held.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Literal

from edit.edit import Delta, Edit, EditError
from edit.edit_request import Forget
from edit.finetune_forget import reinforce
from edit.forget_request import ForgetError, ForgetRequest
from locate.location import Location


@dataclass(frozen=True)
class TaskVectorSettings:
    """Settings of task-vector negation.

    The tensors: without a Location, the gradient methods' Fisher Location (top 1% of elements
    by forget/retain Fisher ratio, embeddings included). Ilharco et al. fine-tune every weight;
    here the whole model would need Adam's state and the saved originals for every element
    (about four copies of it), and on the default world model the ratio mask is mostly the
    forgotten people's own name-token embeddings, which no retained fact reads, so negating
    tau there costs retained facts little. Defaults from a short check on the default world
    model (forget01 and one person): at this budget and learning rate alpha 1 forgets only part
    of a person, alpha 2 most of it with retained facts nearly all kept, and larger alphas (or
    a larger learning rate) forget more but cost retained facts and, first, neighbours (people
    sharing a forgotten object): tau also raises the forgotten objects' own tokens, and
    negating it lowers them for everybody.

    Examples:
        >>> TaskVectorSettings().alpha, TaskVectorSettings().fisher_params
        (2.0, 'all')
        >>> TaskVectorSettings(alpha=0)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ForgetError: task-vector alpha must be > 0, got 0

    Args:
        alpha: The edit is -alpha x tau; 1 is plain negation, larger pushes further.
        steps: Adam steps of the fine-tuning on the forget set (each one forget batch).
        lr: Its learning rate.
        batch_size: Forget examples per step.
        check_samples: Retain and forget examples whose accuracy under the fine-tuned weights
            is recorded (``metrics["checks"]``).
        fisher_top_fraction, fisher_examples, fisher_params: Without a Location: the Fisher
            Location's fraction of elements, examples each of forget and retain data, and
            which parameters it ranks ("all" or "blocks"), as the gradient methods have them.
        seed: Seeds the batch order and the samples.
    """

    alpha: float = 2.0
    steps: int = 30
    lr: float = 3e-3
    batch_size: int = 32
    check_samples: int = 50
    fisher_top_fraction: float = 0.01
    fisher_examples: int | None = 128
    fisher_params: Literal["all", "blocks"] = "all"
    seed: int = 0

    def __post_init__(self):
        if not self.alpha > 0 or not math.isfinite(self.alpha):
            raise ForgetError(f"task-vector alpha must be > 0, got {self.alpha}")
        if not self.lr > 0 or min(self.steps, self.batch_size, self.check_samples) < 1:
            raise ForgetError("task-vector lr must be > 0, steps, batch_size and check_samples >= 1")


def task_vector(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    settings: TaskVectorSettings | None = None,
    apply: bool = True,
    progress: bool = True,
) -> Edit:
    """Negate the forget set's task vector: the edit is -alpha (theta_ft - theta) on the masked elements.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world", device="cpu")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> s = TaskVectorSettings(steps=10, lr=1e-2, check_samples=10, fisher_examples=64)
        >>> e = task_vector(h, r, settings=s, progress=False)
        >>> e.method, e.location.method, h.score(list(r.forget)).accuracy < 0.8
        ('task-vector', 'fisher', True)
        >>> e.revert(h.model).applied
        False

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        request: What to forget (fine-tuned on) and keep (for the Fisher Location).
        location: Whose ``parameter_mask`` bounds the edit; None: a Fisher Location of the request.
        settings: :class:`TaskVectorSettings`.
        apply: Apply the edit to ``handle.model`` before returning it.
        progress: Show a progress bar (stderr).

    Raises:
        ForgetError: a Location that selects no parameter, data with nothing to score.
        EditError: a non-finite fine-tuning loss or edit (the model is left as it was).
    """
    s = settings or TaskVectorSettings()
    t0 = time.perf_counter()
    tau = reinforce(
        handle,
        request,
        location,
        steps=s.steps,
        lr=s.lr,
        batch_size=s.batch_size,
        check_samples=s.check_samples,
        fisher_top_fraction=s.fisher_top_fraction,
        fisher_examples=s.fisher_examples,
        fisher_params=s.fisher_params,
        seed=s.seed,
        progress=progress,
    )
    # tau's deltas are scaled where they lie: the Edit holds no other copy of them.
    deltas = {n: Delta(dense=d.dense.mul_(-s.alpha)) for n, d in tau.deltas.items()}
    if not all(d.dense.isfinite().all() for d in deltas.values()):
        raise EditError(f"task-vector alpha {s.alpha} gives non-finite deltas; the model is unchanged")
    m = tau.metrics
    metrics = {
        "finetune_steps": m["steps"],
        "finetune_loss": m["loss_forget"],
        "finetuned_checks": m["checks"],
        "tau_norm": math.sqrt(sum(float(d.dense.double().square().sum()) for d in deltas.values())) / s.alpha,
        "masked_elements": m["masked_elements"],
        "locate_seconds": m["locate_seconds"],
        "seconds": time.perf_counter() - t0,
    }
    edit = Edit(
        "task-vector", Forget.of(request), deltas, tau.location, asdict(s), metrics, hashes_before=tau.hashes_before
    )
    return edit.apply(handle.model) if apply else edit


__all__ = ["TaskVectorSettings", "task_vector"]
