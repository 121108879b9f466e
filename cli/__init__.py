"""mfsnn: multiplication-free spiking neural network training, from numpy golden model to FPGA gateware."""

__version__ = "0.1.0"
