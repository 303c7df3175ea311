#include "core/progress.h"

#include <atomic>
#include <cstdio>
#include <unistd.h>

#include <fmt/format.h>

namespace gpt2q {

namespace {
std::atomic<bool> g_enabled{true};

std::string fmt_duration(double s) {
  if (s < 0 || s > 1e7) return "--:--";
  int t = static_cast<int>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
  return fmt::format("{:02}:{:02}", t / 60, t % 60);
}
}  // namespace

void Progress::set_enabled(bool on) { g_enabled = on; }

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      start_(std::chrono::steady_clock::now()), last_draw_(start_), tty_(::isatty(2) == 1) {}

Progress::~Progress() { finish(); }

void Progress::advance(int64_t n) {
  done_ += n;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.1 : 5.0)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::set_note(std::string note) { note_ = std::move(note); }

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void Progress::draw(bool final) {
  if (!g_enabled) return;
  double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = el > 0 ? done_ / el : 0;
  std::string pos = total_ > 0 ? fmt::format("{}/{}", done_, total_) : fmt::format("{}", done_);
  std::string eta = total_ > 0 && rate > 0 ? fmt_duration((total_ - done_) / rate) : "--:--";
  std::string note = note_.empty() ? "" : "  " + note_;
  if (tty_) {
    std::string bar;
    if (total_ > 0) {
      int width = 28, fill = static_cast<int>(width * std::min<double>(1.0, double(done_) / total_));
      bar = "[" + std::string(fill, '#') + std::string(width - fill, '.') + "] ";
    }
    fmt::print(stderr, "\r\033[2K{} {}{} {:.1f} {}/s  {} {}{}", label_, bar, pos, rate, unit_,
               final ? "in" : "eta", final ? fmt_duration(el) : eta, note);
    if (final) fmt::print(stderr, "\n");
  } else {
    fmt::print(stderr, "{}: {} {}, {:.1f} {}/s, {} {}{}\n", label_, pos, unit_, rate, unit_,
               final ? "done in" : "eta", final ? fmt_duration(el) : eta, note);
  }
  std::fflush(stderr);
}

}  // namespace gpt2q
