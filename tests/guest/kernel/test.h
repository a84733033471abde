// Test results. Every run ends with exactly one result line on the console,
//   HEARTH-TEST-PASS <scenario>
//   HEARTH-TEST-FAIL <scenario> <reason>
// followed by a machine reset (test_end). Callable at CPL0 and CPL3, from any
// CPU; the first CPU to report wins, others halt.
#ifndef GUEST_KERNEL_TEST_H_
#define GUEST_KERNEL_TEST_H_

#include "intr/idt.h"

// Name used in result lines; "boot" until a scenario has been chosen.
extern const char *test_name;

void test_pass(void) __attribute__((noreturn));
void test_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
// The unexpected-exception failure line (intr/idt.c).
void test_fail_exception(struct trap_frame *frame) __attribute__((noreturn));

// Ends the run without a result line: i8042 reset (Hearth, Firecracker),
// then QEMU's isa-debug-exit port (microvm has no i8042), then halt.
void machine_reset(void) __attribute__((noreturn));

#endif  // GUEST_KERNEL_TEST_H_
