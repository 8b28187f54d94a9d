"""Experiment configs: `experiments/<name>.py` with `get_config()`."""
