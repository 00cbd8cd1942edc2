// A progress bar on stderr, drawn only when stderr is a terminal.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace massact_tool {

class Progress {
public:
    explicit Progress(std::string label) : label_(std::move(label)), tty_(::isatty(STDERR_FILENO) == 1) {}
    ~Progress() { done(); }
    void operator()(long done, long total) {
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
