"""Stage-2 survival branch: fixed standardiser, zero-start head, H-free regularisers, branch
learning rate, and that the standardiser survives saving, loading and checkpoints (issue 11)."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ctsurv.errors import ConfigError
from ctsurv.survival.regularizers import alignment, dispersion_continuous
from ctsurv.vlm.checkpoint import load_trainable_state, trainable_state
from ctsurv.vlm.survival import SurvivalBranch, SurvivalLossWeights, survival_branch_loss
from ctsurv.vlm.trainer import param_groups


def _pooled(n=40, h=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    # like the demo: a large common part, tiny differences between patients
    return 3.0 + 0.07 * torch.randn(n, h, generator=g)


def _followup(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g) * 500 + 1, (torch.rand(n, generator=g) < 0.6).float()


def test_fitted_standardiser_gives_zero_mean_unit_std_on_its_data():
    z = _pooled()
    z[:, 3] = 2.5  # a constant dimension is only centred, never divided by ~0
    branch = SurvivalBranch(16)
    assert torch.equal(branch.standardize(z), z)  # identity before the fit
    info = branch.fit_standardizer(z)
    zs = branch.standardize(z)
    assert info["patients"] == 40
    assert zs.mean(0).abs().max() < 1e-5
    keep = [d for d in range(16) if d != 3]
    assert torch.allclose(zs[:, keep].std(0), torch.ones(15), atol=1e-5)
    assert torch.equal(zs[:, 3], torch.zeros(40)) and branch.z_std[3] == 1
    with pytest.raises(ValueError):
        branch.fit_standardizer(z[:, :8])


@pytest.mark.parametrize("head,bins", [("deepsurv", None), ("deephit", 4)])
@pytest.mark.parametrize("hidden", [(), (8,)])
def test_head_starts_at_the_null_model(head, bins, hidden):
    branch = SurvivalBranch(16, head, bins, head_hidden=hidden)
    branch.fit_standardizer(_pooled())
    _, out = branch(_pooled(seed=5))
    assert torch.equal(out, torch.zeros_like(out))  # same risk (DeepHit: uniform pmf) for everyone


def test_regularisers_do_not_depend_on_the_scale_of_z_or_on_h():
    time, event = _followup()
    w = SurvivalLossWeights()
    values = []
    for scale in (1.0, 10.0):
        torch.manual_seed(0)
        branch = SurvivalBranch(16, bottleneck=8)
        nn.init.normal_(branch.adaptor.up.weight, std=0.1)  # as after some training: z_surv != z
        z = scale * _pooled()
        branch.fit_standardizer(z)
        z_surv, out = branch(z)
        parts = survival_branch_loss("deepsurv", branch.standardize(z), z_surv, out, time, event, weights=w)
        values.append((parts["dispersion"].item(), parts["alignment"].item()))
    assert values[0] == pytest.approx(values[1], rel=1e-4)
    # per-dimension means: the same latents repeated (H -> 2H) give the same terms
    zs, zsurv = torch.randn(40, 16), torch.randn(40, 16)
    one = survival_branch_loss("deepsurv", zs, zsurv, torch.zeros(40, 1), time, event)
    two = survival_branch_loss("deepsurv", torch.cat([zs, zs], 1), torch.cat([zsurv, zsurv], 1), torch.zeros(40, 1),
                               time, event)
    for key in ("dispersion", "alignment"):
        assert float(one[key]) == pytest.approx(float(two[key]), rel=1e-5)
    assert float(one["dispersion"]) == pytest.approx(float(dispersion_continuous(zsurv, time, event)) / 16, rel=1e-6)
    # the paper's alignment (the default): the mean L2 norm over all patients, per sqrt(H)
    assert float(one["alignment"]) == pytest.approx(float((zsurv - zs).norm(dim=1).mean()) / 4, rel=1e-5)
    squared = survival_branch_loss("deepsurv", zs, zsurv, torch.zeros(40, 1), time, event,
                                   weights=SurvivalLossWeights(alignment_form="squared"))
    assert float(squared["alignment"]) == pytest.approx(float(alignment(zsurv, zs, event)) / 16, rel=1e-6)
    assert float(one["alignment"]) != pytest.approx(float(squared["alignment"]), rel=1e-2)


def test_branch_weights_round_trip_the_standardiser(tmp_path):
    z = _pooled()
    branch = SurvivalBranch(16, "deephit", 4, head_hidden=(8,))
    branch.fit_standardizer(z)
    nn.init.normal_(branch.head.net[-1].weight)
    save_file({k: v.contiguous() for k, v in branch.state_dict().items()}, str(tmp_path / "b.safetensors"))
    again = SurvivalBranch(**branch.spec())
    again.load_weights(load_file(str(tmp_path / "b.safetensors")))
    assert torch.equal(again.z_mean, branch.z_mean) and torch.equal(again.z_std, branch.z_std)
    assert torch.equal(again(z)[1], branch(z)[1])
    # a branch saved before the standardiser existed: loads as the identity, predicts as before
    old = {k: v for k, v in branch.state_dict().items() if k not in SurvivalBranch.STANDARDIZER}
    legacy = SurvivalBranch(**branch.spec())
    legacy.load_weights(old)
    assert torch.equal(legacy.z_mean, torch.zeros(16)) and torch.equal(legacy.z_std, torch.ones(16))
    assert torch.equal(legacy(z)[1], branch.head(branch.adaptor(z)))
    with pytest.raises(RuntimeError, match="part of the standardiser"):
        SurvivalBranch(**branch.spec()).load_weights({**old, "z_mean": branch.z_mean})
    with pytest.raises(RuntimeError, match="do not fit"):
        SurvivalBranch(16, "deephit", 4).load_weights(branch.state_dict())  # another head (a hidden layer more)
    with pytest.raises(RuntimeError, match="size mismatch"):
        SurvivalBranch(16, "deephit", 5, head_hidden=(8,)).load_weights(branch.state_dict())


class _Joint(nn.Module):
    def __init__(self):
        super().__init__()
        self.vlm = nn.Linear(4, 4)
        self.branch = SurvivalBranch(4, bottleneck=2)


def test_checkpoints_carry_the_standardiser(tmp_path):
    model = _Joint()
    model.branch.fit_standardizer(_pooled(h=4))
    state = trainable_state(model)
    assert {"branch.z_mean", "branch.z_std"} <= set(state)
    save_file(state, str(tmp_path / "t.safetensors"))
    fresh = _Joint()
    load_trainable_state(fresh, tmp_path / "t.safetensors")
    assert torch.equal(fresh.branch.z_mean, model.branch.z_mean) and torch.equal(fresh.branch.z_std, model.branch.z_std)


def test_branch_learning_rate_is_its_own_parameter_group():
    model = _Joint()
    model.vlm.bias.requires_grad_(False)
    groups = param_groups(model, 2e-3, {"branch.": 2e-2})
    assert [g["lr"] for g in groups] == [2e-3, 2e-2]
    assert groups[0]["params"] == [model.vlm.weight]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.branch.parameters()}
    opt = torch.optim.AdamW(groups, lr=2e-3)
    assert [g["lr"] for g in opt.param_groups] == [2e-3, 2e-2]
    opt.load_state_dict(opt.state_dict())  # resumes under the same grouping
    assert [g["lr"] for g in param_groups(model, 1e-4)] == [1e-4]  # stage 1: one group, as before
    with pytest.raises(ConfigError, match="match no trainable"):
        param_groups(model, 1e-3, {"decoder.": 1e-2})
