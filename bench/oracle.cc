// oracle — the balancer's three reference times for given host speeds and
// task works (balancer/oracle.h): PVM's round-robin without migration, the
// staircase optimum of the MOSIX + PVM paper's Table 1, and the fluid bound.
//
//   oracle --speeds 1000x16 --tasks 17 --work 300
//   oracle --speeds 1000x16,333x4 --work-list 300x10,120,60
//   oracle --speeds 400x4 --tasks 6 --work 2 --background 0.5x2,0x2
#include "oracle.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

namespace {

using mpvm::balancer::OracleInput;
using mpvm::balancer::ParseCountedList;

// Speeds as PVM writes them: whole numbers from 1 to 1000000.
std::optional<std::vector<int>> ParseSpeeds(const std::string& text) {
  auto values = ParseCountedList(text);
  if (!values) return std::nullopt;
  std::vector<int> out;
  for (double v : *values) {
    if (!(v >= 1 && v <= 1e6) || v != std::floor(v)) return std::nullopt;
    out.push_back(static_cast<int>(v));
  }
  return out;
}

void Print(const OracleInput& in) {
  auto times = mpvm::balancer::AllTimes(in);
  long total_speed = std::accumulate(in.speeds.begin(), in.speeds.end(), 0L);
  double total_work = std::accumulate(in.work.begin(), in.work.end(), 0.0);
  fmt::print("hosts {} (total speed {}), tasks {} (total work {:g} s)\n", in.speeds.size(),
             total_speed, in.work.size(), total_work);
  fmt::print("round-robin  {:10.2f} s  PVM's placement, no migration\n", times.round_robin);
  fmt::print("staircase    {:10.2f} s  whole-task moves when the gap exceeds one task\n",
             times.staircase);
  fmt::print("fluid bound  {:10.2f} s  no schedule does better\n", times.fluid);
  if (times.staircase > 0)
    fmt::print("round-robin / staircase {:.3f}\n", times.round_robin / times.staircase);
}

// The oracle's input from the options, or nullopt after saying what is wrong.
std::optional<OracleInput> MakeInput(const std::string& speeds_text, int tasks, double work,
                                     const std::string& work_list, const std::string& background) {
  auto speeds = ParseSpeeds(speeds_text);
  if (!speeds || speeds->empty()) {
    fmt::print(stderr, "oracle: --speeds: want e.g. 1000x16,333x4 (whole numbers, 1 to 1000000)\n");
    return std::nullopt;
  }
  OracleInput in{*speeds, std::vector<double>(static_cast<std::size_t>(tasks), work), {}};
  if (!work_list.empty()) {
    auto list = ParseCountedList(work_list);
    if (!list) {
      fmt::print(stderr, "oracle: --work-list: want e.g. 300x10,120,60\n");
      return std::nullopt;
    }
    in.work = *list;
  }
  if (!background.empty()) {
    auto list = ParseCountedList(background);
    if (!list || list->size() != in.speeds.size()) {
      fmt::print(stderr, "oracle: --background: want one value per host (of {}), e.g. 0.5x2,0x2\n",
                 in.speeds.size());
      return std::nullopt;
    }
    in.background = *list;
  }
  if (!mpvm::balancer::IsValid(in)) {
    fmt::print(stderr, "oracle: every work and background must be finite and at least 0\n");
    return std::nullopt;
  }
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The balancer's oracle: finish times of CPU-bound tasks started together"};
  std::string speeds_text, work_list, background;
  bool json = false;
  int tasks = 0;
  double work = 0;
  app.add_option("--speeds", speeds_text,
                 "host speeds in PVM sp= units (1000 = one reference CPU), in round-robin "
                 "order, e.g. 1000x16,333x4")
      ->required();
  auto* tasks_opt =
      app.add_option("--tasks", tasks, "number of equal tasks")->check(CLI::NonNegativeNumber);
  auto* work_opt = app.add_option("--work", work, "seconds of work of each task at speed 1000")
                       ->check(CLI::NonNegativeNumber);
  auto* list_opt = app.add_option("--work-list", work_list,
                                  "each task's seconds of work at speed 1000, e.g. 300x10,120,60");
  app.add_option("--background", background,
                 "another user's load per host, in host order: the mean number of its processes "
                 "ready to run, e.g. 0.5x2,0x2 (default: none)");
  app.add_flag("--json", json, "print the three times as one JSON object (for scripts)");
  tasks_opt->needs(work_opt);
  work_opt->needs(tasks_opt);
  list_opt->excludes(tasks_opt)->excludes(work_opt);
  CLI11_PARSE(app, argc, argv);

  auto in = MakeInput(speeds_text, tasks, work, work_list, background);
  if (!in) return 2;
  if (json) {
    const auto t = mpvm::balancer::AllTimes(*in);
    fmt::print("{{\"round_robin\": {}, \"staircase\": {}, \"fluid\": {}}}\n", t.round_robin,
               t.staircase, t.fluid);
  } else {
    Print(*in);
  }
  return 0;
}
