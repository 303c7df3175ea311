#pragma once
// Tokenizer throughput for `gpt2q bench`.
#include <string_view>

#include "text/tokenizer.h"

namespace gpt2q {

// MB/s (10^6 bytes of UTF-8 input per second) of tok.encode(text) on the
// calling thread, the mean over `repeats` (>= 1) timed runs. One untimed run
// first fills this thread's word cache, so this is the steady state of a
// long job, not the first pass over unseen text.
double tokenizer_throughput_mb_s(const Tokenizer& tok, std::string_view text, int repeats);

}  // namespace gpt2q
