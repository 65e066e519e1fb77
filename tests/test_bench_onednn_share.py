"""benchmarks/bench_onednn_share.py: oneDNN's verbose log split among the timed calls."""

import pytest

from tests.scripts import load_script

# Lines as oneDNN 3.7 writes them with ONEDNN_VERBOSE=1 and ONEDNN_VERBOSE_TIMESTAMP=1.
HEADER = ("onednn_verbose,v1,primitive,info,template:timestamp,operation,engine,primitive,"
          "implementation,prop_kind,memory_descriptors,attributes,auxiliary,problem_desc,"
          "exec_time")


def _kernel(stamp, kind, prop, ms):
    return (f"onednn_verbose,v1,{stamp},primitive,exec,cpu,{kind},jit:avx512_core,{prop},"
            f"src:f32::blocked:acdb::f0,,alg:convolution_direct,mb32_ic3oc24,{ms}")


def _module():
    return load_script("benchmarks/bench_onednn_share.py", "bench_onednn_share")


def test_each_kernel_counts_in_the_call_it_ran_in_and_the_weights_part_per_path():
    log = [
        HEADER,
        _kernel(1000.5, "convolution", "backward_weights", 2.0),  # before any call: not counted
        "WINDOW fixed 1001.000 1011.000",
        _kernel(1002.0, "gemm_api", "undef", 3.0),
        _kernel(1010.0, "convolution", "backward_weights", 1.5),
        "WINDOW weights 1020.000 1060.000",
        _kernel(1030.0, "gemm_api", "undef", 8.0),
        _kernel(1059.0, "batch_normalization", "backward", 4.0),
    ]
    result = _module().split_calls(log, samples=4)
    (fixed_wall, fixed_onednn, fixed_kinds), = result["fixed"]
    assert (fixed_wall, fixed_onednn) == (10.0, 4.5)
    assert fixed_kinds == {"gemm_api undef": 3.0, "convolution backward_weights": 1.5}
    (path_wall, path_onednn, path_kinds), = result["weights"]
    assert (path_wall, path_onednn) == (10.0, 3.0)  # 40 ms and 12 ms over K = 4 paths
    assert path_kinds == {"gemm_api undef": 2.0, "batch_normalization backward": 1.0}


def test_info_lines_and_the_programs_own_output_are_not_kernels():
    module = _module()
    log = [HEADER, "onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2", "fixed: 3 calls",
           _kernel(5.0, "reorder", "undef", 0.25)]
    assert module.verbose_kernels(log) == [(5.0, "reorder undef", 0.25)]
    assert module.windows(log) == []


@pytest.mark.parametrize("threads", [["--threads", "1"], ["--threads", "1", "x"]])
def test_a_bad_threads_option_is_refused_before_anything_runs(threads, capsys):
    with pytest.raises(SystemExit):
        _module().main(threads)
    assert "--threads" in capsys.readouterr().err
