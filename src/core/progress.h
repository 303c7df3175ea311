#pragma once
// Progress for long work, on stderr: a redrawn bar with rate and ETA when
// stderr is a terminal, plain lines (at most one every few seconds) otherwise.
#include <chrono>
#include <cstdint>
#include <string>

namespace gpt2q {

class Progress {
 public:
  // total == 0: unknown length (shows count and rate only). `unit` names what
  // is counted ("samples", "tokens", "steps").
  Progress(std::string label, int64_t total, std::string unit);
  ~Progress();  // finishes the line if not done
  void advance(int64_t n = 1);
  void set_note(std::string note);  // e.g. "loss 1.234"
  void finish();
  static void set_enabled(bool on);  // --quiet turns it off globally

 private:
  void draw(bool final);
  std::string label_, unit_, note_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool tty_, finished_ = false;
};

}  // namespace gpt2q
