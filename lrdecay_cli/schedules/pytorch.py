"""The methods of PyTorch's torch.optim.lr_scheduler, with PyTorch's parameter names (no torch import)."""

from __future__ import annotations
