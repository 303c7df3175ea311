#pragma once
// One error type for everything the user can get wrong: bad files, bad
// arguments, shapes that do not fit. The CLI prints what() as one line and
// exits non-zero, so messages name the file (or argument) and the problem.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace gpt2q {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Error("path: problem") with fmt formatting for the problem.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Internal invariant: a failure here is a gpt2q bug, not a user error.
#define GPT2Q_CHECK(cond, ...)                                                       \
  do {                                                                              \
    if (!(cond)) ::gpt2q::fail("internal error at {}:{}: {}", __FILE__, __LINE__,   \
                               ::fmt::format(__VA_ARGS__));                         \
  } while (0)

}  // namespace gpt2q
