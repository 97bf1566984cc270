#include "oracle.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>

namespace mpvm::balancer {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Tasks whose ends are this close (relative) end in the same event, and
// works this close are equal when choosing which task moves.
constexpr double kTolerance = 1e-9;

// A processor-sharing run: hosts, their task counts, and every task's work
// left and host (-1 once it has ended).
struct Sim {
  std::vector<long long> speed;
  std::vector<long long> count;
  std::vector<double> background;  // per host (oracle.h)
  std::vector<double> left;
  std::vector<int> host;
  double now = 0;

  explicit Sim(const OracleInput& in)
      : speed(in.speeds.begin(), in.speeds.end()),
        count(in.speeds.size(), 0),
        background(in.background.empty() ? std::vector<double>(in.speeds.size(), 0.0)
                                         : in.background),
        left(in.work),
        host(in.work.size(), -1) {}

  void Put(std::size_t task, int h) {
    if (host[task] >= 0) --count[static_cast<std::size_t>(host[task])];
    host[task] = h;
    ++count[static_cast<std::size_t>(h)];
  }
  // The rate of each of `n` tasks on host `h`: r_h * E[1 / (n + K)].
  double RateWith(std::size_t h, long long n) const {
    const double r = static_cast<double>(speed[h]) / 1000.0, b = background[h];
    const double k = std::floor(b), f = b - k, nn = static_cast<double>(n);
    if (f == 0) return r / (nn + k);
    return r * ((1 - f) / (nn + k) + f / (nn + k + 1));
  }
  double Rate(std::size_t task) const {
    auto h = static_cast<std::size_t>(host[task]);
    return RateWith(h, count[h]);
  }
  // Time per unit of work of each of `n` tasks on host `h`: what the
  // staircase compares. Without background, n * 1000 / s_h in one division:
  // equal quotients of integers round to the same double, so ties stay
  // ties and are broken as the integers would break them.
  double Load(std::size_t h, long long n) const {
    if (background[h] == 0) return static_cast<double>(n) * 1000.0 / static_cast<double>(speed[h]);
    return 1.0 / RateWith(h, n);
  }
};

// Advances to the next event: the clock and every running task move on to
// the first end, and the tasks that end then leave. False when none runs.
bool Step(Sim& s) {
  double dt = std::numeric_limits<double>::infinity();
  for (std::size_t t = 0; t < s.host.size(); ++t)
    if (s.host[t] >= 0) dt = std::min(dt, s.left[t] / s.Rate(t));
  if (std::isinf(dt)) return false;
  std::vector<std::size_t> ended;
  for (std::size_t t = 0; t < s.host.size(); ++t) {
    if (s.host[t] < 0) continue;
    double done = s.Rate(t) * dt;  // rates of this interval: counts change below
    if (s.left[t] <= done * (1 + kTolerance)) ended.push_back(t);
    s.left[t] = std::max(0.0, s.left[t] - done);
  }
  for (std::size_t t : ended) {
    --s.count[static_cast<std::size_t>(s.host[t])];
    s.host[t] = -1;
    s.left[t] = 0;
  }
  s.now += dt;
  return true;
}

// The host where one more task would run fastest: least (n + 1) / s (its
// Load with one more task); of equals, the faster host, then the first.
int Destination(const Sim& s) {
  std::size_t best = 0;
  for (std::size_t h = 1; h < s.speed.size(); ++h) {
    const double a = s.Load(h, s.count[h] + 1), b = s.Load(best, s.count[best] + 1);
    if (a < b || (a == b && s.speed[h] > s.speed[best])) best = h;
  }
  return static_cast<int>(best);
}

// Of two tasks that may move, whether `a` goes before `b`: more work left
// (equal within rounding), then from the more loaded host, then the first.
bool MovesBefore(const Sim& s, std::size_t a, std::size_t b) {
  double la = s.left[a], lb = s.left[b];
  if (std::abs(la - lb) > kTolerance * std::max(la, lb)) return la > lb;
  auto ha = static_cast<std::size_t>(s.host[a]), hb = static_cast<std::size_t>(s.host[b]);
  const double load_a = s.Load(ha, s.count[ha]), load_b = s.Load(hb, s.count[hb]);
  if (load_a != load_b) return load_a > load_b;
  return a < b;
}

// Moves tasks one at a time while a move strictly helps the moved task:
// (n_B + 1) / s_B < n_A / s_A (with background, Load(B, n_B + 1) <
// Load(A, n_A)). Each move lowers the sorted list of host loads, so this
// ends.
void Rebalance(Sim& s) {
  for (;;) {
    int to = Destination(s);
    auto b = static_cast<std::size_t>(to);
    std::size_t pick = s.host.size();
    for (std::size_t t = 0; t < s.host.size(); ++t) {
      if (s.host[t] < 0) continue;
      auto a = static_cast<std::size_t>(s.host[t]);
      if (s.Load(b, s.count[b] + 1) >= s.Load(a, s.count[a])) continue;
      if (pick == s.host.size() || MovesBefore(s, t, pick)) pick = t;
    }
    if (pick == s.host.size()) return;
    s.Put(pick, to);
  }
}

// Runs until every task has ended, rebalancing after each event if asked.
double Finish(Sim& s, bool rebalance) {
  do {
    if (rebalance) Rebalance(s);
  } while (Step(s));
  return s.now;
}

}  // namespace

bool IsValid(const OracleInput& in) {
  bool speeds_ok = std::all_of(in.speeds.begin(), in.speeds.end(), [](int v) { return v > 0; });
  bool work_ok = std::all_of(in.work.begin(), in.work.end(),
                             [](double w) { return std::isfinite(w) && w >= 0; });
  bool background_ok = (in.background.empty() || in.background.size() == in.speeds.size()) &&
                       std::all_of(in.background.begin(), in.background.end(),
                                   [](double b) { return std::isfinite(b) && b >= 0 && b <= 1e6; });
  return speeds_ok && work_ok && background_ok;
}

double RoundRobinTime(const OracleInput& in) {
  if (!IsValid(in)) return kNaN;
  if (in.work.empty()) return 0;
  if (in.speeds.empty()) return kNaN;
  Sim s(in);
  for (std::size_t t = 0; t < in.work.size(); ++t) s.Put(t, static_cast<int>(t % in.speeds.size()));
  return Finish(s, false);
}

double StaircaseTime(const OracleInput& in) {
  if (!IsValid(in)) return kNaN;
  if (in.work.empty()) return 0;
  if (in.speeds.empty()) return kNaN;
  Sim s(in);
  // The balanced start: the biggest tasks take the best places.
  std::vector<std::size_t> order(in.work.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return in.work[a] > in.work[b]; });
  for (std::size_t t : order) s.Put(t, Destination(s));
  return Finish(s, true);
}

double FluidBound(const OracleInput& in) {
  if (!IsValid(in)) return kNaN;
  if (in.work.empty()) return 0;
  if (in.speeds.empty()) return kNaN;
  double total_rate = 0, max_rate = 0;
  for (int v : in.speeds) {
    total_rate += v / 1000.0;
    max_rate = std::max(max_rate, v / 1000.0);
  }
  double total_work = std::accumulate(in.work.begin(), in.work.end(), 0.0);
  double max_work = *std::max_element(in.work.begin(), in.work.end());
  return std::max(max_work / max_rate, total_work / total_rate);
}

OracleTimes AllTimes(const OracleInput& in) {
  return {RoundRobinTime(in), StaircaseTime(in), FluidBound(in)};
}

std::optional<std::vector<double>> ParseCountedList(std::string_view text) {
  constexpr std::size_t kMaxValues = 1'000'000;
  std::vector<double> out;
  while (!text.empty()) {
    std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (comma != std::string_view::npos && text.empty()) return std::nullopt;  // "1,"
    std::size_t x = item.find('x');
    std::string_view value = item.substr(0, x);
    double v = 0;
    auto [vend, verr] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (value.empty() || verr != std::errc{} || vend != value.data() + value.size())
      return std::nullopt;
    std::size_t n = 1;
    if (x != std::string_view::npos) {
      std::string_view count = item.substr(x + 1);
      auto [cend, cerr] = std::from_chars(count.data(), count.data() + count.size(), n);
      if (count.empty() || cerr != std::errc{} || cend != count.data() + count.size() || n == 0)
        return std::nullopt;
    }
    if (n > kMaxValues - out.size()) return std::nullopt;
    out.insert(out.end(), n, v);
  }
  return out;
}

}  // namespace mpvm::balancer
