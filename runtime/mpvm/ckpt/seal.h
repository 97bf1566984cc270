// seal.h — the image stream's protection. A moving task's memory (the VM's
// link key among it, and whatever the program holds) crosses the network
// encrypted and authenticated: libsodium's secretstream (XChaCha20-Poly1305)
// under the move's 32-byte key, which the destination daemon draws at
// random and hands over on the daemons' CURVE links (docs/design/migration.md,
// "The image on the wire").
//
// On the wire: secretstream's 24-byte header, then records, each a 4-byte
// little-endian length and that many bytes of ciphertext (at most
// kSealRecord bytes of plaintext and kSealOverhead of tag). Only the
// destination, holding the key, can read the stream, and a stream that is
// not the expected one fails its first record. Without a key the stream is
// plain (the engine's own tests over a local socketpair).
//
// Allocation-free and without locks: Capture runs these in a signal handler
// that may have interrupted malloc. The restore side runs them before it
// takes its address space apart (libsodium must still be mapped).
#pragma once

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

namespace mpvm::ckpt {

inline constexpr size_t kSealKeySize = crypto_secretstream_xchacha20poly1305_KEYBYTES;
inline constexpr size_t kSealHeaderSize = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
inline constexpr size_t kSealOverhead = crypto_secretstream_xchacha20poly1305_ABYTES;
inline constexpr size_t kSealRecord = 64 * 1024;  // plaintext bytes per record, at most

// The writing end: what is put is buffered into records; Flush sends a
// partial one (before the writer waits for an answer).
struct SealOut {
  int fd = -1;
  bool sealed = false;
  crypto_secretstream_xchacha20poly1305_state st;
  size_t fill = 0;
  uint8_t plain[kSealRecord];
  uint8_t record[4 + kSealRecord + kSealOverhead];
};
// Starts the stream on `fd`: sends the header under `key` (kSealKeySize
// bytes), or nothing if key is nullptr (plain). Returns 0 or -errno.
long SealBegin(SealOut& s, int fd, const uint8_t* key);
long SealPut(SealOut& s, const void* data, size_t n);
long SealFlush(SealOut& s);

// The reading end.
struct SealIn {
  int fd = -1;
  bool sealed = false;
  crypto_secretstream_xchacha20poly1305_state st;
  size_t pos = 0, len = 0;  // plain[pos, len) not yet taken
  uint8_t plain[kSealRecord];
  uint8_t record[kSealRecord + kSealOverhead];
};
// Starts reading `fd`: reads the header for `key`, or nothing if plain.
// Returns nullptr, or what is wrong with the stream.
const char* SealInBegin(SealIn& s, int fd, const uint8_t* key);
// Reads exactly n bytes of plaintext into `out`. Returns nullptr, or what
// is wrong ("the image stream ended early", "... failed authentication").
const char* SealGet(SealIn& s, void* out, size_t n);

}  // namespace mpvm::ckpt
