// Scenarios: what the guest does after booting, chosen by hearth.test=NAME.
//
// To add one: create scenarios/NAME.c with
//
//   static void run(void) { ...; test_pass(); }
//   SCENARIO(NAME, run);
//
// add the file to BUILD.bazel (GUEST_SRCS), and (if it passes under QEMU) to
// qemu_guest_test.sh. run() starts at CPL0 on the BSP with interrupts off,
// the LAPIC enabled and the APs not started; it must end the test with
// test_pass() or test_fail() (returning is a failure). Use user_call() for
// anything that loops (CPL0 is emulated here, ~1.6 M instructions/s).
#ifndef GUEST_SCENARIOS_SCENARIO_H_
#define GUEST_SCENARIOS_SCENARIO_H_

struct scenario {
  const char *name;
  void (*run)(void);
};

// Places a struct scenario in the .scenarios section (collected by guest.ld).
#define SCENARIO(name_, run_)                   \
  static const struct scenario scenario_##name_ \
      __attribute__((used, section(".scenarios"), aligned(8))) = {#name_, run_}

// Looks a scenario up by name; NULL if there is none.
const struct scenario *scenario_find(const char *name);

#endif  // GUEST_SCENARIOS_SCENARIO_H_
