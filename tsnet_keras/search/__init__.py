"""Architecture search: the distribution over architectures, the PARSEC step,
the progressive schedule (paper section 4) and checkpoints.

Typical use (a notebook)::

    from tsnet_keras.search import run_search_step
    step1 = run_search_step(1, space, train, heldout, "runs/step1", num_classes=100,
                            epochs=800, target_macs=1.4e9)
    step2 = run_search_step(2, space, train, heldout, "runs/step2", "runs/step1", ...)
    step3 = run_search_step(3, space, train, heldout, "runs/step3", "runs/step2", ...)
    step3.architecture   # the searched Architecture; build_model(...) retrains it
"""

from tsnet_keras.search.batch_norm import recalibrate_batch_norm
from tsnet_keras.search.checkpoint import load_checkpoint, save_checkpoint
from tsnet_keras.search.distribution import (
    ArchitectureDistribution,
    space_from_dict,
    space_to_dict,
)
from tsnet_keras.search.evidence import EvidenceOptimizer
from tsnet_keras.search.expected_macs import MacsModel
from tsnet_keras.space.layer_tables import LayerTable, layer_tables
from tsnet_keras.search.optimizers import MaskedSGD
from tsnet_keras.search.parsec import (
    ParsecSearch,
    accuracy_score,
    custom_search_loop,
    log_likelihood_score,
    search_dataset,
)
from tsnet_keras.search.progressive import (
    SearchDivergedError,
    SearchResult,
    inherit_weights,
    load_step_result,
    one_shot_search,
    progressive_search,
    run_search_step,
    step_space,
)
from tsnet_keras.models.supernet import Supernet, layer_choices

__all__ = [
    "ArchitectureDistribution",
    "EvidenceOptimizer",
    "LayerTable",
    "MacsModel",
    "MaskedSGD",
    "ParsecSearch",
    "SearchDivergedError",
    "SearchResult",
    "Supernet",
    "accuracy_score",
    "custom_search_loop",
    "inherit_weights",
    "layer_choices",
    "layer_tables",
    "load_checkpoint",
    "load_step_result",
    "log_likelihood_score",
    "one_shot_search",
    "progressive_search",
    "recalibrate_batch_norm",
    "run_search_step",
    "save_checkpoint",
    "search_dataset",
    "space_from_dict",
    "space_to_dict",
    "step_space",
]
