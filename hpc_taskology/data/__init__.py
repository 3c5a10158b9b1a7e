"""Datasets: native layouts → HDF5 (``pack``), HDF5 → torch (``loader``), and the mediator schedule."""
