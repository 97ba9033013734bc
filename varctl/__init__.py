"""varctl: inspect, freeze and check the variables of saved Keras models."""

__version__ = "0.1.0"
