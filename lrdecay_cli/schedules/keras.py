"""The methods of keras.optimizers.schedules, with Keras' parameter names."""

from __future__ import annotations
