#pragma once
// What was built: the version (from CMake's project()) and the git commit,
// taken at build time (cmake/git_commit.cmake), for reports and --version.

namespace gpt2q {

inline const char* build_version() { return GPT2Q_VERSION; }
// "abc1234", "abc1234+dirty" (tracked files changed since that commit), or "unknown".
const char* build_git_commit();

}  // namespace gpt2q
