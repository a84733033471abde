// Reading "key=value" words from the kernel command line (boot_info.cmdline).
// Words are separated by spaces; the last occurrence of a key wins, as in
// Linux. Keys the guest reads are listed in README.md.
#ifndef GUEST_BOOT_CMDLINE_H_
#define GUEST_BOOT_CMDLINE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Copies the value of |key| into out[0..n) (NUL-terminated, truncated to fit).
// Returns false if the key is absent.
bool cmdline_get(const char *key, char *out, size_t n);

// Parses the value of |key| as a decimal or 0x-hex number. Returns false if
// the key is absent or not a number (then *out is untouched).
bool cmdline_get_u64(const char *key, uint64_t *out);

// Iterates over every occurrence of |key|, in command-line order (for keys
// that may repeat, like virtio_mmio.device=). Pass from = NULL first, then the
// value returned by the previous call. Copies the value as cmdline_get()
// does; returns NULL when there are no more.
const char *cmdline_next(const char *key, const char *from, char *out, size_t n);

// True if the value of |key| is a comma-separated list containing |word|
// (hearth.virtio_features=noevent,noindirect).
bool cmdline_has_word(const char *key, const char *word);

#endif  // GUEST_BOOT_CMDLINE_H_
