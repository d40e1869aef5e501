// Where slow-operation log lines go besides memory: a file with a size cap and rotation
// (PATH, PATH.1 ... PATH.N), and/or standard output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace loupe::exporter {

struct SlowLogFileSettings {
    std::string path;                     // empty: no file
    std::uint64_t max_bytes = 10u << 20;  // a file is rotated before it would grow past this
    std::uint32_t rotated_files = 1;      // PATH.1 ... PATH.N kept; 0: PATH is truncated instead
    bool to_stdout = false;
};

class SlowLogWriter {
  public:
    explicit SlowLogWriter(SlowLogFileSettings settings);
    ~SlowLogWriter();
    SlowLogWriter(const SlowLogWriter&) = delete;
    SlowLogWriter& operator=(const SlowLogWriter&) = delete;

    bool enabled() const { return !settings_.path.empty() || settings_.to_stdout; }
    // Opens the file now (without a file: nothing to do); false with the reason in `problem`.
    bool open(std::string& problem);
    // Writes `line` and a newline to every destination; false when one of them failed (the
    // reason is in last_error()).
    bool write(std::string_view line);
    const std::string& last_error() const { return last_error_; }

  private:
    bool open_file();
    bool rotate();

    SlowLogFileSettings settings_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
    std::string last_error_;
};

}  // namespace loupe::exporter
