#include "boot/cmdline.h"

#include "boot/boot_info.h"
#include "lib/string.h"

// Finds the value of the first "key=..." word at or after |p|; sets *len to
// its length and *end to the end of that word.
static const char *find_from(const char *key, const char *p, size_t *len, const char **end) {
  size_t klen = strlen(key);
  while (*p) {
    while (*p == ' ') p++;
    const char *word = p;
    while (*p && *p != ' ') p++;
    if ((size_t)(p - word) > klen && memcmp(word, key, klen) == 0 && word[klen] == '=') {
      *len = (size_t)(p - word) - klen - 1;
      *end = p;
      return word + klen + 1;
    }
  }
  return NULL;
}

// Finds the value of the last "key=..." word; sets *len to its length.
static const char *find_value(const char *key, size_t *len) {
  const char *found = NULL, *v, *p = boot_info.cmdline;
  size_t n;
  while ((v = find_from(key, p, &n, &p)) != NULL) {
    found = v;
    *len = n;
  }
  return found;
}

static void copy_value(const char *v, size_t len, char *out, size_t n) {
  if (len > n - 1) len = n - 1;
  memcpy(out, v, len);
  out[len] = '\0';
}

const char *cmdline_next(const char *key, const char *from, char *out, size_t n) {
  size_t len = 0;
  const char *end;
  const char *v = find_from(key, from ? from : boot_info.cmdline, &len, &end);
  if (v == NULL || n == 0) return NULL;
  copy_value(v, len, out, n);
  return end;
}

bool cmdline_has_word(const char *key, const char *word) {
  char value[128];
  if (!cmdline_get(key, value, sizeof(value))) return false;
  size_t wlen = strlen(word);
  for (const char *p = value; *p;) {
    const char *start = p;
    while (*p && *p != ',') p++;
    if ((size_t)(p - start) == wlen && memcmp(start, word, wlen) == 0) return true;
    if (*p == ',') p++;
  }
  return false;
}

bool cmdline_get(const char *key, char *out, size_t n) {
  size_t len = 0;
  const char *v = find_value(key, &len);
  if (v == NULL || n == 0) return false;
  copy_value(v, len, out, n);
  return true;
}

bool cmdline_get_u64(const char *key, uint64_t *out) {
  char buf[24];
  if (!cmdline_get(key, buf, sizeof(buf))) return false;
  return parse_u64(buf, out);
}
