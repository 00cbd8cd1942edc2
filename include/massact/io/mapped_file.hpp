// massact/io/mapped_file.hpp - a read-only memory mapping of a whole file (POSIX).
#pragma once

#include "massact/core/error.hpp"

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace massact::io {

class MappedFile {
public:
    MappedFile() = default;
    explicit MappedFile(const std::string& path) : path_(path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int err = errno;
            ::close(fd);
            throw Error(path + ": cannot stat: " + std::strerror(err));
        }
        if (S_ISDIR(st.st_mode)) {
            ::close(fd);
            throw Error(path + ": is a directory, expected a file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int err = errno;
                ::close(fd);
                throw Error(path + ": cannot map: " + std::strerror(err));
            }
            data_ = static_cast<const unsigned char*>(p);
        }
        ::close(fd);
    }
    /// Bytes already in memory under a name used in error messages (parsers take bytes in: fuzzing,
    /// buffers received over a network).
    static MappedFile from_bytes(std::string name, std::vector<unsigned char> bytes) {
        MappedFile m;
        m.path_ = std::move(name);
        m.owned_ = std::move(bytes);
        m.data_ = m.owned_.data();
        m.size_ = m.owned_.size();
        return m;
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& o) noexcept { swap(o); }
    MappedFile& operator=(MappedFile&& o) noexcept {
        if (this != &o) {
            MappedFile tmp(std::move(o));
            swap(tmp);
        }
        return *this;
    }
    ~MappedFile() {
        if (data_ && owned_.empty()) ::munmap(const_cast<unsigned char*>(data_), size_);
    }

    const unsigned char* data() const { return data_; }
    std::size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    void swap(MappedFile& o) noexcept {
        std::swap(path_, o.path_);
        std::swap(data_, o.data_);
        std::swap(size_, o.size_);
        std::swap(owned_, o.owned_);  // a vector's buffer stays where it is when the vector moves
    }
    std::string path_;
    const unsigned char* data_ = nullptr;
    std::size_t size_ = 0;
    std::vector<unsigned char> owned_;  // from_bytes: the bytes themselves (nothing mapped)
};

}  // namespace massact::io
