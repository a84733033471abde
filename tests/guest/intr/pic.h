// The legacy 8259 PIC pair. The guest routes every interrupt through the
// IOAPIC, so the PICs are masked at boot: KVM wires each GSI to both the PIC
// and the IOAPIC, and the BSP's LAPIC takes PIC interrupts (ExtINT on
// LINT0), so an unmasked, unprogrammed PIC would deliver GSI n as vector n,
// an exception vector.
#ifndef GUEST_INTR_PIC_H_
#define GUEST_INTR_PIC_H_

void pic_disable(void);

#endif  // GUEST_INTR_PIC_H_
