#include "intr/pic.h"

#include "arch/x86.h"

#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1

// OCW1: mask every line on both controllers. Firmware (QEMU's qboot) does the
// same; Hearth, like Firecracker, runs no firmware, so the guest does it.
void pic_disable(void) {
  outb(PIC1_DATA, 0xff);
  outb(PIC2_DATA, 0xff);
}
