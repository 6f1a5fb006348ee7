"""Lookahead (Zhang et al., 2019) in the form hlb-CIFAR10 and airbench train with.

Every few steps a slow copy of the weights moves part of the way towards the fast ones, and the
fast ones are reset to it. The part it moves shrinks as the run ends (the slow copy's decay grows
with the cube of the run's progress), so late in training, when the steps are small and noisy,
the weights average over many of them. The batch norms' running statistics are averaged with
the weights, so that they match the weights they end with. At the end the model takes the slow copy.
"""

import torch
from torch import nn

# airbench's cadence and most decay: the slow copy moves every 5 steps, keeping up to 0.95⁵ of itself.
EVERY_STEPS = 5
MOST_DECAY = 0.95**EVERY_STEPS


class Lookahead:
    """The slow copy of a model's floating-point state, updated by `step` after each training step."""

    def __init__(self, model: nn.Module, total_steps: int):
        self.total_steps = total_steps
        self.steps = 0
        # The model's floating-point tensors (weights and batch-norm statistics), which the
        # optimizer updates in place, and their slow copies.
        self.fast = [v for v in model.state_dict().values() if v.is_floating_point()]
        self.slow = [v.detach().clone() for v in self.fast]

    @torch.no_grad()
    def step(self) -> None:
        """After each training step: every EVERY_STEPS steps, move the slow copy towards the
        weights by a share that shrinks as the run ends, and reset the weights to it."""
        self.steps += 1
        if self.steps % EVERY_STEPS == 0:
            self._pull(MOST_DECAY * (self.steps / self.total_steps) ** 3)

    @torch.no_grad()
    def finish(self) -> None:
        """The model takes the slow copy (the run's last steps since its last update are dropped)."""
        self._pull(1.0)

    def _pull(self, decay: float) -> None:
        for fast, slow in zip(self.fast, self.slow):
            slow.lerp_(fast, 1 - decay)
            fast.copy_(slow)
