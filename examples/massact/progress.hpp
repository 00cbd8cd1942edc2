// A progress bar on stderr, drawn when stderr is a terminal (or always / never: `massact --progress`, the Python
// analyses' progress=True / False). Each update is also where a long command stops when asked to
// (interrupt_requested(): the Python module sets it on Ctrl-C).
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

/// When the bar is drawn: on a terminal only (auto), or whatever stderr is (always: a notebook, whose cells show
/// the kernel's stderr, or a log), or never.
enum class ProgressMode { Auto, Always, Never };

/// The mode of the command running on this thread (run_cli sets it for the command's duration; each command runs
/// on the thread that parsed it, so calls on other threads, e.g. from Python, do not see each other's).
inline ProgressMode& progress_mode() {
    thread_local ProgressMode mode = ProgressMode::Auto;
    return mode;
}

class Progress {
public:
    explicit Progress(std::string label)
        : label_(std::move(label)),
          tty_(::isatty(STDERR_FILENO) == 1),
          draw_(progress_mode() == ProgressMode::Always || (progress_mode() == ProgressMode::Auto && tty_)) {}
    ~Progress() { done(); }
    void operator()(long done, long total) {
        if (interrupt_requested().load()) {
            this->done();
            throw massact::Error("interrupted");
        }
        if (!draw_ || total <= 0) return;
        const int width = 30, filled = static_cast<int>(width * done / total);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        std::fprintf(stderr, "\r%-10s [%s%s] %ld/%ld  %.1fs", label_.c_str(), std::string(filled, '#').c_str(),
                     std::string(width - filled, '.').c_str(), done, total, s);
        std::fflush(stderr);
        drawn_ = true;
    }
    void done() {
        // a terminal's line is erased; elsewhere (a notebook, a log) the last state stays, ended by a newline
        if (drawn_) std::fprintf(stderr, tty_ ? "\r\033[K" : "\n");
        drawn_ = false;
    }

private:
    std::string label_;
    bool tty_, draw_;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace massact_tool
