"""Where a search's start-up goes: Python tracing of the train step vs what follows it.

One process per call: build the model (a `ParsecSearch` or a fixed model of the space),
then `fit` for one step, timing the Python trace of `train_step` (its Python body runs
only while tracing) and the rest of the first call (graph finalisation, Grappler when
on, function instantiation, oneDNN primitives, the step itself), then two more steps.

    python benchmarks/bench_search_startup.py --arch search                 # library default
    python benchmarks/bench_search_startup.py --arch search --grappler on   # as before
    python benchmarks/bench_search_startup.py --arch sampled                # fixed model
    python benchmarks/bench_search_startup.py --arch search --inline on     # before 2026-12-04
    python benchmarks/bench_search_startup.py --arch search --lower off     # a lead, not adopted

`--inline on` wraps the search's two per-sample functions as plain `tf.function`s, which
TensorFlow inlines K times into the step (what the library did before it marked them
`_noinline`). `--lower off` sets TensorFlow's private
`control_flow_util_v2._DISABLE_LOWER_USING_SWITCH_MERGE` before anything is traced, so
each switch branch stays a function of its own (BENCHMARKS.md section 3c).

Uses `bench_search.py`'s space (the paper's step-1 space), batches and architectures.
"""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_search as bench  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="search", choices=("search", "sampled", "largest"))
    parser.add_argument("--grappler", default="default", choices=("default", "on", "off"),
                        help="search only: ParsecSearch(graph_optimization=None|True|False)")
    parser.add_argument("--inline", default="off", choices=("off", "on"),
                        help="search only: on = the per-sample functions inlined (as before)")
    parser.add_argument("--lower", default="on", choices=("on", "off"),
                        help="off: switch branches not lowered to Switch/Merge (private TF flag)")
    parser.add_argument("--space", default="paper", choices=("paper", "tiny"),
                        help="tiny: the tests' space, to check this script in seconds")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heldout-batch", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--classes", type=int, default=8)
    args = parser.parse_args(argv)
    args.path_batch = "full"
    args.graph_optimization = {"default": None, "on": True, "off": False}[args.grappler]
    if args.lower == "off":
        from tensorflow.python.ops import control_flow_util_v2

        control_flow_util_v2._DISABLE_LOWER_USING_SWITCH_MERGE = True
    start = time.perf_counter()
    model, data = bench.startup_model(args, bench._space(args.space))
    if args.inline == "on" and args.arch == "search":
        _inline_per_sample_functions(model)
    built = time.perf_counter()
    marks, cls = [], type(model)
    real = cls.train_step

    def traced(self, batch):
        marks.append(time.perf_counter())
        out = real(self, batch)
        marks.append(time.perf_counter())
        return out

    cls.train_step = traced
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    first = time.perf_counter()
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    later = (time.perf_counter() - first) / 2
    print(f"{args.arch} (grappler {args.grappler}): build {built - start:.1f} s, first fit step "
          f"{first - built:.1f} s = Python trace {marks[1] - marks[0]:.1f} s + the rest "
          f"{first - marks[1]:.1f} s; later step {later:.2f} s; load {os.getloadavg()[0]:.1f}; "
          f"inline {args.inline}; lower {args.lower}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def _inline_per_sample_functions(model):
    import tensorflow as tf

    model._sample_gradients = tf.function(model._sample_gradients_eager, reduce_retracing=True)
    model._sample_score = tf.function(model._sample_score_eager, reduce_retracing=True)


if __name__ == "__main__":
    main()
