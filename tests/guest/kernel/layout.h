// Every guest-physical address and fixed number the test guest uses, in one
// place (as Firecracker's arch/x86_64/layout.rs). Included from C and assembly,
// so: #defines only. The VMM's own boot structures (zero page 0x7000, page
// tables 0x9000-0xbfff, GDT 0x500, cmdline 0x20000, MP table 0x9fc00) are read
// once at boot and never written; see README.md for the full map.
#ifndef GUEST_KERNEL_LAYOUT_H_
#define GUEST_KERNEL_LAYOUT_H_

// The ELF image: linked and loaded here, physical == virtual. guest.ld asserts
// that the image (code, data, bss, stacks, page tables) ends below HEAP_BASE.
#define IMAGE_BASE 0x100000
// Interrupt stubs: 16-byte slots at the very start of the image, so the IDT
// can be assembled as constants (intr/vectors.S).
#define ISR_STUB_BASE IMAGE_BASE
// Simple bump allocator for drivers (virtqueues, buffers), identity-mapped.
// It grows up to the end of the usable e820 range that contains HEAP_BASE.
#define HEAP_BASE 0x400000

// Real-mode AP start-up trampoline (one page; SIPI vector = address >> 12).
// Below the VMM's zero page (0x7000) and above its GDT/IDT (0x500/0x520).
#define TRAMPOLINE_BASE 0x6000

// The identity map covers [0, 4 GiB) with 2 MiB pages; from here up it is
// uncached (PCD|PWT): the 32-bit MMIO hole.
#define MMIO_HOLE_BASE 0xC0000000
#define VIRTIO_MMIO_BASE 0xD0000000
#define IOAPIC_BASE 0xFEC00000
#define LAPIC_BASE 0xFEE00000

// Devices at fixed I/O ports.
#define COM1_PORT 0x3f8
#define I8042_COMMAND_PORT 0x64
#define QEMU_DEBUG_EXIT_PORT 0xf4

#define MAX_CPUS 32
// Per-CPU kernel, user and IST stacks. Each is STACK_SIZE bytes, aligned to
// STACK_SIZE, with a pointer to its struct cpu in the top 16 bytes (this_cpu()).
#define STACK_SIZE 0x2000

// GDT selectors (arch/gdt.c builds the table; entry.S uses the code ones).
#define SEL_KERNEL_CODE 0x08
#define SEL_KERNEL_DATA 0x10
#define SEL_KERNEL_CODE32 0x18
#define SEL_USER_DATA 0x23   // index 4, RPL 3
#define SEL_USER_CODE 0x2b   // index 5, RPL 3
#define SEL_TSS_BASE 0x30    // CPU n's TSS at SEL_TSS_BASE + 16 * n
#define GDT_FIXED_ENTRIES 6  // null .. user code, then 16-byte TSS descriptors
#define GDT_BYTES (GDT_FIXED_ENTRIES * 8 + 16 * MAX_CPUS)

// Interrupt vectors.
#define VEC_IRQ_BASE 0x20  // IOAPIC GSI n -> vector VEC_IRQ_BASE + n
#define NUM_GSIS 24
#define VEC_LAPIC_TIMER 0x38
#define VEC_IPI_WAKE 0x39
#define VEC_SPURIOUS 0x3f  // LAPIC SVR; the IDT stops at 63

#endif  // GUEST_KERNEL_LAYOUT_H_
