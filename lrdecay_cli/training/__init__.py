"""Training: the one loop and the ways into it (loop.py) over a Trainer of one model (trainer.py) or a
stack of them (stacked.py), checkpoints and whether a run can resume (checkpoint.py), and what the loop
needs: data, models, optimizers, the device."""
