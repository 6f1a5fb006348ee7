import pytest
import torch

from training.config import TrainConfig
from training.engine import Finished, build_model, make_optimizer, make_schedule, run
from training.muon import MuonSGD, orthogonalise

MUON = TrainConfig(
    model="cnn-classifier", model_overrides={"widths": (8, 16, 16)}, optimizer="muon", lr=0.5, momentum=0.85, nesterov=True,
    weight_decay=2e-3, norm_lr_scale=64, lr_schedule="linear", batch_size=16, epochs=8, device="cpu", precision="fp32",
)


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(matrix.float())


@pytest.mark.parametrize("shape", [(16, 72), (72, 16)])
def test_orthogonalise_evens_out_the_directions_of_a_lopsided_matrix(shape):
    torch.manual_seed(0)
    rows, columns = shape
    # Singular values spread thirtyfold: a raw gradient's few large directions would take almost
    # all of a plain step.
    u, _ = torch.linalg.qr(torch.randn(rows, rows))
    v, _ = torch.linalg.qr(torch.randn(columns, columns))
    spread = torch.logspace(0, -1.5, min(shape))
    matrix = u[:, : len(spread)] @ torch.diag(spread) @ v[:, : len(spread)].T
    evened = singular_values(orthogonalise(matrix))
    assert evened.shape == spread.shape and orthogonalise(matrix).shape == matrix.shape
    # Three quintic steps leave them between about 0.7 and 1.2: not exactly 1 (see training.muon).
    assert (evened > 0.6).all() and (evened < 1.3).all()


def test_muon_orthogonalises_the_conv_filters_and_gives_every_bias_the_norms_rate():
    model = build_model(MUON, torch.device("cpu"))
    optimizer = make_optimizer(MUON, model)
    assert isinstance(optimizer, MuonSGD)
    rest, biases, filters = optimizer.param_groups
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert filters["orthogonalise"] and all(p.dim() == 4 and p.requires_grad for p in filters["params"])
    assert len(filters["params"]) == 6  # two convs in each of three groups; the whitening filters are frozen
    assert all(p.dim() == 1 for p in biases["params"]) and model.features[0].conv.bias in biases["params"]
    assert rest["params"] == [model.head.weight]
    assert len(rest["params"]) + len(biases["params"]) + len(filters["params"]) == len(trainable)
    assert (filters["lr"], filters["momentum"]) == (MUON.filter_lr, MUON.filter_momentum)
    assert biases["lr"] == 64 * rest["lr"]


def test_a_muon_step_holds_each_filter_bank_at_its_norm_and_moves_every_direction_alike():
    model = build_model(MUON, torch.device("cpu"))
    optimizer = make_optimizer(MUON, model)
    *_, filters = optimizer.param_groups
    filter_bank = filters["params"][-1]  # 16 filters of 16×3×3
    filter_bank.data.mul_(3.0)  # off its norm: the step first scales it back
    with torch.no_grad():
        held = filter_bank * (len(filter_bank) ** 0.5 / filter_bank.norm())
    model(torch.randn(4, 3, 32, 32)).square().sum().backward()
    optimizer.step()
    step = (held - filter_bank.detach()).flatten(1) / filters["lr"]
    # The step is the orthogonalised momentum, whatever the gradient's shape: its 16 directions
    # all move by about the same amount.
    assert singular_values(step).min() > 0.5 and singular_values(step).max() < 1.5


def test_one_schedule_scales_every_group_of_muon():
    model = build_model(MUON, torch.device("cpu"))
    optimizer = make_optimizer(MUON, model)
    schedule = make_schedule(MUON, optimizer, total_steps=10)
    starting = [group["lr"] for group in optimizer.param_groups]
    for _ in range(5):
        optimizer.step()
        schedule.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([lr / 2 for lr in starting])


def test_muon_learns_a_learnable_task(tiny_data):
    result = [e for e in run(MUON) if isinstance(e, Finished)][0]
    assert result.test_acc > 0.5
