"""Evaluation: the challenge metrics (the one C-index) and the ``hmvnet evaluate`` command."""
