#include "arch/cpu.h"

#include "arch/gdt.h"
#include "intr/idt.h"

struct cpu cpus[MAX_CPUS];
struct cpu_stacks cpu_stacks[MAX_CPUS] __attribute__((section(".bss.stacks"), aligned(STACK_SIZE)));

static void set_stack_owner(uint8_t *stack, struct cpu *c) { *(struct cpu **)stack_top(stack) = c; }

void cpu_init(uint32_t index) {
  struct cpu *c = &cpus[index];
  struct cpu_stacks *s = &cpu_stacks[index];
  c->index = index;
  set_stack_owner(s->kernel, c);
  set_stack_owner(s->user, c);
  set_stack_owner(s->ist, c);
  c->tss.rsp0 = stack_top(s->kernel);
  c->tss.ist[0] = stack_top(s->ist);
  c->tss.iomap_base = sizeof(struct tss);
  gdt_load_tss(index, &c->tss);
  idt_load();
}
