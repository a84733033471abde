#include "boot/cmdline.h"

#include "boot/boot_info.h"
#include "lib/string.h"

// Finds the value of the last "key=..." word; sets *len to its length.
static const char *find_value(const char *key, size_t *len) {
  size_t klen = strlen(key);
  const char *found = NULL;
  const char *p = boot_info.cmdline;
  while (*p) {
    while (*p == ' ') p++;
    const char *word = p;
    while (*p && *p != ' ') p++;
    if ((size_t)(p - word) > klen && memcmp(word, key, klen) == 0 && word[klen] == '=') {
      found = word + klen + 1;
      *len = (size_t)(p - found);
    }
  }
  return found;
}

bool cmdline_get(const char *key, char *out, size_t n) {
  size_t len = 0;
  const char *v = find_value(key, &len);
  if (v == NULL || n == 0) return false;
  if (len > n - 1) len = n - 1;
  memcpy(out, v, len);
  out[len] = '\0';
  return true;
}

bool cmdline_get_u64(const char *key, uint64_t *out) {
  char buf[24];
  if (!cmdline_get(key, buf, sizeof(buf))) return false;
  return parse_u64(buf, out);
}
