// massact/io/atomic_file.hpp - a file that appears whole or not at all.
//
// Data goes to a new temporary file in the same folder, PATH.tmp.<random>, created with O_CREAT | O_EXCL (so a
// file or symbolic link already at that name, planted or left over, is never opened or followed: another
// name is drawn); commit() writes out the buffer, fsyncs the file, renames it into place and fsyncs the
// folder. Until then, or when anything fails, PATH is untouched and the temporary file is removed (also by the
// destructor). The file gets the usual permissions (0666 less the umask).
#pragma once

#include "massact/core/error.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace massact::io {

class AtomicFile {
public:
    explicit AtomicFile(std::string path) : path_(std::move(path)) {
        std::random_device rd;
        char suffix[32];
        for (int attempt = 0; attempt < 64 && fd_ < 0; ++attempt) {
            std::snprintf(suffix, sizeof suffix, ".tmp.%08x%08x", rd(), rd());
            tmp_ = path_ + suffix;
            fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd_ < 0 && errno != EEXIST) break;
        }
        if (fd_ < 0) throw Error(path_ + ": cannot write (temporary file " + tmp_ + ": " + std::strerror(errno) + ")");
    }
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile() {
        if (fd_ >= 0) ::close(fd_);
        if (!done_) ::unlink(tmp_.c_str());
    }

    const std::string& path() const { return path_; }
    /// The temporary file's name (tests: it is new, in PATH's folder).
    const std::string& temporary_path() const { return tmp_; }

    void write(const void* data, std::size_t n) {
        const char* p = static_cast<const char*>(data);
        if (buffer_.size() + n > kBuffer) flush();
        if (n >= kBuffer) return write_all(p, n);
        buffer_.append(p, n);
    }

    /// Write out, fsync, close and rename into place (then fsync the folder); throws, and removes the
    /// temporary file, on any failure.
    void commit() {
        flush();
        if (::fsync(fd_) != 0) fail("cannot sync the temporary file to disk");
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) fail("write failed (disk full or file system error?)");
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file into place");
        done_ = true;
        const auto slash = path_.find_last_of('/');
        const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
        const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {  // (the rename itself durable; a folder that cannot be opened keeps the file all the same)
            ::fsync(dfd);
            ::close(dfd);
        }
    }

private:
    static constexpr std::size_t kBuffer = std::size_t(1) << 20;

    [[noreturn]] void fail(const std::string& what) {
        const std::string reason = std::strerror(errno);
        throw Error(path_ + ": " + what + " (" + reason + ")");
    }
    void flush() {
        write_all(buffer_.data(), buffer_.size());
        buffer_.clear();
    }
    void write_all(const char* p, std::size_t n) {
        while (n > 0) {
            const ssize_t k = ::write(fd_, p, n);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) fail("write failed (disk full or file system error?)");
            p += k;
            n -= static_cast<std::size_t>(k);
        }
    }

    std::string path_, tmp_;
    std::string buffer_;
    int fd_ = -1;
    bool done_ = false;
};

}  // namespace massact::io
