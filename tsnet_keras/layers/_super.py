"""Shared helpers of the weight-sharing super-blocks (private)."""

from keras import ops


class ChoiceWeightsMixin:
    """`choice_weights` / `assign_choice_weights` from a layer's `_choice_slices`.

    `_choice_slices(choice)` returns `{path: ((variable, index), value)}`: the
    slice of a widest weight that one choice uses, in the fixed layer's layout.
    """

    def choice_weights(self, choice):
        """The weights one choice uses, in the fixed layer's layout (NumPy), by path."""
        return {path: value for path, (_, value) in self._choice_slices(choice).items()}

    def assign_choice_weights(self, choice, weights, strict=True):
        """Writes one choice's weights (fixed-layer layout) into the widest weights.

        Args:
            choice: the choice (as for `choice_weights`).
            weights: dict path -> array with exactly the choice's shapes.
            strict: if False, weights missing from `weights` are left unchanged.
        """
        for path, ((variable, index), value) in self._choice_slices(choice).items():
            if path not in weights:
                if strict:
                    raise ValueError(f"{self.name}: missing weight {path!r}.")
                continue
            new = weights[path]
            if tuple(new.shape) != tuple(value.shape):
                raise ValueError(
                    f"{self.name}/{path}: shape {tuple(new.shape)} does not fit the "
                    f"choice's {tuple(value.shape)}."
                )
            full = ops.convert_to_numpy(variable).copy()
            full[index] = new
            variable.assign(full)
