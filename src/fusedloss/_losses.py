"""The loss objects, one per registry entry: what ``fusedloss.<name>`` is.

Elementwise and multiclass losses are ``_dispatch.Loss``; a sequence loss, whose call takes lengths, is its
subclass ``_ctc.SequenceLoss``. Everything that needs a loss by name looks it up in ``LOSSES``.
"""

from __future__ import annotations

from ._ctc import SequenceLoss
from ._dispatch import Loss
from ._spec import REGISTRY

_CLASSES = {"elementwise": Loss, "multiclass": Loss, "sequence": SequenceLoss}

LOSSES = {name: _CLASSES[spec.kind](spec) for name, spec in REGISTRY.items()}
