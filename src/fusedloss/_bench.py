"""The two names ``fusedloss.torch``'s module benchmark takes from the benchmark setup, which lives in
``fusedloss.bench``; new code imports from there."""

from .bench.cases import format_shape
from .bench.timing import time_round_robin

__all__ = ["format_shape", "time_round_robin"]
