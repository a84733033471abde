#include "intr/ioapic.h"

#include "arch/x86.h"
#include "kernel/layout.h"

#define IOAPIC_REGSEL 0x00
#define IOAPIC_WINDOW 0x10
#define IOAPIC_REG_ID 0x00
#define IOAPIC_REG_VERSION 0x01
#define IOAPIC_REG_REDIR 0x10  // entry n: low dword at 0x10 + 2n, high at 0x11 + 2n

#define REDIR_MASKED (1u << 16)
#define REDIR_LEVEL (1u << 15)

// Register select + window is a two-step access; callers that route from
// several CPUs at once must serialize (drivers route during init only).
static uint32_t ioapic_read(uint32_t reg) {
  mmio_write32(IOAPIC_BASE + IOAPIC_REGSEL, reg);
  return mmio_read32(IOAPIC_BASE + IOAPIC_WINDOW);
}

static void ioapic_write(uint32_t reg, uint32_t v) {
  mmio_write32(IOAPIC_BASE + IOAPIC_REGSEL, reg);
  mmio_write32(IOAPIC_BASE + IOAPIC_WINDOW, v);
}

uint32_t ioapic_id(void) { return ioapic_read(IOAPIC_REG_ID) >> 24; }
uint32_t ioapic_version(void) { return ioapic_read(IOAPIC_REG_VERSION); }
unsigned ioapic_num_pins(void) { return ((ioapic_version() >> 16) & 0xff) + 1; }

void ioapic_route(unsigned gsi, unsigned vector, uint32_t dest, bool level) {
  uint32_t low = (vector & 0xff) | (level ? REDIR_LEVEL : 0);  // fixed, physical
  ioapic_write(IOAPIC_REG_REDIR + 2 * gsi, REDIR_MASKED);
  ioapic_write(IOAPIC_REG_REDIR + 2 * gsi + 1, dest << 24);
  ioapic_write(IOAPIC_REG_REDIR + 2 * gsi, low);  // unmasks
}

void ioapic_mask(unsigned gsi) { ioapic_write(IOAPIC_REG_REDIR + 2 * gsi, REDIR_MASKED); }
