# Sourced by qemu_guest_test.sh and qemu_virtio_test.sh (from the runfiles
# root): the checks both make of the test guest's serial output under QEMU.
#
#   require_kvm_and_qemu   prints SKIPPED and exits 0 without them
#   capture CMD...         runs CMD: $out is its stdout + stderr without \r,
#                          $status its exit status, $elapsed_ms its wall time
#   has_line LINE          LINE is a whole line of $out; "re:REGEX" matches
#                          an extended regular expression instead
#   fail WHAT              counts a failure and prints $out
#   finish                 the verdict: exits 1 if anything failed

failures=0
out=""
status=0
elapsed_ms=0

require_kvm_and_qemu() {
  if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    echo "SKIPPED: /dev/kvm is missing or not accessible"
    exit 0
  fi
  if ! command -v qemu-system-x86_64 >/dev/null; then
    echo "SKIPPED: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
    exit 0
  fi
}

capture() {
  local start end
  start=$(date +%s%N)
  # The exit status is CMD's, not tr's: PIPESTATUS is read inside the
  # substitution and becomes its status.
  out="$("$@" 2>&1 | tr -d '\r'; exit "${PIPESTATUS[0]}")"
  status=$?
  end=$(date +%s%N)
  elapsed_ms=$(( (end - start) / 1000000 ))
}

has_line() {
  case "$1" in
    re:*) grep -qxE -- "${1#re:}" <<<"$out" ;;
    *) grep -qxF -- "$1" <<<"$out" ;;
  esac
}

fail() {
  echo "FAIL: $*"
  echo "----- output -----"
  echo "$out"
  echo "------------------"
  failures=$((failures + 1))
}

finish() {
  if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
  fi
  echo "all checks passed"
}
