"""lvsgen: compile a JSON description of an LVS/IPVS cluster into per-host artifacts."""

__version__ = "0.1.0"
