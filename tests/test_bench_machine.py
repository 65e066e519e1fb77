"""benchmarks/machine.py: the CPU line at the head of the speed benchmarks' output."""

from tests.scripts import load_script


def _module():
    return load_script("benchmarks/machine.py", "bench_machine")


def _cpuinfo(tmp_path, model, flags):
    processor = f"processor\t: {{}}\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
    path = tmp_path / "cpuinfo"
    path.write_text(processor.format(0) + processor.format(1))
    return str(path)


def test_an_avx2_cpu_names_what_it_lacks(tmp_path):
    path = _cpuinfo(tmp_path, "AMD EPYC", "fpu sse2 avx avx2 fma")
    assert _module().describe(path, cores=2) == "AMD EPYC, 2 cores; AVX2 FMA (no AVX-512, AMX)"


def test_an_amx_cpu_lists_its_extensions(tmp_path):
    flags = "avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile"
    path = _cpuinfo(tmp_path, "Intel(R) Xeon(R) Platinum 8480C", flags)
    assert _module().describe(path, cores=2) == (
        "Intel(R) Xeon(R) Platinum 8480C, 2 cores; AVX2 FMA AVX-512 AVX512-BF16 AMX")


def test_without_cpuinfo_it_still_names_the_machine(tmp_path):
    line = _module().describe(str(tmp_path / "missing"), cores=4)
    assert line.endswith(", 4 cores") and len(line) > len(", 4 cores")
