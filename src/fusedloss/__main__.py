"""``python -m fusedloss``: the same as the ``fusedloss`` command."""

import sys

from .cli import main

sys.exit(main())
