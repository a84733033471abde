// I/O APIC at IOAPIC_BASE (0xfec00000): routes a GSI (device interrupt line)
// to a vector on one CPU. The 82093AA datasheet, section 3.2.4. Drivers route
// GSI n to vector VEC_IRQ_BASE + n (kernel/layout.h) and register a handler
// with irq_register(); Hearth's virtio-mmio devices use GSI 5..23.
#ifndef GUEST_INTR_IOAPIC_H_
#define GUEST_INTR_IOAPIC_H_

#include <stdbool.h>
#include <stdint.h>

// IOAPIC ID and version registers (version: bits 0-7; max redirection entry:
// bits 16-23, i.e. number of pins - 1).
uint32_t ioapic_id(void);
uint32_t ioapic_version(void);
unsigned ioapic_num_pins(void);

// Routes |gsi| to |vector| on the CPU with LAPIC ID |dest| and unmasks it.
// Edge-triggered active-high (ISA/virtio-mmio style) unless |level|.
void ioapic_route(unsigned gsi, unsigned vector, uint32_t dest, bool level);
void ioapic_mask(unsigned gsi);

#endif  // GUEST_INTR_IOAPIC_H_
