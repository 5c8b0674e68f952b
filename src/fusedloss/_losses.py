"""The loss objects, one per registry entry: what ``fusedloss.<name>`` is.

Elementwise and multiclass losses are ``_dispatch.Loss``; a sequence loss, whose call takes lengths, is its
subclass ``_ctc.SequenceLoss``; a pairwise loss, whose call takes two or three arrays (and a target), is
``_pairwise.PairwiseLoss``; an overlap loss (dice, tversky), whose value is a ratio of sums over
the pixels of each class, is ``_overlap.OverlapLoss``. Everything that needs a loss by name looks it up in ``LOSSES``.
"""

from __future__ import annotations

from ._ctc import SequenceLoss
from ._dispatch import Loss
from ._overlap import OverlapLoss
from ._pairwise import PairwiseLoss
from ._spec import REGISTRY

_CLASSES = {"elementwise": Loss, "multiclass": Loss, "sequence": SequenceLoss, "pairwise": PairwiseLoss,
            "overlap": OverlapLoss}

LOSSES = {name: _CLASSES[spec.kind](spec) for name, spec in REGISTRY.items()}
