// write_file_atomic: a regular file is replaced atomically (never left
// partial), a symlink is written through (the link stays), a device or FIFO
// is written directly and stays what it is, a directory is an error.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "core/file_util.h"
#include "support/test_env.h"

namespace {

namespace fs = std::filesystem;
using gpt2q::write_file_atomic;
using gpt2q::test::read_text;
using gpt2q::test::temp_dir;

// read_text() checks for a regular file first; a FIFO is read with a stream.
std::string read_text_fifo(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

size_t entries(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

TEST(WriteFileAtomic, CreatesAndReplacesRegularFiles) {
  const auto dir = temp_dir("file_util_regular");
  write_file_atomic(dir / "a.txt", "one");
  EXPECT_EQ(read_text(dir / "a.txt"), "one");
  write_file_atomic(dir / "a.txt", "two");
  EXPECT_EQ(read_text(dir / "a.txt"), "two");
  EXPECT_EQ(entries(dir), 1u);  // no temp file left behind
}

TEST(WriteFileAtomic, AFailedWriteLeavesTheOldFileAndNoTemp) {
  const auto dir = temp_dir("file_util_fail");
  write_file_atomic(dir / "a.txt", "old");
  EXPECT_THROW(write_file_atomic(dir / "a.txt",
                                 [](std::ostream& out) {
                                   out << "partial";
                                   gpt2q::fail("boom");
                                 }),
               gpt2q::Error);
  EXPECT_EQ(read_text(dir / "a.txt"), "old");
  EXPECT_EQ(entries(dir), 1u);
}

TEST(WriteFileAtomic, WritesThroughSymlinks) {
  const auto dir = temp_dir("file_util_symlink");
  fs::create_directory(dir / "real");
  write_file_atomic(dir / "real" / "target.txt", "old");
  fs::create_symlink("real/target.txt", dir / "link.txt");  // relative link
  write_file_atomic(dir / "link.txt", "new");
  EXPECT_TRUE(fs::is_symlink(dir / "link.txt"));
  EXPECT_EQ(read_text(dir / "real" / "target.txt"), "new");

  // A chain of links, the last one dangling: its target is created.
  fs::create_symlink(dir / "real" / "fresh.txt", dir / "dangling");
  fs::create_symlink("dangling", dir / "chain");
  write_file_atomic(dir / "chain", "made");
  EXPECT_TRUE(fs::is_symlink(dir / "chain"));
  EXPECT_TRUE(fs::is_symlink(dir / "dangling"));
  EXPECT_EQ(read_text(dir / "real" / "fresh.txt"), "made");

  fs::create_symlink("loop2", dir / "loop1");
  fs::create_symlink("loop1", dir / "loop2");
  try {
    write_file_atomic(dir / "loop1", "x");
    ADD_FAILURE() << "a symlink loop was written";
  } catch (const gpt2q::Error& e) {
    EXPECT_NE(std::string(e.what()).find("symbolic links"), std::string::npos) << e.what();
  }
}

TEST(WriteFileAtomic, DevicesAreWrittenDirectlyAndKept) {
  write_file_atomic("/dev/null", "discarded");
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  try {
    write_file_atomic("/dev/full", std::string(1 << 16, 'x'));
    ADD_FAILURE() << "/dev/full accepted a write";
  } catch (const gpt2q::Error& e) {
    EXPECT_EQ(std::string(e.what()), "/dev/full: write failed (No space left on device)");
  }
  EXPECT_TRUE(fs::is_character_file("/dev/full"));
}

TEST(WriteFileAtomic, FifosAreWrittenDirectly) {
  const auto dir = temp_dir("file_util_fifo");
  const auto fifo = dir / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] { got = read_text_fifo(fifo); });
  write_file_atomic(fifo, "through the pipe");
  reader.join();
  EXPECT_EQ(got, "through the pipe");
  EXPECT_TRUE(fs::is_fifo(fifo));
}

TEST(WriteFileAtomic, ADirectoryIsAnError) {
  const auto dir = temp_dir("file_util_dir");
  try {
    write_file_atomic(dir, "x");
    ADD_FAILURE() << "a directory was written";
  } catch (const gpt2q::Error& e) {
    EXPECT_EQ(std::string(e.what()), dir.string() + ": is a directory");
  }
  EXPECT_TRUE(fs::is_directory(dir));
}

}  // namespace
