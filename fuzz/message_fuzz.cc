// Fuzzes received PVM messages: the first bytes choose the encoding, the aux
// (type map) length and a sequence of unpack calls; the rest is the payload.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "mpvm/message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  const int enc = data[0] % 3;
  const uint32_t aux = data[1] % 64;
  const uint8_t* ops = data + 2;
  const size_t nops = 6;
  std::vector<uint8_t> payload(data + 8, data + size);
  mpvm::Message m = mpvm::Message::FromWire(enc, std::move(payload), aux);
  alignas(16) uint8_t out[4096];
  char str[1 << 16];
  for (size_t i = 0; i < nops; ++i) {
    const int t = 1 + ops[i] % 13;
    const int count = 1 + (ops[i] >> 4);
    const auto type = static_cast<mpvm::DataType>(t);
    if (type == mpvm::DataType::kStr) {
      auto s = m.UnpackString();
      if (s && s->size() < sizeof str) (void)m.UnpackStr(str);
    } else if (type == mpvm::DataType::kMesg) {
      (void)m.UnpackMessage();
    } else {
      (void)m.Unpack(type, out, count, 1 + (ops[i] & 1));
    }
  }
  return 0;
}
