"""First-order MAML: MAML without the second derivatives.

Finn et al. (2017, section 5.2) observed that dropping the terms that come
from differentiating through the inner gradient step costs little accuracy
and saves the memory and time of a second backward pass. With learn2learn this
is the ``first_order=True`` flag of ``MAML``; everything else is
:class:`~l2l_omniglot.solvers.maml.MAMLSolver`.

Example::

    omnimeta run --solver fomaml
"""
from __future__ import annotations

from typing import ClassVar

from l2l_omniglot.solvers.maml import MAMLSolver


class FOMAMLSolver(MAMLSolver):
    name: ClassVar[str] = "fomaml"
    description: ClassVar[str] = ("First-order MAML: MAML without the derivatives through the inner steps "
                                  "(learn2learn's MAML wrapper, first_order=True)")
    paper: ClassVar[str] = "Finn, Abbeel and Levine, ICML 2017 (section 5.2); Nichol, Achiam and Schulman 2018"
    first_order: ClassVar[bool] = True
    #: Tuned on this project's 2-core CPU so that `omnimeta run --solver fomaml` finishes in under
    #: ten minutes (docs/results.md): small meta-batches, a zero head, many test-time steps.
    defaults: ClassVar[dict] = {"iterations": 3000, "meta_batch": 8, "meta_lr": 0.003, "val_every": 500}
