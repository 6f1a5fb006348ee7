"""Muon for conv filters, SGD for the rest, in one optimizer (Keller Jordan, 2024: "Muon: an
optimizer for hidden layers"; airbench94_muon trains CIFAR-10 to 94% in 8 epochs with it, where
airbench94's SGD takes 9.9).

A filter bank's momentum is orthogonalised before it is applied: a few Newton–Schulz iterations
push all of the matrix's singular values (one row per output filter) towards 1, so that every
direction the filters can move in takes a step of the same size, instead of the few directions
that dominate a raw gradient taking almost all of it. Each filter bank is also scaled back to a
fixed norm before every step (airbench94_muon's): a batch norm follows every conv, so the norm
does not change what the network computes, and holding it fixed holds the effective step size
to the learning rate. Biases, batch-norm shifts and the linear head take plain Nesterov SGD
steps (Nesterov's where asked). torch.optim.Muon takes 2-D weights only; a conv's are 4-D.
"""

import torch
from torch.optim.sgd import sgd

# Coefficients of the quintic Newton–Schulz iteration, chosen (Jordan, 2024) to raise small
# singular values fast: the result has singular values between about 0.7 and 1.2, not exactly 1,
# which trains as well as the exact orthogonalisation at a fraction of its cost.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
# Three iterations, as airbench94_muon: enough for a filter bank of at most 256 rows.
NEWTON_SCHULZ_STEPS = 3


def orthogonalise(matrix: torch.Tensor) -> torch.Tensor:
    """`matrix` (rows, columns) with its singular values pushed towards 1 (see the module)."""
    a, b, c = NEWTON_SCHULZ
    x = matrix.bfloat16()
    x = x / (x.norm() + 1e-7)  # every singular value at most 1, where the iteration converges
    wide = x.T if x.size(0) > x.size(1) else x  # the iteration's cost grows with rows²
    for _ in range(NEWTON_SCHULZ_STEPS):
        gram = wide @ wide.T
        wide = a * wide + (b * gram + c * gram @ gram) @ wide
    return (wide.T if x.size(0) > x.size(1) else wide).to(matrix.dtype)


class MuonSGD(torch.optim.Optimizer):
    """Muon steps for the groups with `orthogonalise=True` (conv filters), SGD with momentum and
    weight decay for the others, so that one schedule and one `step` drive both."""

    def __init__(self, groups: list[dict], lr: float, momentum: float, nesterov: bool, weight_decay: float):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, orthogonalise=False)
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure=None) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            if group["orthogonalise"]:
                self._muon_step(params, buffers, group["lr"], group["momentum"])
            else:
                grads = [p.grad for p in params]
                sgd(
                    params, grads, buffers, weight_decay=group["weight_decay"], momentum=group["momentum"], lr=group["lr"], dampening=0.0, nesterov=group["nesterov"], maximize=False
                )
            for p, buffer in zip(params, buffers):
                self.state[p]["momentum_buffer"] = buffer

    @staticmethod
    def _muon_step(params: list[torch.Tensor], buffers: list, lr: float, momentum: float) -> None:
        for i, p in enumerate(params):
            if buffers[i] is None:
                buffers[i] = torch.zeros_like(p.grad)
            buffers[i].mul_(momentum).add_(p.grad)
            update = p.grad.add(buffers[i], alpha=momentum)  # Nesterov: look along the velocity
            p.mul_(len(p) ** 0.5 / p.norm())  # the fixed norm: √(output filters)
            p.add_(orthogonalise(update.flatten(1)).view_as(p), alpha=-lr)
