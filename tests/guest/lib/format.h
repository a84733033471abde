// printf-style formatting into a buffer. Supports %s %c %d %i %u %x %X %p %%,
// the length modifiers l, ll, z, a field width and the 0 and - flags.
// No floating point (the guest is built with -mgeneral-regs-only).
#ifndef GUEST_LIB_FORMAT_H_
#define GUEST_LIB_FORMAT_H_

#include <stdarg.h>
#include <stddef.h>

// Like vsnprintf: always NUL-terminates (if n > 0), returns the length written
// (not the length that would have been written).
size_t vformat(char *buf, size_t n, const char *fmt, va_list ap);
size_t format(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif  // GUEST_LIB_FORMAT_H_
