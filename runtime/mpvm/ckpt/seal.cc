// seal.cc — see seal.h. System calls through raw.h: this runs in a signal
// handler (capture) and in the restore process before libc is set aside.
#include "mpvm/ckpt/seal.h"

#include "mpvm/ckpt/raw.h"

namespace mpvm::ckpt {

namespace {

constexpr uint8_t kTagMessage = crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;

// Encrypts `n` bytes (at most kSealRecord) and sends them as one record.
long SendRecord(SealOut& s, const uint8_t* data, size_t n) {
  unsigned long long clen = 0;
  crypto_secretstream_xchacha20poly1305_push(&s.st, s.record + 4, &clen, data, n, nullptr, 0,
                                             kTagMessage);
  const uint32_t len = static_cast<uint32_t>(clen);
  for (int i = 0; i < 4; ++i) s.record[i] = static_cast<uint8_t>(len >> (8 * i));
  return raw::SendFull(s.fd, s.record, 4 + clen);
}

const char* Ended(long r) {
  return r == -1000 ? "the image stream ended early" : "the image stream broke";
}

// Reads one record and decrypts it into `out` (room for kSealRecord bytes);
// *n receives its length.
const char* ReadRecord(SealIn& s, uint8_t* out, size_t* n) {
  uint8_t head[4];
  if (long r = raw::ReadFull(s.fd, head, sizeof head); r != 0) return Ended(r);
  const uint32_t clen = static_cast<uint32_t>(head[0]) | static_cast<uint32_t>(head[1]) << 8 |
                        static_cast<uint32_t>(head[2]) << 16 | static_cast<uint32_t>(head[3]) << 24;
  if (clen < kSealOverhead || clen > sizeof s.record) return "malformed image stream (record size)";
  if (long r = raw::ReadFull(s.fd, s.record, clen); r != 0) return Ended(r);
  unsigned long long mlen = 0;
  uint8_t tag = 0;
  if (crypto_secretstream_xchacha20poly1305_pull(&s.st, out, &mlen, &tag, s.record, clen, nullptr,
                                                 0) != 0)
    return "the image stream failed authentication (not the key of this move)";
  *n = static_cast<size_t>(mlen);
  return nullptr;
}

}  // namespace

long SealBegin(SealOut& s, int fd, const uint8_t* key) {
  s.fd = fd;
  s.fill = 0;
  s.sealed = key != nullptr;
  if (!s.sealed) return 0;
  uint8_t header[kSealHeaderSize];
  crypto_secretstream_xchacha20poly1305_init_push(&s.st, header, key);
  return raw::SendFull(fd, header, sizeof header);
}

long SealPut(SealOut& s, const void* data, size_t n) {
  if (!s.sealed) return raw::SendFull(s.fd, data, n);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    if (s.fill == 0 && n >= kSealRecord) {  // a whole record straight from the caller's bytes
      if (long e = SendRecord(s, p, kSealRecord); e != 0) return e;
      p += kSealRecord;
      n -= kSealRecord;
      continue;
    }
    const size_t take = n < kSealRecord - s.fill ? n : kSealRecord - s.fill;
    raw::CopyBulk(s.plain + s.fill, p, take);
    s.fill += take;
    p += take;
    n -= take;
    if (s.fill == kSealRecord) {
      if (long e = SealFlush(s); e != 0) return e;
    }
  }
  return 0;
}

long SealFlush(SealOut& s) {
  if (!s.sealed || s.fill == 0) return 0;
  const long e = SendRecord(s, s.plain, s.fill);
  s.fill = 0;
  return e;
}

const char* SealInBegin(SealIn& s, int fd, const uint8_t* key) {
  s.fd = fd;
  s.pos = s.len = 0;
  s.sealed = key != nullptr;
  if (!s.sealed) return nullptr;
  uint8_t header[kSealHeaderSize];
  if (long r = raw::ReadFull(fd, header, sizeof header); r != 0) return Ended(r);
  if (crypto_secretstream_xchacha20poly1305_init_pull(&s.st, header, key) != 0)
    return "malformed image stream (header)";
  return nullptr;
}

const char* SealGet(SealIn& s, void* out, size_t n) {
  if (!s.sealed) {
    const long r = raw::ReadFull(s.fd, out, n);
    return r == 0 ? nullptr : Ended(r);
  }
  uint8_t* p = static_cast<uint8_t*>(out);
  while (n > 0) {
    if (s.pos == s.len) {
      size_t got = 0;
      if (n >= kSealRecord) {  // a whole record straight into the caller's memory
        if (const char* bad = ReadRecord(s, p, &got)) return bad;
        p += got;
        n -= got;
        continue;
      }
      if (const char* bad = ReadRecord(s, s.plain, &got)) return bad;
      s.pos = 0;
      s.len = got;
      continue;
    }
    const size_t take = n < s.len - s.pos ? n : s.len - s.pos;
    raw::CopyBulk(p, s.plain + s.pos, take);
    s.pos += take;
    p += take;
    n -= take;
  }
  return nullptr;
}

}  // namespace mpvm::ckpt
