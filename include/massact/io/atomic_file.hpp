// massact/io/atomic_file.hpp - a file that appears whole or not at all.
//
// Data goes to PATH.tmp.<pid> in the same folder; commit() renames it into place. Until then, or when
// anything fails, PATH is untouched and the temporary file is removed (also by the destructor).
#pragma once

#include "massact/core/error.hpp"

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

namespace massact::io {

class AtomicFile {
public:
    explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {
        out_.open(tmp_, std::ios::binary | std::ios::trunc);
        if (!out_) throw Error(path_ + ": cannot write (temporary file " + tmp_ + ")");
    }
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile() {
        if (!done_) {
            out_.close();
            std::remove(tmp_.c_str());
        }
    }

    const std::string& path() const { return path_; }
    std::ofstream& stream() { return out_; }
    void write(const void* data, std::size_t n) { out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(n)); }

    /// Flush, close and rename into place; throws (and removes the temporary file) on any failure.
    void commit() {
        out_.flush();
        const bool ok = static_cast<bool>(out_);
        out_.close();
        if (!ok || !out_) throw Error(path_ + ": write failed (disk full or file system error?)");
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) throw Error(path_ + ": cannot rename temporary file into place");
        done_ = true;
    }

private:
    std::string path_, tmp_;
    std::ofstream out_;
    bool done_ = false;
};

}  // namespace massact::io
