"""lrdecay: a command-line experiment runner for learning-rate decay on MNIST."""

__version__ = "0.1.0"
