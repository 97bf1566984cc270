// raw.h — system calls and byte helpers that touch no libc state.
//
// The checkpoint code runs inside signal handlers and, at restore, while
// libc's own memory is being replaced; it may not call libc (no errno, no
// stack protector, no implicit memcpy). Everything here is inline asm or
// plain loops. Errors come back as -errno.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>

namespace mpvm::ckpt::raw {

// madvise(2) advice of Linux 5.14 that glibc 2.36's <sys/mman.h> lacks:
// fault a range in with one call (about 0.7 us a page on this project's
// virtual machines, against about 10 us for each page faulted on touch).
inline constexpr long kMadvPopulateRead = 22;
inline constexpr long kMadvPopulateWrite = 23;

inline long Sys(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

inline long Read(int fd, void* buf, size_t n) { return Sys(SYS_read, fd, (long)buf, (long)n); }
inline long Write(int fd, const void* buf, size_t n) {
  return Sys(SYS_write, fd, (long)buf, (long)n);
}
inline long Open(const char* path, int flags, int mode = 0) {
  return Sys(SYS_openat, -100 /* AT_FDCWD */, (long)path, flags, mode);
}
inline long Close(int fd) { return Sys(SYS_close, fd); }

// Reads exactly n bytes (restarting after EINTR). Returns 0, or -errno, or
// -1000 at end of stream.
inline long ReadFull(int fd, void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    long r = Read(fd, p, n);
    if (r == -4 /* EINTR */) continue;
    if (r < 0) return r;
    if (r == 0) return -1000;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return 0;
}
inline long WriteFull(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    long r = Write(fd, p, n);
    if (r == -4) continue;
    if (r < 0) return r;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return 0;
}

// Like WriteFull on a socket, without SIGPIPE when the peer is gone.
inline long SendFull(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    long r = Sys(SYS_sendto, fd, (long)p, (long)n, 0x4000 /* MSG_NOSIGNAL */, 0, 0);
    if (r == -4) continue;
    if (r == -88 /* ENOTSOCK */) return WriteFull(fd, p, n);
    if (r < 0) return r;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return 0;
}

inline void Copy(void* dst, const void* src, size_t n) {
  auto* d = static_cast<volatile char*>(dst);
  auto* s = static_cast<const char*>(src);
  for (size_t i = 0; i < n; ++i) d[i] = s[i];
}
// Copy for bulk data (image pages, stream records): `rep movsb`, which the
// CPU runs at memcpy speed; no call into libc either.
inline void CopyBulk(void* dst, const void* src, size_t n) {
  __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}
inline void Zero(void* dst, size_t n) {
  auto* d = static_cast<volatile char*>(dst);
  for (size_t i = 0; i < n; ++i) d[i] = 0;
}
inline size_t Len(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}
inline bool Eq(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return *a == *b;
}
inline bool StartsWith(const char* s, const char* prefix) {
  while (*prefix != '\0')
    if (*s++ != *prefix++) return false;
  return true;
}
// Copies a NUL-terminated string into dst[cap] (truncating).
inline void CopyStr(char* dst, size_t cap, const char* src) {
  size_t i = 0;
  for (; i + 1 < cap && src[i] != '\0'; ++i) dst[i] = src[i];
  if (cap > 0) dst[i] = '\0';
}
// Appends src to the NUL-terminated dst[cap].
inline void Append(char* dst, size_t cap, const char* src) {
  size_t n = Len(dst);
  if (n < cap) CopyStr(dst + n, cap - n, src);
}
inline void AppendNum(char* dst, size_t cap, long v) {
  char tmp[24];
  int i = 0;
  bool neg = v < 0;
  unsigned long u = neg ? static_cast<unsigned long>(-v) : static_cast<unsigned long>(v);
  do {
    tmp[i++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (neg) tmp[i++] = '-';
  char out[24];
  for (int j = 0; j < i; ++j) out[j] = tmp[i - 1 - j];
  out[i] = '\0';
  Append(dst, cap, out);
}
inline uint64_t ParseHex(const char*& s) {
  uint64_t v = 0;
  for (;; ++s) {
    char c = *s;
    if (c >= '0' && c <= '9')
      v = v * 16 + static_cast<uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = v * 16 + static_cast<uint64_t>(c - 'a' + 10);
    else
      break;
  }
  return v;
}
inline uint64_t ParseDec(const char*& s) {
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; ++s) v = v * 10 + static_cast<uint64_t>(*s - '0');
  return v;
}

// A fast 64-bit content hash (not cryptographic: it detects a different
// build of a file, not an attacker; images come only from peer daemons).
inline uint64_t Hash(const void* p, size_t n) {
  const auto* w = static_cast<const uint64_t*>(p);
  constexpr uint64_t k = 0x9fb21c651e98df25ull;
  uint64_t h0 = n, h1 = ~n, h2 = n * k, h3 = 0x9e3779b97f4a7c15ull;
  size_t words = n / 8, i = 0;
  for (; i + 4 <= words; i += 4) {  // four independent lanes
    h0 = ((h0 ^ w[i]) * k) ^ (h0 >> 29);
    h1 = ((h1 ^ w[i + 1]) * k) ^ (h1 >> 29);
    h2 = ((h2 ^ w[i + 2]) * k) ^ (h2 >> 29);
    h3 = ((h3 ^ w[i + 3]) * k) ^ (h3 >> 29);
  }
  for (; i < words; ++i) h0 = ((h0 ^ w[i]) * k) ^ (h0 >> 29);
  uint64_t h = h0 ^ (h1 * 3) ^ (h2 * 5) ^ (h3 * 7);
  return (h ^ (h >> 31)) * k;
}

}  // namespace mpvm::ckpt::raw
