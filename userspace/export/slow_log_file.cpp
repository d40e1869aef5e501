#include "export/slow_log_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace loupe::exporter {
namespace {

// `line` and a newline, retrying short writes; false on an error (errno says which).
bool write_all(int fd, std::string_view line) {
    std::string text;
    text.reserve(line.size() + 1);
    text.append(line).push_back('\n');
    std::string_view rest = text;
    while (!rest.empty()) {
        const ssize_t n = ::write(fd, rest.data(), rest.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

}  // namespace

SlowLogWriter::SlowLogWriter(SlowLogFileSettings settings) : settings_(std::move(settings)) {}

SlowLogWriter::~SlowLogWriter() {
    if (fd_ >= 0) ::close(fd_);
}

bool SlowLogWriter::open_file() {
    fd_ = ::open(settings_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd_ < 0) {
        last_error_ = settings_.path + ": " + std::strerror(errno);
        return false;
    }
    struct stat st {};
    size_ = ::fstat(fd_, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    return true;
}

bool SlowLogWriter::open(std::string& problem) {
    if (settings_.path.empty() || fd_ >= 0) return true;
    if (open_file()) return true;
    problem = last_error_;
    return false;
}

bool SlowLogWriter::rotate() {
    ::close(fd_);
    fd_ = -1;
    if (settings_.rotated_files == 0) {
        if (::truncate(settings_.path.c_str(), 0) != 0 && errno != ENOENT) {
            last_error_ = settings_.path + ": " + std::strerror(errno);
            return false;
        }
    } else {
        // PATH.N-1 -> PATH.N, ..., PATH -> PATH.1: the oldest falls off the end.
        for (std::uint32_t n = settings_.rotated_files; n >= 1; --n) {
            const std::string from =
                n == 1 ? settings_.path : settings_.path + "." + std::to_string(n - 1);
            const std::string to = settings_.path + "." + std::to_string(n);
            if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
                last_error_ = from + ": cannot rotate: " + std::strerror(errno);
                return false;
            }
        }
    }
    return open_file();
}

bool SlowLogWriter::write(std::string_view line) {
    bool ok = true;
    if (!settings_.path.empty()) {
        if (fd_ < 0 && !open_file()) {
            ok = false;
        } else {
            const std::uint64_t need = line.size() + 1;
            if (size_ > 0 && size_ + need > settings_.max_bytes && !rotate()) ok = false;
            if (fd_ >= 0) {
                if (write_all(fd_, line)) {
                    size_ += need;
                } else {
                    last_error_ = settings_.path + ": " + std::strerror(errno);
                    ok = false;
                }
            }
        }
    }
    if (settings_.to_stdout && !write_all(STDOUT_FILENO, line)) {
        last_error_ = std::string("standard output: ") + std::strerror(errno);
        ok = false;
    }
    return ok;
}

}  // namespace loupe::exporter
