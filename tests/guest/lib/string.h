// The few libc string functions the guest needs (and that gcc may emit calls
// to even with -ffreestanding: memcpy, memmove, memset, memcmp).
#ifndef GUEST_LIB_STRING_H_
#define GUEST_LIB_STRING_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);

// Parses a whole string as decimal or 0x-prefixed hex. False on junk/overflow.
bool parse_u64(const char *s, uint64_t *out);

#endif  // GUEST_LIB_STRING_H_
