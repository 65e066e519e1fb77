"""The CPU a benchmark ran on, in one line, for the head of its output.

The speed ratios of `bench_x3d.py` and `bench_search.py` depend on the CPU, not only on
its core count: on the AMX machine of BENCHMARKS.md section 1b TensorFlow's oneDNN kernels
beat PyTorch's by 2x, on an AVX2-only EPYC (section 1d) by much less. So each run prints
the model name and the vector extensions that decide which kernels oneDNN uses.

    >>> describe()  # doctest: +SKIP
    'AMD EPYC, 2 cores; AVX2 FMA (no AVX-512, AMX)'
"""

import os
import platform

# The extensions that choose oneDNN's and torch's CPU kernels, as /proc/cpuinfo names them.
FLAGS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16",
         "amx_bf16": "AMX"}
ABSENT_NAMED = ("avx512f", "amx_bf16")


def _cpuinfo_fields(text):
    """(model name, set of flags) of the first processor in a /proc/cpuinfo text."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def describe(cpuinfo_path="/proc/cpuinfo", cores=None):
    """`'<model>, <n> cores; <extensions present> (no <missing ones>)'`."""
    cores = os.cpu_count() if cores is None else cores
    try:
        with open(cpuinfo_path) as handle:
            model, flags = _cpuinfo_fields(handle.read())
    except OSError:
        return f"{platform.processor() or platform.machine()}, {cores} cores"
    present = " ".join(name for flag, name in FLAGS.items() if flag in flags)
    missing = ", ".join(FLAGS[flag] for flag in ABSENT_NAMED if flag not in flags)
    line = f"{model or platform.machine()}, {cores} cores; {present or 'no AVX2'}"
    return f"{line} (no {missing})" if missing else line
