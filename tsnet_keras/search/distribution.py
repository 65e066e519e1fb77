"""The distribution over architectures that PARSEC learns: one categorical per variable.

`p(A | logits) = prod_v softmax(logits_v)[A_v]` (the logits are the paper's alpha)
over the searchable variables of a `TwoStreamSpace` (fixed variables have one
choice and no logits). The layer
holds the logits as weights, so a Keras model that contains it trains,
checkpoints and distributes them like any other weight.

All math uses `keras.ops` (any backend). Random draws take uniform noise as an
input (Gumbel-max), so the caller chooses the generator: the search step uses
TensorFlow stateless ops seeded by (seed, step, replica), which gives a
different architecture per replica and a reproducible sequence after a resume.
"""

from __future__ import annotations

import json
import math
import re

import keras
import numpy as np
from keras import ops

from tsnet_keras.files import atomic_write_text
from tsnet_keras.search.expected_macs import MacsModel, check_target_macs
from tsnet_keras.space.architecture import Architecture
from tsnet_keras.space.rules import DEFAULT_CROP
# space_to_dict / space_from_dict live in space/search_space.py; imported here by their old path.
from tsnet_keras.space.search_space import space_from_dict, space_to_dict

_PAD_LOGIT = -1e9
FORMAT = "tsnet_keras.ArchitectureDistribution"


def _weight_name(key):
    return "logits_" + re.sub(r"[^0-9A-Za-z]+", "_", key).strip("_")


# ------------------------------------------------------- the target's repair
def _outside(macs, low, high) -> int:
    """-1 above the target (MACs must fall), +1 below it, 0 within."""
    return -1 if macs > high else (1 if macs < low else 0)


def _cheapest_move(indices, log_p, macs, direction, limit):
    """(variable, choice) that loses the least log-probability per MAC moved in
    `direction`, preferring moves that do not pass `limit` (the far bound of the target),
    or None when no single change moves the MACs that way."""
    current, best = macs(indices), {}
    for v, row in enumerate(log_p):
        for c in (c for c in range(len(row)) if c != indices[v]):
            after = macs(indices[:v] + [c] + indices[v + 1:])
            moved = direction * (after - current)
            if moved <= 0:
                continue
            cost, short = (row[indices[v]] - row[c]) / moved, direction * (limit - after) >= 0
            if short not in best or cost < best[short][0]:
                best[short] = (cost, v, c)
    found = best.get(True) or best.get(False)
    return None if found is None else found[1:]


def _more_probable_within(indices, log_p, macs, low, high) -> list:
    """Moves variables to more probable choices while the MACs stay within the target."""
    changed = True
    while changed:
        changed = False
        for v, row in enumerate(log_p):
            for c in np.argsort(-row):
                trial = indices[:v] + [int(c)] + indices[v + 1:]
                if row[c] > row[indices[v]] and not _outside(macs(trial), low, high):
                    indices, changed = trial, True
                    break
    return indices


def _greedy_within(indices, log_p, macs, low, high) -> list:
    """Choice indices near `indices` whose `macs(indices)` lie in [low, high], trading
    the least log-probability (`log_p`: one vector per variable) per MAC moved. When no
    single change moves the MACs towards the target, the closest indices found."""
    indices = list(indices)
    for _ in range(sum(len(row) for row in log_p)):  # bounds a loop between low and high
        direction = _outside(macs(indices), low, high)
        limit = high if direction > 0 else low
        move = _cheapest_move(indices, log_p, macs, direction, limit) if direction else None
        if move is None:
            break
        indices[move[0]] = move[1]
    if _outside(macs(indices), low, high):
        return indices
    return _more_probable_within(indices, log_p, macs, low, high)


# --------------------------------------------------------------------- the layer
@keras.saving.register_keras_serializable(package="tsnet_keras")
class ArchitectureDistribution(keras.layers.Layer):
    """Independent categoricals over a space's searchable variables (PARSEC's p(A | alpha)).

    The paper's alpha is `logits` here (TS-Fusion's `alpha` is the frame-rate ratio).

    Args:
        space: `TwoStreamSpace` (or its `space_to_dict` form).
        num_classes: int. Classifier outputs, for the MACs. Defaults to 400.
        crop: int or (height, width). Crop at which MACs are counted. Defaults to 160.
        **kwargs: base `keras.layers.Layer` arguments.

    Weights:
        One logits vector per searchable variable, named after its key
        (`sparse[3].channels` -> `logits_sparse_3_channels`), zero-initialised
        (uniform distribution).

    Example:

    >>> dist = ArchitectureDistribution(space, num_classes=10, crop=112)
    >>> float(dist.entropy())            # log of the space size when uniform
    >>> dist.most_probable()             # an Architecture
    >>> dist.save("distribution.json")
    """

    def __init__(self, space, num_classes: int = 400, crop=DEFAULT_CROP, **kwargs):
        super().__init__(**kwargs)
        self.space = space_from_dict(space)
        self.num_classes = num_classes
        self.crop = tuple(crop) if isinstance(crop, (list, tuple)) else crop
        self.search_variables = tuple(self.space.variables())
        self.keys = tuple(v.key for v in self.search_variables)
        self.sizes = tuple(len(v.choices) for v in self.search_variables)
        self.max_choices = max(self.sizes, default=1)
        self.macs_model = MacsModel(self.space, num_classes, self.crop)
        self.logits = [
            self.add_weight(
                name=_weight_name(v.key), shape=(len(v.choices),), initializer="zeros",
                trainable=True, autocast=False,
            )
            for v in self.search_variables
        ]
        self.built = True

    @property
    def num_variables(self) -> int:
        return len(self.search_variables)

    # ------------------------------------------------------------ tensors
    def padded_logits(self):
        """Logits as one (V, max_choices) tensor; missing choices at -1e9."""
        if not self.logits:
            return ops.zeros((0, self.max_choices))
        rows = [
            ops.pad(ops.convert_to_tensor(l), [[0, self.max_choices - n]],
                    constant_values=_PAD_LOGIT)
            for l, n in zip(self.logits, self.sizes)
        ]
        return ops.stack(rows)

    def probabilities(self) -> list:
        """softmax(logits_v) per variable, a list of tensors."""
        return [ops.softmax(ops.convert_to_tensor(l)) for l in self.logits]

    def log_prob(self, indices):
        """log p(A | logits) for choice indices of shape (..., V)."""
        if not self.logits:
            return ops.zeros(ops.shape(indices)[:-1])
        log_probs = ops.log_softmax(self.padded_logits(), axis=-1)
        onehot = ops.one_hot(ops.cast(indices, "int32"), self.max_choices)
        return ops.sum(onehot * log_probs, axis=(-2, -1))

    def entropy(self):
        """Entropy of the distribution (nats): sum over variables."""
        total = ops.convert_to_tensor(0.0)
        for l in self.logits:
            log_p = ops.log_softmax(ops.convert_to_tensor(l))
            total = total - ops.sum(ops.exp(log_p) * log_p)
        return total

    def expected_macs(self):
        """Exact E[MACs] under the distribution, differentiable in the logits."""
        return self.macs_model.expected(self.probabilities())

    def sampled_macs(self, indices):
        """MACs of sampled architectures: indices (..., V) -> float32 (...)."""
        return self.macs_model.sampled(indices)

    def sample_indices(self, uniform_noise):
        """Gumbel-max draw(s): `uniform_noise` in (0, 1) of shape (..., V, max_choices).

        Returns:
            int32 tensor of shape (..., V): one choice index per variable.
        """
        noise = ops.clip(uniform_noise, 1e-20, 1.0 - 1e-7)
        gumbel = -ops.log(-ops.log(noise))
        return ops.cast(ops.argmax(self.padded_logits() + gumbel, axis=-1), "int32")

    def call(self, uniform_noise):
        """Same as `sample_indices`."""
        return self.sample_indices(uniform_noise)

    # --------------------------------------------------------- numpy views
    def logits_numpy(self) -> list:
        return [np.asarray(ops.convert_to_numpy(l), dtype=np.float64) for l in self.logits]

    def probabilities_numpy(self) -> list:
        result = []
        for l in self.logits_numpy():
            e = np.exp(l - l.max())
            result.append(e / e.sum())
        return result

    def marginals(self) -> dict:
        """Variable key -> {choice: probability}."""
        return {
            v.key: {c: float(p) for c, p in zip(v.choices, probs)}
            for v, probs in zip(self.search_variables, self.probabilities_numpy())
        }

    def entropy_numpy(self) -> float:
        total = 0.0
        for p in self.probabilities_numpy():
            nz = p[p > 0]
            total -= float(np.sum(nz * np.log(nz)))
        return total

    def expected_macs_numpy(self) -> float:
        return self.macs_model.expected_numpy(self.probabilities_numpy())

    def most_probable_indices(self) -> dict:
        """Variable key -> index of the most probable choice."""
        return {k: int(np.argmax(l)) for k, l in zip(self.keys, self.logits_numpy())}

    def most_probable(self) -> Architecture:
        """The most probable architecture (argmax of every categorical): the search result."""
        return self.space.from_indices(self.most_probable_indices())

    def most_probable_within(self, target_macs, floor: float = 0.0) -> Architecture:
        """The most probable architecture whose MACs meet `target_macs`, found greedily.

        The hinge of a search acts on the *expected* MACs; the argmax of a distribution
        that has not settled follows the small leans of its undecided variables and can
        land well above the target (BENCHMARKS.md section 8), or, once the hinge has
        leaned every width variable to its cheaper choices, well below it. This starts
        from the argmax and, while it is above the target, changes the one variable that
        loses the least log-probability per MAC saved; then it moves any variable back
        to a more probable choice that keeps the target. An argmax that meets the target
        is returned as it is.

        Args:
            target_macs: None (the plain argmax), a number (at most) or a (low, high)
                pair, in MACs at the distribution's crop (as `ParsecSearch`'s).
            floor: a share of the upper target the result should also reach (0.9:
                within 90-100% of it), by the same greedy moving up. Where no nearby
                architecture lands there, the result under the target is kept.
        """
        bounds = check_target_macs(self.macs_model, target_macs)
        if bounds is None:
            return self.most_probable()
        log_p = [l - l.max() - np.log(np.sum(np.exp(l - l.max()))) for l in self.logits_numpy()]
        indices = [int(np.argmax(row)) for row in log_p]
        indices = _greedy_within(indices, log_p, self.macs_model.macs, *bounds)
        low, high = max(bounds[0], floor * bounds[1]), bounds[1]
        if not _outside(self.macs_model.macs(indices), *bounds) and low > bounds[0]:
            raised = _greedy_within(indices, log_p, self.macs_model.macs, low, high)
            indices = indices if _outside(self.macs_model.macs(raised), low, high) else raised
        return self.space.from_indices(dict(zip(self.keys, indices)))

    def architecture(self, indices) -> Architecture:
        """The architecture of a sampled index vector (sequence in `keys` order)."""
        indices = np.asarray(ops.convert_to_numpy(indices)).reshape(-1)
        return self.space.from_indices({k: int(i) for k, i in zip(self.keys, indices)})

    def sample(self, seed=None) -> Architecture:
        """One architecture drawn from the distribution with NumPy (eager use)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return self.space.from_indices(
            {k: int(rng.choice(len(p), p=p)) for k, p in zip(self.keys, self.probabilities_numpy())}
        )

    def set_logits(self, logits) -> None:
        """Assigns logits from a dict key -> vector or a list in `keys` order."""
        if isinstance(logits, dict):
            unknown = set(logits) - set(self.keys)
            if unknown:
                raise ValueError(f"set_logits: unknown variable(s) {sorted(unknown)}.")
            logits = [logits.get(k, np.zeros(n)) for k, n in zip(self.keys, self.sizes)]
        if len(logits) != len(self.logits):
            raise ValueError(f"set_logits: expected {len(self.logits)} vectors, got {len(logits)}.")
        for variable, value, key, n in zip(self.logits, logits, self.keys, self.sizes):
            value = np.asarray(value, dtype="float32")
            if value.shape != (n,):
                raise ValueError(f"set_logits: {key} needs shape ({n},), got {value.shape}.")
            variable.assign(value)

    # ---------------------------------------------------------- serialising
    def to_dict(self) -> dict:
        """JSON-ready dict: space, logits and (informational) marginals and summary."""
        most_probable = self.most_probable()
        return {
            "format": FORMAT,
            "version": 1,
            "space": space_to_dict(self.space),
            "num_classes": self.num_classes,
            "crop": list(self.crop) if isinstance(self.crop, tuple) else self.crop,
            "logits": {k: [float(x) for x in l] for k, l in zip(self.keys, self.logits_numpy())},
            "marginals": {
                k: [[c, p] for c, p in m.items()] for k, m in self.marginals().items()
            },
            "entropy": self.entropy_numpy(),
            "expected_macs": self.expected_macs_numpy(),
            "most_probable": most_probable.to_dict(),
            "most_probable_macs": self.macs_model.macs_of(most_probable),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict, **kwargs) -> ArchitectureDistribution:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(
                f"not a saved ArchitectureDistribution (expected format {FORMAT!r})."
            )
        dist = cls(data["space"], num_classes=data["num_classes"], crop=data["crop"], **kwargs)
        dist.set_logits(data["logits"])
        return dist

    @classmethod
    def from_json(cls, text: str, **kwargs) -> ArchitectureDistribution:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"ArchitectureDistribution.from_json: invalid JSON ({error}).") from None
        return cls.from_dict(data, **kwargs)

    def save(self, path) -> None:
        """Writes the distribution as JSON (atomically: temp file + rename)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path, **kwargs) -> ArchitectureDistribution:
        with open(path, encoding="utf-8") as handle:
            return cls.from_json(handle.read(), **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "space": space_to_dict(self.space),
                "num_classes": self.num_classes,
                "crop": list(self.crop) if isinstance(self.crop, tuple) else self.crop,
            }
        )
        return config

    def summary_table(self) -> str:
        """One line per variable: key, most probable choice and its probability."""
        lines = [f"{'variable':<28}{'choice':>12}{'p':>8}"]
        for v, p in zip(self.search_variables, self.probabilities_numpy()):
            best = int(np.argmax(p))
            lines.append(f"{v.key:<28}{v.choices[best]!s:>12}{p[best]:>8.3f}")
        lines.append(
            f"entropy {self.entropy_numpy():.3f} nats (uniform: "
            f"{sum(math.log(n) for n in self.sizes):.3f}); "
            f"E[MACs] {self.expected_macs_numpy() / 1e9:.4f} G"
        )
        return "\n".join(lines)


__all__ = [
    "ArchitectureDistribution",
    "space_from_dict",
    "space_to_dict",
]
