"""The PARSEC search step (paper section 4.1) as a Keras model: `fit` runs the search.

One step, on every replica (TensorFlow backend):

1. draw S architectures A ~ p(A | logits) with stateless Gumbel noise seeded by
   (seed, step, replica id): every replica draws different ones, and a resumed
   run draws the same ones again;
2. score each sample on the same held-out batch (accuracy by default) with
   batch statistics and no BN update, and gather the K = S x replicas scores
   and samples;
3. train the supernet weights on the training batch along the S sampled paths
   (each on the whole batch, or on its S-th part: `path_batch`) with
   `MaskedSGD` (untaken weights do not move), each sample's loss weighted as
   `weight_update` says;
4. update the architecture logits (the paper's alpha) on
   -sum_k a_k log p(A_k | logits) + lambda * max(0, E[MACs] / target - 1),
   whose first gradient is -sum_k a_k (onehot(A_k) - softmax(logits)); the
   coefficients a_k come from the scores as `weighting` says
   (`tsnet_keras.search.estimator`: centred ranks by default, PARSEC's
   importance weights softmax(score / tau) with `weighting="softmax"`).
   With Adam (the paper's) both terms make one gradient; with the default
   `EvidenceOptimizer` the first term goes to it and the hinge, exact and
   noise-free, takes a plain gradient step of size lambda of its own.

The expected MACs are exact (`MacsModel`), so the FLOPs hinge has an analytic
gradient; `hinge="per_sample"` instead subtracts lambda * max(0, MACs(A_k) /
target - 1) from each score before the softmax.

Data: `fit` takes a dataset whose elements are `((x, y), (x_heldout, y_heldout))`
(`search_dataset` zips a training and a held-out dataset). Under
`MirroredStrategy` build and compile the model inside `strategy.scope()`;
for `MultiWorkerMirroredStrategy` (where Keras' `fit` fails:
keras-team/keras#20585) use `run_search_step(..., strategy=strategy)`, which
runs the engine's own loop with outputs, checkpoints and resume, or the bare
`custom_search_loop`.
"""

from __future__ import annotations

import contextlib
import functools

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tsnet_keras.checks import check_stream_dropout
from tsnet_keras.data.options import without_autotune
from tsnet_keras.layers.depthwise import inlined_tap_loops
from tsnet_keras.layers.head import keep_mask
from tsnet_keras.layers.sliced_batch_norm import apply_updates, deferred_updates
from tsnet_keras.layers.super_mbconv3d import DEFAULT_OUTER_TAPS
from tsnet_keras.models.supernet import Supernet
from tsnet_keras.renames import renamed_argument, renamed_attribute
from tsnet_keras.search.box_gradients import box_reads, sum_boxes_each
from tsnet_keras.search.distribution import ArchitectureDistribution
from tsnet_keras.search.estimator import (
    DEFAULTS,
    PATH_BATCHES,
    WEIGHT_UPDATES,
    WEIGHTINGS,
    advantages,
    sample_loss_weights,
)
from tsnet_keras.search.evidence import EvidenceOptimizer
from tsnet_keras.search.evidence import logits_optimizer as named_logits_optimizer
from tsnet_keras.search.expected_macs import check_target_macs
from tsnet_keras.search.optimizers import masked_optimizer, not_inlined
from tsnet_keras.space.rules import DEFAULT_CROP
from tsnet_keras.space.search_space import space_from_dict, space_to_dict

SCORES = ("accuracy", "log_likelihood")
PATHS_IN_FLIGHT = (1, 2)  # two instances of the per-path function at most (_path_function)
HINGES = ("expected", "per_sample")
# "largest_kernels": while the logits are frozen (warm-up) every kernel variable takes its
# largest choice, the others are drawn as usual (OFA's elastic kernel: largest first).
WARMUP_SAMPLINGS = ("distribution", "largest_kernels")
KERNEL_VARIABLES = ("temporal_kernel", "spatial_kernel")


def _labels(y):
    y = ops.convert_to_tensor(y)
    if len(y.shape) > 1:
        return ops.argmax(y, axis=-1)
    return ops.cast(y, "int32")


def accuracy_score(y_true, logits, indices=None):
    """Fraction of the batch classified correctly (Auto-TSNet's proxy score)."""
    correct = ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"),
                        ops.cast(_labels(y_true), "int32"))
    return ops.mean(ops.cast(correct, "float32"))


def log_likelihood_score(y_true, logits, indices=None):
    """Mean log-probability of the true labels (PARSEC's original score)."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    onehot = ops.one_hot(_labels(y_true), ops.shape(logits)[-1])
    return ops.mean(ops.sum(onehot * log_probs, axis=-1))


def cross_entropy(y_true, logits):
    """Mean cross-entropy of logits against integer (or one-hot) labels."""
    return -log_likelihood_score(y_true, logits)


def search_dataset(train, heldout):
    """The dataset `ParsecSearch.fit` consumes: `((x, y), (x_heldout, y_heldout))` per step.

    The held-out dataset repeats, so every training batch has a held-out batch.
    Autotuning is off (`tsnet_keras.data.options`).
    """
    return without_autotune(tf.data.Dataset.zip((train, heldout.repeat())))


def _called_function(python_function):
    """A traced function the step calls K times, kept as one function: not inlined.

    TensorFlow inlines a function called from a traced one, so the step would hold K
    copies of the sampled network's graph with every choice's branches; `_noinline`
    keeps one, instantiated once (BENCHMARKS.md section 3c).
    """
    return not_inlined(python_function, reduce_retracing=True)


@keras.saving.register_keras_serializable(package="tsnet_keras")
class ParsecSearch(keras.Model):
    """PARSEC architecture search over a `TwoStreamSpace` (Auto-TSNet section 4).

    Args:
        space: `TwoStreamSpace` (or its dict form).
        num_classes: int.
        crop: int or (height, width). Crop at which MACs are counted (the
            training crop). Defaults to 160.
        samples_per_replica: int S. Architectures drawn per replica and step;
            K = S x replicas must be >= 2. Defaults to 4.
        score: "accuracy" (default), "log_likelihood" or a callable
            `score(y_true, logits, indices) -> scalar` (a hook to plant scores).
        weighting: "rank" (default), "baseline" or "softmax": how the K
            scores weigh the logits' gradient (`tsnet_keras.search.estimator`).
        temperature: float tau > 0 of softmax(score / tau), used by the
            "softmax" and "baseline" weightings and by importance-weighted
            weight updates. Defaults to 1.0.
        weight_update: "mean" (default: every sampled path's loss counts the
            same) or "importance" (PARSEC: each path's loss is weighted by
            K x softmax(score / tau)).
        path_batch: "full" (default: each sampled path trains on the whole
            replica batch) or "split" (the batch is divided among the S paths:
            cheaper, but batch norm then sees batch / S clips per path).
        target_macs: None, an int (upper target) or (low, high): the FLOPs
            hinge's range of one-view MACs. Must be reachable by the space.
        macs_penalty: float lambda of the hinge. Defaults to 1.0. With evidence
            logits it is the size of the hinge's own gradient step (a 37% excess
            of expected MACs is gone in about 40 steps at 1.0; docs/search.md).
        hinge: "expected" (analytic, on the logits; default) or "per_sample".
        seed: int. Seeds the architecture draws. Defaults to 0.
        dynamic_shapes: bool or None, passed to the `Supernet`.
        outer_taps: "random" (default) or "zeros", passed to the `Supernet`: with
            "zeros" the depthwise taps outside the smallest kernel choice start at
            zero, so every kernel choice starts as the smallest.
        warmup_sampling: "distribution" (default: the warm-up draws from the
            distribution like the search) or "largest_kernels": during the warm-up
            (`logits_frozen`) every temporal and spatial kernel variable takes its
            largest choice, so the shared weights first learn through the widest
            kernels (OFA's progressive shrinking of the kernel). Where a smaller
            kernel shares the larger one's taps and only the largest sees what the
            labels depend on, a supernet sampling all kernels from the start may not
            learn it at CPU scale (BENCHMARKS.md section 8, the chain's diagnosis).
        stream_dropout: float in [0, 1), two-stream spaces only. Defaults to 0.0.
            In the weights' training (not in scoring), each clip's pooled
            sparse-stream features are zeroed with this probability before the
            classifier ("modality dropout"), drawn per clip, path and step
            (stateless, so a resumed search draws the same). The dense stream then
            has to classify those clips alone: beside a sparse stream that already
            fits the labels (progressive step 2 inherits it) it otherwise gets
            little gradient and may never learn what only it can see (BENCHMARKS.md
            section 8, "stream dropout"; `run_search_step` sets 0.5 for step 2).
        graph_optimization: None (default: Grappler optimises the traced step whole
            when a GPU is visible; on CPUs its remapper alone runs: Grappler whole
            costs more start-up than it saves there), True, False, or a tuple of
            `GRAPPLER_OPTIMIZERS` names that alone run. Applies to `fit`; see
            `graph_optimization`.
        paths_in_flight: 1 (default) or 2: how many of a replica's sampled paths may
            train at once. The per-path calls write no variable (their batch-norm
            updates are applied after each call, in path order; the classifier's
            dropout is drawn per step and path), so both give the same results. 1
            holds one path's activations at a time (the paper's memory of one
            network). 2 lets a CPU's cores run the next path's ops while one path's
            wait: on 2 cores at crop 64 a step 13% faster for about twice its peak
            memory, 3-4% faster at crops 32 and 160 (BENCHMARKS.md 1e, session 13).
        **kwargs: `keras.Model` arguments.

    Attributes:
        supernet: the `Supernet`.
        distribution: the `ArchitectureDistribution` (its `logits` are the paper's alpha).
        search_step: int64 variable, steps done (drives sampling and resumes).
        logits_frozen: bool. Warm-up: train weights only. The logits get zero
            gradients and the logits optimizer's step counter does not advance, so
            a warm-up from the start leaves the logits and Adam's state untouched
            (frozen later, Adam's moments would still decay). Backed by the
            variable `logits_frozen_flag`, read in the traced step: switching it
            needs no retrace. (`alpha_frozen`, `alpha_frozen_flag` and
            `alpha_optimizer` are deprecated names.)

    Example:

    >>> with strategy.scope():
    ...     search = ParsecSearch(space, num_classes=10, crop=112, target_macs=2e8)
    ...     search.compile(total_steps=1000)
    >>> search.fit(search_dataset(train, heldout), epochs=10, steps_per_epoch=100)
    >>> search.distribution.most_probable()
    """

    def __init__(
        self,
        space,
        num_classes: int,
        crop=DEFAULT_CROP,
        samples_per_replica: int = DEFAULTS.samples_per_replica,
        score="accuracy",
        weighting: str = DEFAULTS.weighting,
        temperature: float = DEFAULTS.temperature,
        weight_update: str = DEFAULTS.weight_update,
        path_batch: str = DEFAULTS.path_batch,
        target_macs=None,
        macs_penalty: float = 1.0,
        hinge: str = "expected",
        seed: int = 0,
        dynamic_shapes=None,
        outer_taps=DEFAULT_OUTER_TAPS,
        warmup_sampling: str = "distribution",
        stream_dropout: float = 0.0,
        graph_optimization=None,
        paths_in_flight: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        space = space_from_dict(space)
        _check_search_options(samples_per_replica, score, temperature, weighting, weight_update,
                              path_batch, hinge, macs_penalty, warmup_sampling, paths_in_flight)
        self.stream_dropout = check_stream_dropout(stream_dropout, space.dense is not None)
        self.space = space
        self.num_classes = num_classes
        self.crop = crop
        self.samples_per_replica = samples_per_replica
        self.score = score
        self.weighting = weighting
        self.temperature = float(temperature)
        self.weight_update = weight_update
        self.path_batch = path_batch
        self.macs_penalty = float(macs_penalty)
        self.hinge = hinge
        self.seed = int(seed)
        self.warmup_sampling = warmup_sampling
        self.graph_optimization = check_graph_optimization(graph_optimization)
        self.paths_in_flight = paths_in_flight
        self.supernet = Supernet(space, num_classes, dynamic_shapes=dynamic_shapes,
                                 outer_taps=outer_taps, name="supernet")
        self.distribution = ArchitectureDistribution(space, num_classes, crop, name="distribution")
        self.target_macs = check_target_macs(self.distribution.macs_model, target_macs)
        self._largest_kernels = _largest_kernel_indices(self.distribution.search_variables)
        self._add_step_state()
        self.built = True

    def _add_step_state(self):
        """The step counter, the warm-up gate, the traced per-sample functions and the metrics."""
        self.search_step = self.add_weight(
            name="search_step", shape=(), dtype="int64", initializer="zeros",
            trainable=False, aggregation="only_first_replica",
        )
        # Warm-up gate read inside the traced step: changing it needs no retrace.
        self.logits_frozen_flag = self.add_weight(
            name="logits_frozen", shape=(), dtype="bool", initializer="zeros",
            trainable=False, aggregation="only_first_replica",
        )
        self.logits_optimizer = None
        self._score_fn = self.score if callable(self.score) else {
            "accuracy": accuracy_score, "log_likelihood": log_likelihood_score,
        }[self.score]
        self._loss_fn = cross_entropy
        self._sample_gradients = _called_function(self._sample_gradients_eager)
        self._sample_box_gradients = _called_function(self._sample_box_gradients_eager)
        self._sample_score = _called_function(self._sample_score_eager)
        # Traced once and called K times: one copy of the updates' ops in the step, not K.
        self._apply_statistics = not_inlined(self._apply_statistics_eager,
                                             reduce_retracing=True, autograph=False)
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "heldout_score", "logits_loss", "entropy", "expected_macs",
                         "sampled_macs")
        }

    @property
    def logits_frozen(self) -> bool:
        return bool(ops.convert_to_numpy(self.logits_frozen_flag))

    @logits_frozen.setter
    def logits_frozen(self, frozen):
        self.logits_frozen_flag.assign(bool(frozen))

    alpha_frozen = renamed_attribute("alpha_frozen", "logits_frozen")
    alpha_frozen_flag = renamed_attribute("alpha_frozen_flag", "logits_frozen_flag")
    alpha_optimizer = renamed_attribute("alpha_optimizer", "logits_optimizer")

    # ------------------------------------------------------------ compile
    def compile(
        self,
        weights_optimizer=None,
        logits_optimizer=None,
        loss=None,
        learning_rate=0.4,
        total_steps=None,
        momentum=0.9,
        weight_decay=None,
        logits_learning_rate=0.025,
        **kwargs,
    ):
        """Sets both optimizers (paper section 5.2 defaults) and builds them.

        Args:
            weights_optimizer: optimizer of the supernet weights, or "sgd"
                (default: `MaskedSGD(CosineDecay(learning_rate, total_steps),
                momentum)`, a constant rate when `total_steps` is None) or
                "adamw" (`MaskedAdamW` with the same schedule).
            logits_optimizer: optimizer of the architecture logits, or a name:
                "evidence" (`EvidenceOptimizer()`, the default,
                `DEFAULTS.logits_optimizer`: a logit moves only on evidence,
                `tsnet_keras.search.evidence`) or "adam" (the paper's:
                `Adam(logits_learning_rate)`, no weight decay).
            loss: callable `loss(y_true, logits)`; default cross-entropy.
            learning_rate, total_steps, momentum, weight_decay: of the default SGD.
            logits_learning_rate: float. Adam's rate. Defaults to 0.025.
            **kwargs: `keras.Model.compile` arguments (`jit_compile` is forced off:
                XLA recompiles for every sampled width). The old names
                `alpha_optimizer` and `alpha_learning_rate` still work, with a
                DeprecationWarning.
        """
        logits_optimizer = renamed_argument(kwargs, "alpha_optimizer", "logits_optimizer",
                                            logits_optimizer, None, where="ParsecSearch.compile")
        logits_learning_rate = renamed_argument(
            kwargs, "alpha_learning_rate", "logits_learning_rate", logits_learning_rate, 0.025,
            where="ParsecSearch.compile")
        strategy = tf.distribute.get_strategy()
        replicas = strategy.num_replicas_in_sync
        if replicas * self.samples_per_replica < 2:
            raise ValueError(
                f"PARSEC needs K >= 2 architectures per step (with K = 1 the importance "
                f"weight is always 1 and the logits learn nothing); got {replicas} replica(s) x "
                f"samples_per_replica={self.samples_per_replica}."
            )
        if weights_optimizer is None or isinstance(weights_optimizer, str):
            rate = learning_rate
            if total_steps:
                rate = keras.optimizers.schedules.CosineDecay(learning_rate, int(total_steps))
            weights_optimizer = masked_optimizer(weights_optimizer or "sgd", rate, momentum,
                                                 weight_decay)
        if logits_optimizer is None or isinstance(logits_optimizer, str):
            logits_optimizer = named_logits_optimizer(
                logits_optimizer or DEFAULTS.logits_optimizer, logits_learning_rate)
        self.logits_optimizer = logits_optimizer
        # The hinge's own step under evidence logits (`direct_hinge`): lambda is its size.
        self._hinge_optimizer = keras.optimizers.SGD(1.0, name="hinge_sgd")
        self._hinge_optimizer.build(self.distribution.trainable_variables)
        if loss is not None:
            self._loss_fn = loss
        kwargs["jit_compile"] = False
        super().compile(optimizer=weights_optimizer, **kwargs)
        self.optimizer.build(self.supernet.trainable_variables)
        self.logits_optimizer.build(self.distribution.trainable_variables)

    @property
    def metrics(self):
        return list(self._trackers.values())

    # ---------------------------------------------------------------- call
    def call(self, inputs, indices=None, training=None):
        """Logits of the most probable architecture (or of `indices`)."""
        if indices is None:
            indices = self.most_probable_indices()
        return self.supernet(inputs, indices=indices, training=training)

    def most_probable_indices(self):
        if not self.distribution.logits:
            return ops.zeros((0,), "int32")
        return ops.cast(ops.argmax(self.distribution.padded_logits(), axis=-1), "int32")

    # ---------------------------------------------------------- the step
    def sample(self, replica_id=0):
        """(S, V) int32 indices drawn for this step and replica (stateless)."""
        dist = self.distribution
        noise = tf.random.stateless_uniform(
            (self.samples_per_replica, dist.num_variables, dist.max_choices),
            seed=self._step_seed(replica_id),
        )
        indices = dist.sample_indices(noise)
        if self.warmup_sampling == "largest_kernels":
            indices = self._largest_kernels_in_warmup(indices)
        return indices

    def _step_seed(self, replica_id):
        """The stateless seed of this step and replica (so a resumed search draws the same)."""
        step = ops.cast(ops.convert_to_tensor(self.search_step), "int64")
        return tf.stack([tf.constant(self.seed, tf.int64),
                         step * 4096 + tf.cast(replica_id, tf.int64)])

    def _largest_kernels_in_warmup(self, indices):
        """`indices` with every kernel variable at its largest choice while the logits are frozen."""
        largest = ops.convert_to_tensor(self._largest_kernels)
        pinned = ops.where(largest >= 0, largest, indices)
        return ops.where(ops.convert_to_tensor(self.logits_frozen_flag), pinned, indices)

    def _hinge(self, macs):
        if self.target_macs is None:
            return ops.zeros_like(macs)
        low, high = self.target_macs
        penalty = ops.relu(macs / high - 1.0)
        if low:
            penalty = penalty + ops.relu(1.0 - macs / low)
        return self.macs_penalty * penalty

    def train_step(self, data):
        (x, y), (heldout_x, heldout_y) = data
        context = tf.distribute.get_replica_context()
        indices = self.sample(context.replica_id_in_sync_group)
        scores, sampled_macs = self._score_samples(heldout_x, heldout_y, indices)
        all_scores, all_indices = self._gather(context, self._adjusted(scores, sampled_macs),
                                               indices)
        loss = self._train_weights(x, y, indices, all_scores, context)
        logits_loss, expected_macs = self._update_logits(all_scores, all_indices,
                                                         context.num_replicas_in_sync)
        self.search_step.assign_add(1)
        values = {
            "loss": loss,
            "heldout_score": ops.mean(scores),
            "logits_loss": logits_loss,
            "entropy": self.distribution.entropy(),
            "expected_macs": expected_macs,
            "sampled_macs": ops.mean(sampled_macs),
        }
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def _score_samples(self, heldout_x, heldout_y, indices):
        """Held-out score and MACs of each of this replica's samples (same clips for all)."""
        features, start, _ = self._shared_features(heldout_x, update_statistics=False)
        scores = [self._sample_score(features, heldout_y, indices[s], start)
                  for s in range(self.samples_per_replica)]
        return ops.stack(scores), self.distribution.sampled_macs(indices)

    def _adjusted(self, scores, sampled_macs):
        if self.hinge == "per_sample":
            return scores - self._hinge(sampled_macs)
        return scores

    @staticmethod
    def _gather(context, scores, indices):
        """The K = S x replicas scores and samples, identical on every replica."""
        if context.num_replicas_in_sync == 1:
            return scores, indices
        return context.all_gather(scores, axis=0), context.all_gather(indices, axis=0)

    def _train_weights(self, x, y, indices, all_scores, context):
        """One masked optimizer step on the sampled paths; returns the mean training loss."""
        samples, replicas = self.samples_per_replica, context.num_replicas_in_sync
        loss_weights = sample_loss_weights(all_scores, self.weight_update, self.temperature)
        if replicas > 1:
            loss_weights = loss_weights[samples * context.replica_id_in_sync_group:][:samples]
        # Mean over samples; the optimizer all-reduces with SUM over replicas.
        scale = 1.0 / (samples * replicas)
        weights, boxes = self.supernet.trainable_variables, self._box_gradients(replicas)
        split, window = self.path_batch == "split", self.paths_in_flight
        with tf.GradientTape() as shared_tape:
            features, start, shared = self._shared_features(None if split else x)
        losses, total, shared_total = [], None, None
        for s in range(samples):
            inputs, part_y = (features, y)
            if split:
                inputs = tf.nest.map_structure(lambda t, s=s: t[s::samples], x)
                part_y = y[s::samples]
            # Path s starts once path s - window has finished (one path at a time: window 1).
            with tf.control_dependencies([losses[s - window]] if s >= window else []):
                loss_s, grads_s, shared_s = self._train_path(
                    inputs, part_y, indices[s], ops.stop_gradient(loss_weights[s]) * scale,
                    (start, shared, s, context.replica_id_in_sync_group), boxes)
            losses.append(loss_s)
            # Running sums: a path's gradients are freed once added (memory of two paths, not K).
            total = self._add_paths(total, grads_s, boxes)
            shared_total = _sum_each(shared_total, shared_s)
        per_weight = [[gradient] for gradient in total]  # each weight's summed gradient
        self._add_shared_gradients(per_weight, shared_tape, features, shared, shared_total, boxes)
        if boxes:  # summed inside the update
            self.optimizer.apply_box_gradients(per_weight, weights)
        else:
            self.optimizer.apply_gradients(zip([_sum(g) for g in per_weight], weights))
        return ops.mean(ops.stack(losses))

    def _train_path(self, x, y, indices, scale, where, boxes):
        """(loss, gradients, gradients at the shared features) of path `sample` (`where`:
        `(start, shared, sample, replica_id)`), its deferred batch-norm updates applied."""
        start, shared, sample, replica_id = where
        loss, gradients, shared_gradients, statistics = self._path_function(boxes, sample)(
            x, y, indices, scale, start, shared, *self._path_draws(y, sample, replica_id))
        self._apply_statistics(statistics)
        return loss, gradients, shared_gradients

    def _path_function(self, boxes, sample):
        """The traced per-path function path `sample` runs. With two paths in flight the
        odd paths call it through a second instance of the same trace (TensorFlow keys a
        function's instance by its executor type; "DEFAULT" is the default executor): two
        calls of one instance at once share its kernels, and oneDNN's then corrupt the
        heap (BENCHMARKS.md 1e, session 13)."""
        function = self._sample_box_gradients if boxes else self._sample_gradients
        if sample % self.paths_in_flight == 0:
            return function

        def second_instance(*args):
            with tf.experimental.function_executor_type("DEFAULT"):
                return function(*args)

        return second_instance

    def _shared_features(self, x, update_statistics=True):
        """`(features, start, names)`: the output of the supernet's `shared_layers` on `x`,
        run once for the K paths (the stems: no searchable argument), the plan layer the
        paths start at and the features those layers wrote. `x` None: none shared (the
        paths start at the clips)."""
        if x is None or not self.supernet.shared_layers:
            return x, 0, ()
        features, names = self.supernet.shared_features(
            x, training=True, update_statistics=update_statistics)
        return features, self.supernet.shared_layers, names

    def _add_paths(self, total, path, boxes):
        """The running sum of the paths' gradients (None before the first) with one more
        `path`: box gradients summed in their union box by one traced function (not
        inlined), whole gradients added in the step (through the function they would
        lengthen the search's start-up by about 1.5 s; BENCHMARKS.md 1e, session 12)."""
        if total is None or not boxes:
            return _sum_each(total, path)
        weights = self.supernet.trainable_variables
        boxed = [i for i, (_, begin) in enumerate(path) if begin is not None]
        shapes = tuple(tuple(weights[i].shape) for i in boxed)
        sums = dict(zip(boxed, _add_box_paths([total[i] for i in boxed],
                                              [path[i] for i in boxed], shapes)))
        return [sums[i] if i in sums else (_sum((a[0], b[0])), None)
                for i, (a, b) in enumerate(zip(total, path))]

    def _add_shared_gradients(self, per_weight, tape, features, names, totals, boxes):
        """Appends to `per_weight` the shared layers' weight gradients: one backward pass
        of the K paths' summed gradients at the shared features (`totals`; the same as K)."""
        if not names:
            return
        targets = [(features[n], g) for n, g in zip(names, totals) if g is not None]
        if not targets:
            return
        weights = self.supernet.trainable_variables
        grads = tape.gradient([t for t, _ in targets], weights,
                              output_gradients=[g for _, g in targets])
        for parts, gradient in zip(per_weight, grads):
            if gradient is not None:
                parts.append((gradient, None) if boxes else gradient)

    def _box_gradients(self, replicas) -> bool:
        """Whether the step takes gradients of the active boxes (`box_gradients`): with a
        masked optimizer that restricts its update, on one replica (the all-reduce of
        several replicas needs the widest shapes)."""
        accepts = getattr(self.optimizer, "accepts_box_gradients", None)
        return replicas == 1 and accepts is not None and accepts()

    def _path_draws(self, y, sample, replica_id):
        """`(sparse_keep, dropout_draws)` of path `sample`, drawn from the step's seed (a
        resumed search draws the same): stream dropout's per-clip 0/1 mask of the sparse
        features and the classifier dropout's uniform draws (each None where its rate is 0)."""
        seed = tf.random.experimental.stateless_fold_in(self._step_seed(replica_id), 1 + sample)
        batch, head = tf.shape(y)[0], self.supernet.classifier
        keep, draws = None, None
        if self.stream_dropout:
            keep = keep_mask(tf.random.stateless_uniform((batch, 1), seed=seed),
                             self.stream_dropout)
        if head.dropout_rate:
            draws = tf.random.stateless_uniform(
                (batch, head.hidden_units), seed=tf.random.experimental.stateless_fold_in(seed, 1))
        return keep, draws

    def _update_logits(self, all_scores, all_indices, replicas):
        """The logits' step on -sum_k a_k log p(A_k) and the expected-MACs hinge.

        With Adam the two terms are summed into one gradient (the paper's). With
        `EvidenceOptimizer` the hinge's exact gradient takes a plain gradient step of
        its own (`direct_hinge`): it needs no evidence, and summed into the noisy
        accuracy gradient it would take hundreds of steps to pass the threshold.
        Returns (the first term, E[MACs]).
        """
        logits, direct = self.distribution.trainable_variables, self.direct_hinge
        with tf.GradientTape(persistent=direct) as tape:
            logits_loss, expected_macs = self._logits_terms(all_scores, all_indices)
            hinge = self._hinge(expected_macs) / replicas if self.hinge == "expected" else 0.0
            total = logits_loss / replicas + (0.0 if direct else hinge)
        if logits:
            self._gated_step(self.logits_optimizer, tape.gradient(total, logits), logits)
            if direct:
                gradients = tape.gradient(hinge, logits,
                                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
                self._gated_step(self._hinge_optimizer, gradients, logits)
        return logits_loss, expected_macs

    def _logits_terms(self, all_scores, all_indices):
        coefficients = ops.stop_gradient(
            advantages(all_scores, self.weighting, self.temperature))
        log_p = self.distribution.log_prob(all_indices)
        return -ops.sum(coefficients * log_p), self.distribution.expected_macs()

    def _gated_step(self, optimizer, gradients, logits):
        """One optimizer step, a no-op while `logits_frozen` (warm-up).

        No control flow (tf.distribute refuses an optimizer update inside tf.cond):
        zero gradients leave the logits and the optimizer's (zero) state as they
        are, and the step counter is given back.
        """
        frozen = ops.convert_to_tensor(self.logits_frozen_flag)
        gradients = [tf.where(frozen, tf.zeros_like(g), g) for g in gradients]
        optimizer.apply_gradients(zip(gradients, logits))
        iterations = optimizer.iterations
        iterations.assign_sub(tf.cast(frozen, iterations.dtype))

    @property
    def direct_hinge(self) -> bool:
        """Whether the expected-MACs hinge takes its own gradient step (evidence logits)."""
        return (self.hinge == "expected" and self.target_macs is not None
                and isinstance(self.logits_optimizer, EvidenceOptimizer))

    def _sample_gradients_eager(self, x, y, indices, scale, start=0, shared=(),
                                sparse_keep=None, dropout_draws=None):
        """(loss, gradients of scale * loss, its gradients at the `shared` features, its
        batch-norm updates, deferred: `_apply_statistics`) of one sampled architecture;
        `x` the clips, or the features of the first `start` plan layers
        (`_shared_features`). It writes no variable of the supernet's blocks."""
        weights, features = self.supernet.trainable_variables, [x[name] for name in shared]
        with tf.GradientTape() as tape, deferred_updates() as records:
            tape.watch(features)
            scaled, loss = self._scaled_loss(x, y, indices, scale, start, sparse_keep,
                                             dropout_draws)
        grads = tape.gradient(scaled, weights + features)
        return loss, grads[:len(weights)], grads[len(weights):], self._deferred(records)

    def _sample_box_gradients_eager(self, x, y, indices, scale, start=0, shared=(),
                                    sparse_keep=None, dropout_draws=None):
        """As `_sample_gradients_eager`, with `(gradient, begin)` per weight: the gradients
        of the boxes the path reads (`box_gradients`)."""
        weights, features = self.supernet.trainable_variables, [x[name] for name in shared]
        boxed = [self.optimizer.restricts(weight) for weight in weights]  # small ones whole
        with tf.GradientTape() as tape, box_reads(tape, weights, boxed) as reads, \
                deferred_updates() as records:
            tape.watch(features)
            scaled, loss = self._scaled_loss(x, y, indices, scale, start, sparse_keep,
                                             dropout_draws)
        pairs, shared_grads = reads.gradients_and(scaled, features)
        return loss, pairs, shared_grads, self._deferred(records)

    def _deferred(self, records):
        """The batch-norm updates deferred in `records` (`deferred_updates`), each field
        of the layers' (mask, mean, variance) concatenated: three tensors, not three a
        layer, for `_apply_statistics`. The layers, the same at every trace, are kept."""
        self._statistics_layers = [record[0] for record in records]
        return tuple(tf.concat([record[field] for record in records], 0) if records else ()
                     for field in (1, 2, 3))

    def _apply_statistics_eager(self, statistics):
        """Applies a path's deferred batch-norm updates (`_sample_gradients` returns them)."""
        if not self._statistics_layers:
            return
        sizes = [layer.channels for layer in self._statistics_layers]
        fields = [tf.split(field, sizes) for field in statistics]
        apply_updates(self._statistics_layers, list(zip(*fields)))

    def _scaled_loss(self, x, y, indices, scale, start, sparse_keep, dropout_draws=None):
        with self._tap_loops():
            logits = self.supernet(x, indices=indices, training=True, sparse_keep=sparse_keep,
                                   start=start, dropout_draws=dropout_draws)
        loss = ops.cast(self._loss_fn(y, logits), "float32")
        return loss * scale, loss

    def _sample_score_eager(self, x, y, indices, start=0):
        with self._tap_loops():
            logits = self.supernet(x, indices=indices, training=True, update_statistics=False,
                                   start=start)
        return ops.cast(self._score_fn(y, logits, indices), "float32")

    def _tap_loops(self):
        """`inlined_tap_loops`, on with two paths in flight: no nested function instance
        serves two paths at once (oneDNN; BENCHMARKS.md 1e, sessions 13 and 14)."""
        return inlined_tap_loops(self.paths_in_flight > 1)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with Grappler as `graph_optimization` says (the remapper alone
        on CPUs)."""
        with graph_optimization(self.graph_optimization):
            return super().fit(*args, **kwargs)

    def test_step(self, data):
        """Loss and score of the current most probable architecture on `(x, y)` batches."""
        x, y = data
        logits = self(x, training=False)
        self._trackers["loss"].update_state(self._loss_fn(y, logits))
        self._trackers["heldout_score"].update_state(self._score_fn(y, logits, None))
        return {n: self._trackers[n].result() for n in ("loss", "heldout_score")}

    def get_config(self):
        if callable(self.score):
            raise TypeError("A ParsecSearch with a custom score function cannot be serialised.")
        return {
            "name": self.name,
            "space": space_to_dict(self.space),
            "num_classes": self.num_classes,
            "crop": self.crop,
            "samples_per_replica": self.samples_per_replica,
            "score": self.score,
            "weighting": self.weighting,
            "temperature": self.temperature,
            "weight_update": self.weight_update,
            "path_batch": self.path_batch,
            "target_macs": list(self.target_macs) if self.target_macs else None,
            "macs_penalty": self.macs_penalty,
            "hinge": self.hinge,
            "seed": self.seed,
            "dynamic_shapes": self.supernet.dynamic_shapes,
            "outer_taps": self.supernet.outer_taps,
            "warmup_sampling": self.warmup_sampling,
            "stream_dropout": self.stream_dropout,
            "graph_optimization": self.graph_optimization,
            "paths_in_flight": self.paths_in_flight,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# Grappler's optimizers a search runs on CPUs (`graph_optimization(None)`): the remapper
# alone. Grappler whole spends minutes on the first call of the search step (a graph of
# every choice's switch branches: start-up of the paper's step-1 search at crop 64, 354 s
# with it, 212 s without; BENCHMARKS.md 3c). The remapper alone adds 3-5 s and fuses what it
# fuses in a fixed model (swish, ...): the search process peaks 13% lower at crop 64 and item
# 3's step is 2-7% faster in one process (BENCHMARKS.md 1e, session 17).
CPU_OPTIMIZERS = ("remapping",)
# Grappler's optimizers that run unless turned off (TensorFlow's `RewriterConfig`).
GRAPPLER_OPTIMIZERS = ("layout_optimizer", "constant_folding", "shape_optimization", "remapping",
                       "arithmetic_optimization", "dependency_optimization", "loop_optimization",
                       "function_optimization", "implementation_selector")
# The value of each option `graph_optimization` sets, where nothing set it before.
_DEFAULT_OPTIONS = {"disable_meta_optimizer": False,
                    **{name: True for name in GRAPPLER_OPTIMIZERS}}


def check_graph_optimization(enabled):
    """`enabled` if `graph_optimization` takes it: None, a bool, or a tuple or list of
    names of `GRAPPLER_OPTIMIZERS`; a ValueError naming what is wrong otherwise."""
    if enabled is None or isinstance(enabled, bool):
        return enabled
    if not isinstance(enabled, (tuple, list)):
        raise ValueError("`graph_optimization` must be None, True, False or a tuple of "
                         f"Grappler optimizer names, got {enabled!r}.")
    unknown = [name for name in enabled if name not in GRAPPLER_OPTIMIZERS]
    if unknown:
        raise ValueError(f"`graph_optimization`: unknown Grappler optimizers {unknown}; "
                         f"they are {list(GRAPPLER_OPTIMIZERS)}.")
    return tuple(enabled)


def _grappler_options(enabled) -> dict:
    """`tf.config.optimizer` options of `graph_optimization(enabled)`."""
    if enabled is None:
        enabled = True if tf.config.list_logical_devices("GPU") else CPU_OPTIMIZERS
    if isinstance(enabled, bool):
        return {"disable_meta_optimizer": not enabled}
    return {"disable_meta_optimizer": False,
            **{name: name in enabled for name in GRAPPLER_OPTIMIZERS}}


@contextlib.contextmanager
def graph_optimization(enabled=None):
    """Grappler for the functions first run inside: all of it (True), none (False), the
    named optimizers alone (a tuple of `GRAPPLER_OPTIMIZERS` names), or (None, the
    default) all of it when a GPU is visible and the remapper alone on CPUs
    (`CPU_OPTIMIZERS`). Each option set here goes back to its value before, or to its
    default (`_DEFAULT_OPTIONS`) where it had none."""
    options = _grappler_options(check_graph_optimization(enabled))
    previous = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options(options)
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options(
            {name: previous.get(name, _DEFAULT_OPTIONS[name]) for name in options})


def _largest_kernel_indices(variables) -> np.ndarray:
    """(V,) int32: the index of each kernel variable's largest choice, -1 for the others."""
    return np.array([int(np.argmax(v.choices)) if v.name in KERNEL_VARIABLES else -1
                     for v in variables], dtype="int32")


@functools.partial(not_inlined, reduce_retracing=True, autograph=False)
def _add_box_paths(total, path, shapes):
    """`sum_boxes` of each weight's running sum and one more path's `(gradient, begin)`."""
    return sum_boxes_each([[a, b] for a, b in zip(total, path)], shapes)


def _sum_each(total, path):
    """`total` and `path` added gradient by gradient; `path` itself when `total` is None."""
    return path if total is None else [_sum(pair) for pair in zip(total, path)]


def _sum(gradients):
    """The sum of the non-None `gradients`, or None."""
    present = [g for g in gradients if g is not None]
    return sum(present[1:], present[0]) if present else None


def _check_search_options(samples_per_replica, score, temperature, weighting, weight_update,
                          path_batch, hinge, macs_penalty, warmup_sampling,
                          paths_in_flight=1) -> None:
    """`ParsecSearch`'s option checks (a ValueError naming the argument)."""
    if isinstance(samples_per_replica, bool) or not isinstance(samples_per_replica, int) \
            or samples_per_replica < 1:
        raise ValueError(
            f"`samples_per_replica` must be a positive int, got {samples_per_replica!r}."
        )
    if not callable(score) and score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES} or a callable, got {score!r}.")
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature!r}.")
    for name, value, allowed in (("weighting", weighting, WEIGHTINGS),
                                 ("weight_update", weight_update, WEIGHT_UPDATES),
                                 ("path_batch", path_batch, PATH_BATCHES),
                                 ("hinge", hinge, HINGES),
                                 ("warmup_sampling", warmup_sampling, WARMUP_SAMPLINGS)):
        if value not in allowed:
            raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    if macs_penalty < 0:
        raise ValueError(f"`macs_penalty` must be >= 0, got {macs_penalty!r}.")
    if type(paths_in_flight) is not int or paths_in_flight not in PATHS_IN_FLIGHT:
        raise ValueError(
            f"`paths_in_flight` must be one of {PATHS_IN_FLIGHT}, got {paths_in_flight!r}.")


def custom_search_loop(search, strategy, dataset, steps, callbacks=None):
    """Runs `steps` search steps with `tf.function(strategy.run(train_step))`.

    The bare loop for `MultiWorkerMirroredStrategy`, where Keras' `fit` fails
    (keras-team/keras issue 20585): no outputs, checkpoints, history or resume.
    `run_search_step(..., strategy=strategy)` runs the same steps with all of
    them (docs/multi_worker.md). Build and compile `search` in
    `strategy.scope()` first.

    Args:
        search: a compiled `ParsecSearch`.
        strategy: a `tf.distribute.Strategy`.
        dataset: a `tf.data.Dataset` from `search_dataset` (global batches,
            auto-sharded by tf.distribute), or a callable
            `input_context -> dataset` of this worker's per-replica batches
            (`strategy.distribute_datasets_from_function`: shard the video list
            with `video_dataset(..., shard=input_context)`, nothing else decoded).
        steps: int. Steps to run.
        callbacks: optional list of callables `callback(step, logs)` run after
            each step (on every worker).

    Returns:
        The logs (dict of floats) of the last step.
    """
    if callable(dataset):
        distributed = strategy.distribute_datasets_from_function(dataset)
    else:
        distributed = strategy.experimental_distribute_dataset(dataset)
    iterator = iter(distributed)

    @tf.function
    def step_fn(iterator):
        outputs = strategy.run(search.train_step, args=(next(iterator),))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in outputs.items()}

    logs = {}
    for step in range(steps):
        logs = {k: float(v) for k, v in step_fn(iterator).items()}
        for callback in callbacks or ():
            callback(step, logs)
    return logs


__all__ = [
    "ParsecSearch",
    "accuracy_score",
    "check_target_macs",
    "cross_entropy",
    "custom_search_loop",
    "log_likelihood_score",
    "search_dataset",
]
