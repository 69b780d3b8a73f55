"""lrdecay: a command-line experiment runner for learning-rate decay on MNIST.

The Python API for notebooks and scripts is `lrdecay_cli.api` (`from lrdecay_cli.api import load_spec,
train, sweep, study, read_runs, compare`); the package itself imports nothing, so that `lrdecay --help`
starts without torch."""

__version__ = "0.1.0"
