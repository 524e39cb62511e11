#!/usr/bin/env bash
# Run a command as on the slower kind of test machine: 2 cores, AVX2 only (no AVX512, no native
# bf16), about half the speed of the AVX512 kind. Two emulations on the AVX512 kind:
#
# bench/avx2.sh --qemu PROGRAM ARGS: the program under `qemu-x86_64 -cpu EPYC-Rome` (Debian's
# qemu-user), an AVX2-only AMD EPYC as CPUID reports it, so numpy, torch (ATen, oneDNN) and
# onnxruntime (MLAS) all pick the kernels they pick on the AVX2 kind, the int8 ones included
# (onnxruntime has no setting that limits its instruction sets). Faithful in results, not in
# speed: TCG runs 20-50x slower. Issue 24's int8 saturation reproduced exactly under it (digits
# LeNet-5, 8-bit weights: 166/180 agreement, 88.89%, as on the real AVX2 machine):
#   bench/avx2.sh --qemu .venv/bin/python -m pytest tests/core/test_checks_travel.py
#
# bench/avx2.sh PROGRAM ARGS: speed as on the AVX2 kind, for torch only:
# - oneDNN, ATen's vector kernels and MKL are limited to AVX2, so imgcls's auto precision
#   picks fp32, as it does there;
# - one thread on one core (CPU 1), in a cgroup capped at 85% of it where /sys/fs/cgroup/cpu is
#   writable (root): the AVX2 kind's two cores ran issue 11's networks at about that speed.
#
# Calibration (2026-11-30, 2-core AMD EPYC VM with AVX512 + native bf16, torch 2.14.1;
# `bench/avx2.sh imgcls models --bench --image-size 28 --channels 1 --seconds 5`, training
# images/s at batch 128, fp32) against issue 11's numbers from a real 2-core AVX2 machine:
#                          lenet5   alexnet   vgg11_bn
#   AVX2 kind (issue 11)    4,990        67         96
#   this script             5,463        66         85
#   AVX2 limits, 1 thread,
#     no cap                6,100        80        109
#   AVX2 limits, 2 threads 10,644         -        198    (twice the real kind: not used)
#
#   bench/avx2.sh imgcls train --data fashion-mnist --time-budget 2m
set -e
if [ "${1:-}" = "--qemu" ]; then
    shift
    command -v qemu-x86_64 >/dev/null || { echo "bench/avx2.sh: apt-get install qemu-user" >&2; exit 2; }
    exec qemu-x86_64 -cpu EPYC-Rome "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2)
fi
export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
export OMP_NUM_THREADS=1
group=/sys/fs/cgroup/cpu/imgcls-avx2
if mkdir -p "$group" 2>/dev/null && echo 100000 > "$group/cpu.cfs_period_us" \
    && echo 85000 > "$group/cpu.cfs_quota_us" && echo $$ > "$group/cgroup.procs"; then :
else
    echo "bench/avx2.sh: cannot cap the CPU at 85% (needs a writable $group); running uncapped" >&2
fi
exec taskset -c 1 "$@"
