"""The shared refiner of a multi-channel model (issue 23): one set of convolutions, a per-channel
affine conditioning that folds into a plain refiner per channel."""

import numpy as np
import pytest
import torch

from napari_spatimeinr.engines.fast.refiner import ChannelRefiner, Refiner
from napari_spatimeinr.engines.fast.task import MotionTask
from napari_spatimeinr.engines.loop import PackedMask


@pytest.mark.parametrize("z_kernel", [1, 3])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_bake_is_the_same_function(z_kernel, depth):
    torch.manual_seed(0)
    net = ChannelRefiner(6, depth, z_kernel, channels=3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 1, 4 if z_kernel == 3 else 1, 10, 11)
    ch = torch.tensor([2, 0, 1])
    y = net(x, ch)
    for i, k in enumerate(ch.tolist()):
        baked = net.bake(k)
        assert isinstance(baked, Refiner)
        np.testing.assert_allclose(baked(x[i : i + 1])[0].detach(), y[i].detach(), atol=1e-4)
    assert not torch.allclose(net.bake(0)(x[:1]), net.bake(2)(x[:1]))


def test_untrained_is_the_identity():
    net = ChannelRefiner(4, 3, 3, channels=2)
    x = torch.rand(2, 1, 3, 8, 8)
    assert torch.equal(net(x, torch.tensor([0, 1])), x[:, 0])


def test_channel_task_validates_each_channel_and_trains_each_conditioning():
    rng = np.random.default_rng(0)
    shape = (4, 3, 20, 20)
    a = rng.random(shape, dtype=np.float32)
    b = 0.3 * rng.random(shape, dtype=np.float32)
    gap1 = np.zeros((3, 3, 3, 20, 20), np.float16)
    mask = PackedMask.holdout(shape, 0)
    task = MotionTask.several(
        [(a, gap1, mask, None), (b, gap1, mask, None)], 16, 512, torch.device("cpu"), 0, True
    )
    assert sorted(set(task.val_stack)) == [0, 1]  # every channel its own validation crops
    scores = task.validate_channels(None)
    assert len(scores) == 2 and scores[1] > scores[0]  # the dimmer channel differs less
    net = ChannelRefiner(4, 2, 3, channels=2)
    assert task.validate(net) == pytest.approx(np.mean(task.validate_channels(net)))
    loss = task.loss(net, torch.Generator().manual_seed(1))
    loss.backward()
    assert net.out_scale.grad is not None and net.base.body[-1].weight.grad.abs().sum() > 0
