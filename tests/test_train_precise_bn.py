"""Precise BN (avsf.train.precise_bn, `train.precise_bn_batches`): the statistics it sets, what
it leaves alone, and a run that trains to the same weights with and without it."""

import json

import pytest
import torch
from torch import nn

import _train_fakes as F
from avsf import distributed as D
from avsf.config import ConfigError, build_config
from avsf.run import RunDir
from avsf.train import train
from avsf.train.precise_bn import recompute


class Net(nn.Module):
    """Linear -> BN -> a frozen BN, plus a buffer that each training forward changes (as
    DropPathway's running averages) and a random draw (as DropPathway's)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.frozen = nn.BatchNorm1d(4)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, batch):
        if self.training:
            self.seen += 1
            torch.rand(())
        return self.frozen(self.bn(self.fc(batch["x"])))


def _batches(n=5, size=6):
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(size, 3, generator=g) * 3 + 1} for _ in range(n)]


def test_statistics_are_the_population_average_and_nothing_else_moves():
    torch.manual_seed(0)
    net = Net().train()
    net.frozen.eval()  # as set_train_mode leaves a frozen layer
    net(_batches()[0])  # some running statistics to replace
    mean_buf, var_buf = net.bn.running_mean, net.bn.running_var
    frozen = {k: v.clone() for k, v in net.frozen.state_dict().items()}
    seen, tracked = net.seen.clone(), net.bn.num_batches_tracked.clone()
    rng = torch.get_rng_state()
    batches = _batches()

    assert recompute(net, iter(batches), 4, info=D.DistInfo(), precision="fp32", channels_last=False, seed=3) == 1

    with torch.no_grad():
        h = torch.cat([net.fc(b["x"]) for b in batches[:4]])  # the first 4 batches only
    torch.testing.assert_close(net.bn.running_mean, h.mean(0))
    torch.testing.assert_close(net.bn.running_var, h.var(0, unbiased=False))
    assert net.bn.running_mean is mean_buf and net.bn.running_var is var_buf  # the same buffers
    assert net.bn.momentum == 0.1
    for k, v in net.frozen.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    assert torch.equal(net.seen, seen) and torch.equal(net.bn.num_batches_tracked, tracked)
    assert torch.equal(torch.get_rng_state(), rng)  # the training stream is not consumed
    assert recompute(net, iter(batches), 0, info=D.DistInfo(), precision="fp32", channels_last=False, seed=3) == 0


def test_a_run_trains_to_the_same_weights_with_precise_bn(tmp_path):
    plain = F.toy_config(**{"train.epochs": 2})
    precise = F.toy_config(**{"train.epochs": 2, "train.precise_bn_batches": 3})
    train(plain, tmp_path / "plain", factories=F.TOYS, progress=False)
    train(precise, tmp_path / "precise", factories=F.TOYS, progress=False)
    a = RunDir(tmp_path / "plain").load_checkpoint()["model"]
    b = RunDir(tmp_path / "precise").load_checkpoint()["model"]
    for k in a:
        if k.startswith("bn.running_"):
            assert not torch.equal(a[k], b[k]), k  # recomputed
        else:
            assert torch.equal(a[k], b[k]), k  # every weight, and the batch counter
    rows = [json.loads(line) for line in (tmp_path / "precise" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["split"] == "val"]
    assert len(val) == 2 and all(r["precise_bn_s"] >= 0 for r in val)
    plain_rows = (tmp_path / "plain" / "metrics.jsonl").read_text()
    assert "precise_bn_s" not in plain_rows


def test_the_paper_scale_uses_the_authors_200_batches_and_bad_values_are_refused():
    assert build_config(scale="paper").train.precise_bn_batches == 200
    assert build_config(scale="small").train.precise_bn_batches == 0
    with pytest.raises(ConfigError, match="train.precise_bn_batches"):
        build_config(scale="small", overrides={"train.precise_bn_batches": -1})
