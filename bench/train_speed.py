"""One training epoch two ways on this machine: lrdecay versus the canonical torchvision recipe.

The recipe is pytorch/examples' MNIST loop: torchvision.datasets.MNIST + ToTensor + Normalize
through a DataLoader, batches copied to the device every step. lrdecay keeps the data set on the
device and draws batches by indexing. Both train the same model with the same optimizer on the
same 55,000 training images; each is timed on its second epoch (the first warms up).

    python bench/train_speed.py [--model mlp|cnn] [--batch-size 64] [--precision fp32|bf16] [--device auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from lrdecay_cli.config import spec_file as spec_module
from lrdecay_cli.training.data import default_data_root, ensure_mnist
from lrdecay_cli.training.device import device_name, resolve_device
from lrdecay_cli.training.models import build_model
from lrdecay_cli.training.optim import OPTIMIZERS, hyper_parameters
from lrdecay_cli.training.loop import TrainObserver
from lrdecay_cli.training.loop import train

TARGETS = {("cpu", "mlp"): 6.0, ("cuda", "cnn"): 3.5}
"""Speed-up over the recipe that issue #2 asks for, by (device type, model)."""


class EpochTimer(TrainObserver):
    """Wall time of each epoch's training steps (from its start to its last step's sync)."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_epoch_start(self, epoch, epochs, steps):
        self.steps, self.start = steps, time.perf_counter()

    def on_progress(self, steps_done, loss, lr):
        if steps_done == self.steps:
            self.seconds.append(time.perf_counter() - self.start)


def time_lrdecay(spec) -> float:
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as runs:
        result = train(spec, Path(runs), timer)
    assert result.summary["status"] == "completed", result.summary["message"]
    return timer.seconds[-1]


def time_recipe(spec, device: torch.device) -> float:
    """pytorch/examples' loop (num_workers=1 and pinned memory on CUDA, as there)."""
    root = default_data_root(spec.data.root)
    ensure_mnist(root)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = Subset(datasets.MNIST(root, train=True, transform=transform), range(spec.data.train_size()))
    extra = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = DataLoader(train_set, batch_size=spec.train.batch_size, shuffle=True, **extra)
    torch.manual_seed(spec.seed)
    model = build_model(spec.model).to(device)
    optimizer = OPTIMIZERS[spec.optimizer.name](model.parameters(), **hyper_parameters(spec.optimizer))  # as users write it
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.precision == "bf16")
    seconds = []
    for _ in range(2):
        model.train()
        start = time.perf_counter()
        for data, target in loader:
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            with autocast:
                loss = F.cross_entropy(model(data), target)
            loss.backward()
            optimizer.step()
        loss.item()
        seconds.append(time.perf_counter() - start)
    return seconds[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-recipe", action="store_true", help="time lrdecay only")
    parser.add_argument("--record", type=Path, help="append a tab-separated result row to this file")
    args = parser.parse_args()
    spec = spec_module.from_data({
        "name": "bench", "model": {"name": args.model},
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
        "train": {"epochs": 2, "batch_size": args.batch_size, "device": args.device, "precision": args.precision},
    }, "bench/train_speed.py")
    device = resolve_device(spec.train.device)
    ours = time_lrdecay(spec)
    recipe = None if args.skip_recipe else time_recipe(spec, device)
    target = TARGETS.get((device.type, args.model))
    print(f"\n{args.model} on {device_name(device)}, batch {args.batch_size}, {args.precision}, "
          f"{spec.data.train_size()} images per epoch")
    print(f"  torchvision recipe : {'-' if recipe is None else f'{recipe:.2f} s'}")
    print(f"  lrdecay            : {ours:.3f} s")
    if recipe is not None:
        verdict = "" if target is None else f"  (target >= {target}x: {'met' if recipe / ours >= target else 'MISSED'})"
        print(f"  speed-up           : {recipe / ours:.1f}x{verdict}")
    if args.record:
        ratio = "-" if recipe is None else f"{recipe / ours:.1f}x"
        row = [args.model, device.type, args.batch_size, args.precision,
               "-" if recipe is None else f"{recipe:.2f}", f"{ours:.3f}", ratio, "-" if target is None else f">={target}x"]
        with args.record.open("a") as f:
            f.write("\t".join(map(str, row)) + "\n")


if __name__ == "__main__":
    main()
