"""What a measurement made on this machine holds for (imgcls.utils.cpus): the CPU kind says which
kernel-deciding instruction sets it has, CPUID's answer (numpy's) wins over /proc/cpuinfo's,
and the backend timings' machine key tells two CPUs of one model name but other kinds apart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imgcls.predict.backends import timing
from imgcls.utils import cpus

VNNI_EPYC = {"fpu", "avx", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "sha_ni"}


@pytest.fixture(autouse=True)
def fresh_kind() -> Iterator[None]:
    cpus.cpu_kind.cache_clear()
    yield
    cpus.cpu_kind.cache_clear()


def fake_cpu(monkeypatch: pytest.MonkeyPatch, machine: str, proc_flags: set[str],
             cpuid: dict[str, bool]) -> None:
    monkeypatch.setattr(cpus.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpus, "_proc_cpuinfo_flags", lambda: set(proc_flags))
    monkeypatch.setattr(cpus, "_numpy_detected", lambda: dict(cpuid))


def test_the_kind_lists_the_kernel_deciding_features_in_a_fixed_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, "x86_64", VNNI_EPYC, {})
    assert cpus.cpu_kind() == "x86_64 avx2 avx512bw avx512_vnni avx512_bf16"


def test_cpuid_wins_over_proc_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `qemu-x86_64 -cpu EPYC-Rome` /proc/cpuinfo is the host's; CPUID is the guest's."""
    fake_cpu(monkeypatch, "x86_64", VNNI_EPYC,
             {"AVX2": True, "AVX512BW": False, "AVX512VNNI": False, "AVX512BF16": False})
    assert cpus.cpu_kind() == "x86_64 avx2"


def test_aarch64_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, "arm64", {"fp", "asimd", "asimddp", "i8mm"}, {"ASIMDDP": True})
    assert cpus.cpu_kind() == "aarch64 asimddp i8mm"


def test_this_machine_has_a_kind() -> None:
    assert cpus.cpu_kind().split()[0] in ("x86_64", "aarch64")  # the kinds imgcls runs on


def test_timings_of_one_cpu_model_name_are_not_reused_on_another_kind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in cpus.ISA_LIMITS:  # the suite may itself run under bench/avx2.sh's limits
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(timing, "cpu_model", lambda: "AMD EPYC")
    fake_cpu(monkeypatch, "x86_64", VNNI_EPYC, {})
    vnni = timing.machine_key(2)
    cpus.cpu_kind.cache_clear()
    fake_cpu(monkeypatch, "x86_64", {"avx", "avx2"}, {})
    avx2 = timing.machine_key(2)
    assert vnni != avx2 and "AMD EPYC" in vnni and "avx512_vnni" in vnni
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # torch limited as on the AVX2 kind
    assert timing.machine_key(2) != avx2 and "ATEN_CPU_CAPABILITY=avx2" in timing.machine_key(2)
