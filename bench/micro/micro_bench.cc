// micro_bench.cc — the message path's pieces, one at a time, with Google
// Benchmark: frame headers, packing and unpacking per type and encoding, the
// copy a send makes of in-place data, and a large frame through the reader.
// Not a test: it prints a table (see docs/benchmarks.md for the command).
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "mpvm/frame.h"
#include "mpvm/message.h"

namespace mpvm {
namespace {

void BM_FrameHeaderRoundTrip(benchmark::State& state) {
  FrameHeader h;
  h.kind = FrameKind::kData;
  h.src = 0x40001;
  h.dst = 0x40002;
  h.length = 1024;
  for (auto _ : state) {
    auto bytes = EncodeFrameHeader(h);
    auto back = DecodeFrameHeader(bytes);
    benchmark::DoNotOptimize(back);
  }
}
BENCHMARK(BM_FrameHeaderRoundTrip);

// Packs state.range(0) bytes of `type` items in `encoding`.
template <DataType type, typename T, int encoding>
void BM_Pack(benchmark::State& state) {
  std::vector<T> data(static_cast<size_t>(state.range(0)) / sizeof(T), T{1});
  for (auto _ : state) {
    Message m(encoding);
    benchmark::DoNotOptimize(m.Pack(type, data.data(), static_cast<int>(data.size()), 1));
    if (encoding == kEncInPlace) m.Flatten();  // what a send does with in-place data
    benchmark::DoNotOptimize(m.body().data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

template <DataType type, typename T, int encoding>
void BM_Unpack(benchmark::State& state) {
  std::vector<T> data(static_cast<size_t>(state.range(0)) / sizeof(T), T{1}), out(data.size());
  Message m(encoding);
  (void)m.Pack(type, data.data(), static_cast<int>(data.size()), 1);
  for (auto _ : state) {
    m.Rewind();
    benchmark::DoNotOptimize(m.Unpack(type, out.data(), static_cast<int>(out.size()), 1));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

#define MPVM_PACK_BENCH(type, T)                                                      \
  BENCHMARK(BM_Pack<DataType::type, T, kEncDefault>)->Arg(1 << 10)->Arg(256 << 10);   \
  BENCHMARK(BM_Pack<DataType::type, T, kEncRaw>)->Arg(1 << 10)->Arg(256 << 10);       \
  BENCHMARK(BM_Unpack<DataType::type, T, kEncDefault>)->Arg(1 << 10)->Arg(256 << 10); \
  BENCHMARK(BM_Unpack<DataType::type, T, kEncRaw>)->Arg(1 << 10)->Arg(256 << 10)

MPVM_PACK_BENCH(kByte, char);
MPVM_PACK_BENCH(kInt, int);
MPVM_PACK_BENCH(kDouble, double);
BENCHMARK(BM_Pack<DataType::kByte, char, kEncInPlace>)->Arg(256 << 10)->Arg(16 << 20);

// One frame of state.range(0) bytes fed to a reader in 64 KiB reads, and
// taken out (handed over without a copy from 1 MiB on).
void BM_FrameReaderTakesAFrame(benchmark::State& state) {
  const size_t len = static_cast<size_t>(state.range(0));
  FrameHeader h;
  h.kind = FrameKind::kData;
  h.length = static_cast<uint32_t>(len);
  auto head = EncodeFrameHeader(h);
  std::vector<uint8_t> wire(head.begin(), head.end());
  wire.resize(head.size() + len, 7);
  for (auto _ : state) {
    FrameReader r;
    for (size_t at = 0; at < wire.size();) {
      auto space = r.WritableSpace();
      const size_t n = std::min({space.size(), wire.size() - at, size_t{64 << 10}});
      std::memcpy(space.data(), wire.data() + at, n);
      r.Commit(n);
      at += n;
    }
    Frame f;
    benchmark::DoNotOptimize(r.Next(f));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_FrameReaderTakesAFrame)->Arg(64 << 10)->Arg(1 << 20)->Arg(64 << 20);

}  // namespace
}  // namespace mpvm

BENCHMARK_MAIN();
