// fake_random.h — a RandomSource for tests: bytes 1, 2, 3, ... in turn, so
// every run sees the same "random" tokens.
#pragma once

#include "core/env.h"

namespace mpvm {

class FakeRandom : public virtual RandomSource {
 public:
  std::string RandomBytes(size_t n) override {
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(++next_);
    return out;
  }

 private:
  unsigned char next_ = 0;
};

}  // namespace mpvm
