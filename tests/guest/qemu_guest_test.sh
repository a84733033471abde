#!/bin/bash
# //tests/guest:qemu_guest_test — boots every test-guest scenario in QEMU's
# microvm (PVH entry) on this host's /dev/kvm and checks the serial output.
# A scenario passes only on its exact "HEARTH-TEST-PASS <name>" line, never
# on QEMU's exit status alone; the crash scenarios must print no result line.
# Prints SKIPPED and exits 0 without /dev/kvm or qemu-system-x86_64.
set -u

cd "${TEST_SRCDIR:-.}/${TEST_WORKSPACE:-hearth}" 2>/dev/null || true
run_qemu="tests/guest/run-qemu"
guest="tests/guest/guest.elf"
export HEARTH_GUEST_ELF="$PWD/$guest"
. tests/guest/qemu_test_lib.sh
require_kvm_and_qemu

if [ -d /sys/module/kvm_pvm ]; then
  echo "host: software-nested KVM (kvm_pvm): guest CPL0 is emulated"
elif [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
  echo "host: hardware KVM"
else
  echo "host: unknown KVM flavour"
fi

# run CPUS WORDS...: boots the guest (see capture).
run() {
  local cpus="$1"
  shift
  capture "$run_qemu" --cpus "$cpus" --timeout 60 -- "$@"
}

# expect_pass NAME CPUS [EXTRA WORDS...] [-- REQUIRED LINES...]
expect_pass() {
  local name="$1" cpus="$2"
  shift 2
  local words=() lines=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do words+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  lines=("$@")
  run "$cpus" "hearth.test=$name" "${words[@]}"
  if ! has_line "HEARTH-TEST-PASS $name"; then
    fail "$name ($cpus vcpu): no 'HEARTH-TEST-PASS $name' line (qemu exit $status)"
    return
  fi
  if ! has_line "hearth-guest: boot=pvh test=$name"; then
    fail "$name ($cpus vcpu): banner does not say boot=pvh"
    return
  fi
  for l in "${lines[@]}"; do
    if ! has_line "$l"; then
      fail "$name ($cpus vcpu): missing line '$l'"
      return
    fi
  done
  echo "ok   $name ($cpus vcpu) ${elapsed_ms} ms"
}

# expect_line DESCRIPTION LINE CPUS WORDS...: the exact LINE must appear.
expect_line() {
  local what="$1" line="$2" cpus="$3"
  shift 3
  run "$cpus" "$@"
  if has_line "$line"; then
    echo "ok   $what ($cpus vcpu) ${elapsed_ms} ms"
  else
    fail "$what ($cpus vcpu): no '$line' line (qemu exit $status)"
  fi
}

# expect_crash NAME: no result line at all, and QEMU stopped because the
# vCPU died (0: shutdown/triple fault, 125: KVM internal error), not because
# the guest ended its run (1) or hung (124).
expect_crash() {
  local name="$1"
  run 1 "hearth.test=$name"
  if grep -q "HEARTH-TEST-" <<<"$out"; then
    fail "$name: printed a result line"
  elif [ "$status" != 0 ] && [ "$status" != 125 ]; then
    fail "$name: qemu exit $status, want 0 (shutdown) or 125 (KVM internal error)"
  else
    local how="shutdown"
    [ "$status" = 125 ] && how="KVM internal error"
    echo "ok   $name crashed the vCPU ($how) ${elapsed_ms} ms"
  fi
}

for cpus in 1 2; do
  expect_pass serial "$cpus" -- "hearth serial line 1 (cpl 0)" "hearth serial line 2 (cpl 0)" \
    "hearth serial line 3 (cpl 3)"
  expect_pass boot_info "$cpus" hearth.echo=hello-hearth-42 hearth.expect_mem_mib=128 -- \
    "echo=hello-hearth-42" "re:boot_info: protocol=pvh rsdp=0x[0-9a-f]+"
  # The default 10,000,000 iterations; the result is fixed by the algorithm.
  expect_pass cpu_loop "$cpus" -- \
    "re:cpu_loop: iterations=10000000 result=0x29f1e4da8019c199 tsc_cycles=[0-9]+ cpl=3"
  expect_pass reset "$cpus"
  expect_pass timer "$cpus" -- "re:timer: 1000000 ticks at cpl 3 took [0-9]+ tsc cycles"
  expect_pass serial_irq "$cpus"
  expect_pass smp "$cpus" "hearth.expect_cpus=$cpus" -- "smp: $cpus cpus checked in"
done
expect_pass smp 4 hearth.expect_cpus=4 -- "smp: 4 cpus checked in"
expect_pass cpu_loop 1 hearth.iterations=1000 -- \
  "re:cpu_loop: iterations=1000 result=0x86f3cb4b9bebcfbe tsc_cycles=[0-9]+ cpl=3"

expect_line "no hearth.test runs serial" "HEARTH-TEST-PASS serial" 1 hearth.echo=x
expect_line "panic fails on purpose" "HEARTH-TEST-FAIL panic deliberate" 1 hearth.test=panic
expect_line "unknown scenario" "HEARTH-TEST-FAIL no_such_test unknown scenario" 1 \
  hearth.test=no_such_test
expect_line "expect_mem_mib mismatch" \
  "HEARTH-TEST-FAIL boot_info ram_total 130687 KiB not in [260096, 261120] KiB (hearth.expect_mem_mib=255)" \
  1 hearth.test=boot_info hearth.expect_mem_mib=255
expect_line "expect_cpus mismatch" \
  "HEARTH-TEST-FAIL smp 1 cpus checked in, hearth.expect_cpus=2" 1 hearth.test=smp \
  hearth.expect_cpus=2
expect_crash ud2
expect_crash triple_fault

finish
