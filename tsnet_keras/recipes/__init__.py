"""The library side of the notebooks in `recipes/`: the paper's whole pipeline.

    resolve_data -> search_step(1) -> search_step(2) -> search_step(3) -> retrain -> evaluate
    synthetic or    sparse stream     dense stream +    attention         from       10 clips x 1|3
    your lists                        fusion blocks     places            scratch    crops, Table 3

Each step reads the previous step's output folder and writes its own
(`architecture.json` where it has one, `metrics.json`, checkpoints). Running a
step again resumes it, or returns its stored result when it is complete.

The package exports the steps (`resolve_data`, `search_step`, `retrain`, `evaluate`),
`RecipeData`, the steps' outcomes and the readers of their folders (`load_architecture`,
`load_snapshots`, `load_history`, `load_trained_model`, `variant_architectures`).

Modules:
    common    parameter checks (ValueErrors naming the parameter), strategy, JSON and model files
    data      `resolve_data`: the built-in synthetic dataset or list files, held-out split
    search    `search_step`: one progressive-search step, distribution snapshots
    train     `retrain`: SGD + warm-up + cosine, label smoothing, mixed precision, resumable
    evaluate  `evaluate`: multi-view accuracy, the paper's Table 3 for S / M / L and dagger variants

See docs/recipes.md.

Importing the recipes before TensorFlow sets `TF_CPP_MIN_LOG_LEVEL=2` (unless set): the
pages of C++ graph warnings ("Type inference failed" at every traced search step) are
hidden, C++ errors and every Python warning or exception still show.
"""

import os
import sys

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tsnet_keras.recipes.common import load_architecture, load_trained_model
from tsnet_keras.recipes.data import RecipeData, resolve_data
from tsnet_keras.recipes.evaluate import evaluate, variant_architectures
from tsnet_keras.recipes.search import SearchStepOutcome, load_snapshots, search_step
from tsnet_keras.recipes.train import RetrainOutcome, load_history, retrain

# The steps, their data and outcomes, and the readers of their output folders. The helpers
# (parameter checks, JSON files, schedules, views) stay importable from their modules.
__all__ = [
    "RecipeData",
    "RetrainOutcome",
    "SearchStepOutcome",
    "evaluate",
    "load_architecture",
    "load_history",
    "load_snapshots",
    "load_trained_model",
    "resolve_data",
    "retrain",
    "search_step",
    "variant_architectures",
]
