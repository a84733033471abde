#include "lib/format.h"

#include <stdbool.h>
#include <stdint.h>

struct out {
  char *buf;
  size_t cap;  // excluding the NUL
  size_t len;
};

static void put(struct out *o, char c) {
  if (o->len < o->cap) o->buf[o->len++] = c;
}

static void put_padded(struct out *o, const char *s, size_t len, unsigned width, char pad,
                       bool left) {
  size_t fill = width > len ? width - len : 0;
  if (!left) {
    while (fill--) put(o, pad);
  }
  for (size_t i = 0; i < len; i++) put(o, s[i]);
  if (left) {
    while (fill--) put(o, ' ');
  }
}

static void put_number(struct out *o, uint64_t v, unsigned base, bool upper, bool negative,
                       unsigned width, char pad, bool left) {
  const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = digits[v % base];
    v /= base;
  } while (v);
  if (negative) {
    if (pad == '0') {
      put(o, '-');
      if (width) width--;
    } else {
      tmp[n++] = '-';
    }
  }
  char rev[24];
  for (size_t i = 0; i < n; i++) rev[i] = tmp[n - 1 - i];
  put_padded(o, rev, n, width, pad, left);
}

size_t vformat(char *buf, size_t n, const char *fmt, va_list ap) {
  struct out o = {buf, n ? n - 1 : 0, 0};
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      put(&o, *fmt);
      continue;
    }
    fmt++;
    bool left = false;
    char pad = ' ';
    for (; *fmt == '-' || *fmt == '0'; fmt++) {
      if (*fmt == '-')
        left = true;
      else
        pad = '0';
    }
    unsigned width = 0;
    for (; *fmt >= '0' && *fmt <= '9'; fmt++) width = width * 10 + (unsigned)(*fmt - '0');
    int longs = 0;
    for (; *fmt == 'l' || *fmt == 'z'; fmt++) longs++;
    uint64_t u;
    int64_t s;
    switch (*fmt) {
      case 'd':
      case 'i':
        s = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
        u = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
        put_number(&o, u, 10, false, s < 0, width, pad, left);
        break;
      case 'u':
      case 'x':
      case 'X':
        u = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
        put_number(&o, u, *fmt == 'u' ? 10 : 16, *fmt == 'X', false, width, pad, left);
        break;
      case 'p':
        put(&o, '0');
        put(&o, 'x');
        put_number(&o, (uint64_t)(uintptr_t)va_arg(ap, void *), 16, false, false, width, pad, left);
        break;
      case 'c': {
        char c = (char)va_arg(ap, int);
        put_padded(&o, &c, 1, width, ' ', left);
        break;
      }
      case 's': {
        const char *str = va_arg(ap, const char *);
        if (str == NULL) str = "(null)";
        size_t len = 0;
        while (str[len]) len++;
        put_padded(&o, str, len, width, ' ', left);
        break;
      }
      case '%':
        put(&o, '%');
        break;
      case '\0':
        fmt--;  // a lone '%' at the end
        break;
      default:
        put(&o, '%');
        put(&o, *fmt);
        break;
    }
  }
  if (n) o.buf[o.len] = '\0';
  return o.len;
}

size_t format(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t len = vformat(buf, n, fmt, ap);
  va_end(ap);
  return len;
}
