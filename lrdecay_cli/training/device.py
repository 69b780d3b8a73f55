"""Pick the training device: `auto` prefers CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import platform

import torch

from lrdecay_cli.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("CUDA is not available on this machine", where="train.device",
                            fix="use device: auto or cpu (or --set train.device=auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"there is no {name}: {torch.cuda.device_count()} CUDA device(s) here",
                            where="train.device", fix="use cuda:0 or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("MPS (Apple GPU) is not available on this machine", where="train.device",
                        fix="use device: auto or cpu")
    return device


def device_name(device: torch.device) -> str:
    """A human name for the summary: the GPU model, or the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
