"""The architecture logits as a function of the evidence gathered so far.

Adam normalises each logit's gradient by its own running size, so a variable that
does not matter still takes full-size steps in random directions: over T steps
its logits random-walk by about `learning_rate x sqrt(T)` whatever the evidence
(BENCHMARKS.md section 8). `EvidenceOptimizer` moves a logit only when its
gradients, summed over the whole search, are unlikely to be noise:

    z = sum_t g_t / sqrt(sum_t g_t^2)                 (per logit)
    logit = start - scale x (sign(z) x max(|z| - threshold, 0) + leak x z)

(`start`: the logit's value before the search's first step, or as set since).
The small `leak` term only orders the choices of a variable without enough
evidence (by the sign of what it has), so the most probable architecture
follows the evidence there too instead of a tie; it moves a marginal by about
one point at most below the threshold.

For gradients of zero mean (a variable that does not matter) z stays of order 1
at any T, so below the threshold the logit stays where it started; a consistent
gradient (mean mu, spread sigma) makes |z| grow as sqrt(T) mu / sigma, and the
logit follows. `z` does not depend on the gradients' scale, so the rule reads
ranks, accuracies and any number of replicas alike. The FLOPs hinge is not fed
to it: its gradient is exact, so `ParsecSearch` gives it a plain gradient step of
its own (`ParsecSearch.direct_hinge`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tsnet_keras.checks import check_choice


@keras.saving.register_keras_serializable(package="tsnet_keras")
class EvidenceOptimizer(keras.optimizers.Optimizer):
    """Logit = start - scale x (|z| beyond `threshold`), z the summed gradients' z-score.

    Args:
        scale: logit units per unit of z beyond the threshold (the optimizer's
            `learning_rate`). Defaults to 1.5.
        threshold: the z below which a logit moves by the leak only. Defaults to 3.0.
        leak: logit units (x scale) per unit of z at any z. Defaults to 0.01.
        epsilon: added to the root of the summed squares. Defaults to 1e-12.
        name: defaults to "evidence".
        **kwargs: `keras.optimizers.Optimizer` arguments.

    Its state (the sums, the squares and the current offsets) is in
    `optimizer.variables`, so a checkpoint of them resumes the search exactly.
    """

    def __init__(self, scale=1.5, threshold=3.0, leak=0.01, epsilon=1e-12, name="evidence",
                 **kwargs):
        super().__init__(learning_rate=scale, name=name, **kwargs)
        if not threshold >= 0:
            raise ValueError(f"EvidenceOptimizer: `threshold` must be >= 0, got {threshold!r}.")
        if not leak >= 0:
            raise ValueError(f"EvidenceOptimizer: `leak` must be >= 0, got {leak!r}.")
        self.threshold = float(threshold)
        self.leak = float(leak)
        self.epsilon = float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._sums = [self.add_variable_from_reference(v, "sum") for v in var_list]
        self._squares = [self.add_variable_from_reference(v, "square") for v in var_list]
        self._offsets = [self.add_variable_from_reference(v, "offset") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        gradient = ops.cast(gradient, variable.dtype)
        self.assign_add(self._sums[index], gradient)
        self.assign_add(self._squares[index], ops.square(gradient))
        z = self._sums[index] / (ops.sqrt(self._squares[index]) + self.epsilon)
        excess = ops.maximum(ops.abs(z) - self.threshold, 0.0)
        offset = -ops.cast(learning_rate, variable.dtype) * (ops.sign(z) * excess + self.leak * z)
        # Moves the logit by the change of its offset, so values set from outside
        # (`ArchitectureDistribution.set_logits`) are kept as the starting point.
        self.assign_add(variable, offset - self._offsets[index])
        self.assign(self._offsets[index], offset)

    def z_scores(self, variables) -> list:
        """The z of each of `variables`' entries (NumPy arrays), zeros before any step."""
        result = []
        for variable in variables:
            index = self._get_variable_index(variable)
            sums = np.asarray(ops.convert_to_numpy(self._sums[index]), dtype=np.float64)
            squares = np.asarray(ops.convert_to_numpy(self._squares[index]), dtype=np.float64)
            result.append(sums / (np.sqrt(squares) + self.epsilon))
        return result

    def get_config(self):
        config = super().get_config()
        config["scale"] = config.pop("learning_rate")
        config.update(threshold=self.threshold, leak=self.leak, epsilon=self.epsilon)
        return config


LOGITS_OPTIMIZERS = ("adam", "evidence")


def evidence_report(distribution, optimizer) -> dict | None:
    """Which variables the held-out scores decided; None unless `optimizer` is a built
    `EvidenceOptimizer` (Adam's moments do not tell evidence from noise).

    A variable is decided when one of its logits' |z| passed the threshold. Its entry
    gives every choice's z, the choice the evidence favours (the lowest z: the logit it
    raised most) and the choices it keeps: that one alone where its z is below
    -threshold, else every choice whose z is not above the threshold (the evidence only
    ruled the others out). An undecided variable moved by the leak and, under a FLOPs
    target, by the hinge's own step only: its most probable choice is a lean, not a
    finding (docs/search.md, "What the search decided").

    Returns:
        {"threshold": t, "decided": {key: {"choice": c, "kept": [choices],
         "z": {choice: z}}}, "undecided": [keys]}, in the distribution's variable order.
    """
    if not isinstance(optimizer, EvidenceOptimizer) or not optimizer.built:
        return None
    decided, undecided = {}, []
    z_rows = optimizer.z_scores(distribution.logits)
    for variable, z in zip(distribution.search_variables, z_rows):
        if np.max(np.abs(z)) <= optimizer.threshold:
            undecided.append(variable.key)
            continue
        best = int(np.argmin(z))
        kept = ([best] if z[best] < -optimizer.threshold
                else [i for i, value in enumerate(z) if value <= optimizer.threshold])
        decided[variable.key] = {
            "choice": variable.choices[best],
            "kept": [variable.choices[i] for i in kept],
            "z": {str(c): round(float(value), 2) for c, value in zip(variable.choices, z)},
        }
    return {"threshold": optimizer.threshold, "decided": decided, "undecided": undecided}


def logits_optimizer(name: str, learning_rate: float = 0.025):
    """The logits' optimizer by name: "adam" (`Adam(learning_rate)`) or "evidence".

    "evidence" is `EvidenceOptimizer()` with its defaults; `learning_rate` is
    Adam's only.
    """
    check_choice("logits_optimizer", name, LOGITS_OPTIMIZERS)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, name="logits_adam")
    return EvidenceOptimizer()


__all__ = ["EvidenceOptimizer", "LOGITS_OPTIMIZERS", "evidence_report", "logits_optimizer"]
