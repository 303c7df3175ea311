#include "core/file_util.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <random>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

namespace gpt2q {

namespace {

// A read-only descriptor of the regular file at `path`, its fstat in *st.
// stat() first, so that a FIFO or device is refused without opening it
// (open() of a FIFO waits for a writer); O_NONBLOCK and the fstat() after
// open() cover a FIFO swapped in between the two calls.
// A missing file is "PATH: no such file" for read_file, "PATH: cannot open
// (No such file or directory)" for MappedFile (as they always said).
int open_regular_file(const std::filesystem::path& path, struct stat* st, bool say_no_such_file) {
  struct stat before {};
  if (::stat(path.c_str(), &before) != 0) {
    if (say_no_such_file && (errno == ENOENT || errno == ENOTDIR)) fail("{}: no such file", path.string());
    fail("{}: cannot open ({})", path.string(), std::strerror(errno));
  }
  if (!S_ISREG(before.st_mode)) fail("{}: not a regular file", path.string());
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("{}: cannot open ({})", path.string(), std::strerror(errno));
  if (::fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path.string());
  }
  return fd;
}

[[noreturn]] void fail_too_large(const std::filesystem::path& path, uint64_t size, const FileLimit& limit) {
  fail("{}: {} bytes, more than the {} allowed for {}", path.string(), size, limit.max_bytes, limit.what);
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  struct stat st {};
  int fd = open_regular_file(path, &st, false);
  auto m = std::shared_ptr<MappedFile>(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("{}: cannot map ({})", path.string(), std::strerror(e));
    }
    m->data_ = static_cast<const unsigned char*>(p);
  }
  ::close(fd);
  return m;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
}

std::string read_file(const std::filesystem::path& path, const FileLimit& limit) {
  struct stat st {};
  const int fd = open_regular_file(path, &st, true);
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > limit.max_bytes) {
    ::close(fd);
    fail_too_large(path, size, limit);
  }
  // Read to EOF rather than st_size bytes: /proc files report size 0, and a
  // file that grows meanwhile is still capped.
  std::string s;
  s.reserve(static_cast<size_t>(size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      fail("{}: read error ({})", path.string(), std::strerror(e));
    }
    s.append(buf, static_cast<size_t>(got));
    if (s.size() > limit.max_bytes) {
      ::close(fd);
      fail_too_large(path, s.size(), limit);
    }
  }
  ::close(fd);
  return s;
}

void make_directories(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) fail("{}: cannot create directory ({})", path.string(), ec.message());
  if (!std::filesystem::is_directory(path, ec)) fail("{}: exists and is not a directory", path.string());
}

namespace {

// Writes straight into an existing non-regular file: a device (/dev/null,
// /dev/stdout, /dev/full) or a pipe (`--predictions >(gzip > p.gz)`). Such
// a target cannot be replaced by a rename, and replacing it would be wrong.
void write_special_file(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
  std::ofstream out(path, std::ios::binary);
  if (!out) fail("{}: cannot open for writing ({})", path.string(), std::strerror(errno));
  errno = 0;
  write(out);
  out.flush();
  if (!out) fail("{}: write failed ({})", path.string(), errno != 0 ? std::strerror(errno) : "I/O error");
}

// The file a symlink chain ends at, so that an output given as a symlink is
// written through (the link stays, its target is replaced atomically), as
// `cmd > link` would. Works for dangling links too: the target is created.
std::filesystem::path resolve_symlinks(std::filesystem::path path) {
  for (int hops = 0; hops < 40; ++hops) {
    std::error_code ec;
    const auto st = std::filesystem::symlink_status(path, ec);
    if (ec || !std::filesystem::is_symlink(st)) return path;
    std::filesystem::path next = std::filesystem::read_symlink(path, ec);
    if (ec) fail("{}: cannot read the symlink ({})", path.string(), ec.message());
    path = next.is_absolute() ? next : path.parent_path() / next;
  }
  fail("{}: too many levels of symbolic links", path.string());
}

}  // namespace

void write_file_atomic(const std::filesystem::path& given, const std::function<void(std::ostream&)>& write) {
  std::error_code ec;
  const auto st = std::filesystem::status(given, ec);  // follows symlinks
  if (!ec && std::filesystem::exists(st)) {
    if (std::filesystem::is_directory(st)) fail("{}: is a directory", given.string());
    if (!std::filesystem::is_regular_file(st)) return write_special_file(given, write);
  }
  const std::filesystem::path path = resolve_symlinks(given);
  std::random_device rd;
  auto tmp = path;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd() % 100000);
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) fail("{}: cannot create ({})", tmp.string(), std::strerror(errno));
      errno = 0;
      write(out);
      out.flush();
      if (!out) fail("{}: write failed ({})", tmp.string(), errno != 0 ? std::strerror(errno) : "I/O error");
    }
    int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail("{}: cannot rename into place ({})", path.string(), ec.message());
  } catch (...) {
    std::filesystem::remove(tmp, ec);
    throw;
  }
}

void write_file_atomic(const std::filesystem::path& path, std::string_view contents) {
  write_file_atomic(path, [&](std::ostream& out) { out.write(contents.data(), contents.size()); });
}

}  // namespace gpt2q
