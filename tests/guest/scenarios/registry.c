#include "scenarios/scenario.h"

#include "lib/string.h"

extern const struct scenario __scenarios_start[], __scenarios_end[];  // guest.ld

const struct scenario *scenario_find(const char *name) {
  for (const struct scenario *s = __scenarios_start; s < __scenarios_end; s++) {
    if (strcmp(s->name, name) == 0) return s;
  }
  return NULL;
}
