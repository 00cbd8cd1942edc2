// A progress bar on stderr, drawn only when stderr is a terminal. Each update is also where a long command
// stops when asked to (interrupt_requested(): the Python module sets it on Ctrl-C).
#pragma once

#include <massact/core/error.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace massact_tool {

/// Set (by the Python module, on KeyboardInterrupt) to stop the command running in this process at its next
/// progress update, with massact::Error("interrupted"); the tool's own process never sets it.
inline std::atomic<bool>& interrupt_requested() {
    static std::atomic<bool> flag{false};
    return flag;
}

class Progress {
public:
    explicit Progress(std::string label) : label_(std::move(label)), tty_(::isatty(STDERR_FILENO) == 1) {}
    ~Progress() { done(); }
    void operator()(long done, long total) {
        if (interrupt_requested().load()) {
            this->done();
            throw massact::Error("interrupted");
        }
        if (!tty_ || total <= 0) return;
        const int width = 30, filled = static_cast<int>(width * done / total);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        std::fprintf(stderr, "\r%-10s [%s%s] %ld/%ld  %.1fs", label_.c_str(), std::string(filled, '#').c_str(),
                     std::string(width - filled, '.').c_str(), done, total, s);
        std::fflush(stderr);
        drawn_ = true;
    }
    void done() {
        if (drawn_) std::fprintf(stderr, "\r\033[K");
        drawn_ = false;
    }

private:
    std::string label_;
    bool tty_;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace massact_tool
