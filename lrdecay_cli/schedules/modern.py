"""Modern schedules from papers: inverse square root and warmup-stable-decay."""

from __future__ import annotations
