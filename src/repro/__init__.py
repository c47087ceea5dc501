"""repro: code behind the reproducible book of 'On the Unreasonable Effectiveness of Last-Layer Retraining'."""

__version__ = "0.1.0"
