// Port I/O from CPL3 when the CPU refuses it.
//
// User code runs with IOPL 3, so on hardware KVM "in"/"out" at CPL3 execute
// directly. This host's KVM (PVM) runs user code natively with IOPL 0 (user
// RFLAGS read back as 0x202), so the same instructions raise #GP(0). The #GP
// handler decodes the instruction and performs it at CPL0, which keeps the
// user-mode programming model identical on both kinds of host. Only the
// non-string forms (SDM Vol. 2: IN E4/E5/EC/ED, OUT E6/E7/EE/EF, optional
// 0x66 operand-size prefix) are handled; anything else stays a #GP failure.
#include "arch/user.h"

#include "arch/x86.h"

static void do_in(struct trap_frame *f, uint16_t port, unsigned size) {
  if (size == 1) {
    f->rax = (f->rax & ~0xffull) | inb(port);
  } else if (size == 2) {
    f->rax = (f->rax & ~0xffffull) | inw(port);
  } else {
    f->rax = inl(port);  // a 32-bit destination zero-extends into rax
  }
}

static void do_out(struct trap_frame *f, uint16_t port, unsigned size) {
  if (size == 1) {
    outb(port, (uint8_t)f->rax);
  } else if (size == 2) {
    outw(port, (uint16_t)f->rax);
  } else {
    outl(port, (uint32_t)f->rax);
  }
}

bool user_io_emulate(struct trap_frame *f) {
  if ((f->cs & 3) != 3 || f->error != 0) return false;
  const uint8_t *p = (const uint8_t *)f->rip;  // user code: identity-mapped
  unsigned len = 1, wide = 4;
  if (p[0] == 0x66) {
    wide = 2;
    p++;
    len++;
  }
  uint16_t port = (uint16_t)f->rdx;
  switch (p[0]) {
    case 0xe4:
    case 0xe5:
    case 0xe6:
    case 0xe7:
      port = p[1];  // imm8 port
      len++;
      break;
    case 0xec:
    case 0xed:
    case 0xee:
    case 0xef:
      break;
    default:
      return false;
  }
  unsigned size = (p[0] & 1) ? wide : 1;
  if (p[0] == 0xe4 || p[0] == 0xe5 || p[0] == 0xec || p[0] == 0xed) {
    do_in(f, port, size);
  } else {
    do_out(f, port, size);
  }
  f->rip += len;
  return true;
}
