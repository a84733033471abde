// A test-and-set spinlock usable at CPL0 and CPL3. xchg (implicitly locked)
// and plain release stores only: the CPL0 emulator handles both, while
// mfence and cmpxchg16b are not emulated on this host.
#ifndef GUEST_KERNEL_SPINLOCK_H_
#define GUEST_KERNEL_SPINLOCK_H_

#include <stdbool.h>
#include <stdint.h>

#include "arch/x86.h"

struct spinlock {
  volatile uint32_t locked;
};

static inline bool spin_trylock(struct spinlock *l) {
  return __atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE) == 0;
}

static inline void spin_lock(struct spinlock *l) {
  while (!spin_trylock(l)) {
    while (l->locked) cpu_relax();
  }
}

static inline void spin_unlock(struct spinlock *l) {
  __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}

#endif  // GUEST_KERNEL_SPINLOCK_H_
