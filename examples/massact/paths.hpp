// Where the massact tool finds its bundled data (models/tiny-llama, data/val.txt): no path is compiled in.
//
//   1. <folder of the executable>/../share/massact: an installed tool (cmake --install, the Debian package)
//      and the build tree, whose build/share/massact holds links to the source tree's examples/models and
//      examples/data (made by CMake at configure time);
//   2. $MASSACT_DATA: a folder with models/ and data/, for a binary moved away from its share folder;
//   3. nothing: commands then need an explicit model and data, and say so.
#pragma once

#include <cstdlib>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace massact_tool {

/// The folder of the running executable (from /proc/self/exe), "" when unknown.
inline std::string executable_dir() {
    std::vector<char> buf(4096);
    const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
    if (n <= 0) return "";
    std::string path(buf.data(), static_cast<std::size_t>(n));
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "" : path.substr(0, slash);
}

inline bool is_dir(const std::string& p) {
    struct stat st{};
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// The folder of the bundled models and data, and how it was found.
struct DataDir {
    std::string path;     // "" when none was found
    std::string how;      // "next to the executable", "$MASSACT_DATA", or why nothing was found
    std::string tried;    // the places looked at, for messages
};

inline DataDir find_data_dir() {
    DataDir d;
    const std::string exe = executable_dir();
    if (!exe.empty()) {
        const auto slash = exe.rfind('/');
        std::string share = (slash == std::string::npos ? std::string(".") : exe.substr(0, slash)) + "/share/massact";  // <exe>/../share
        if (char* real = ::realpath(share.c_str(), nullptr)) {  // (the build tree's links resolved)
            share = real;
            std::free(real);
        }
        d.tried = share;
        if (is_dir(share + "/models")) return {share, "next to the executable (its ../share/massact)", d.tried};
    }
    if (const char* env = std::getenv("MASSACT_DATA"); env && *env) {
        d.tried += std::string(d.tried.empty() ? "" : ", ") + "$MASSACT_DATA=" + env;
        if (is_dir(std::string(env) + "/models")) return {env, "$MASSACT_DATA", d.tried};
    } else {
        d.tried += std::string(d.tried.empty() ? "" : ", ") + "$MASSACT_DATA (unset)";
    }
    d.how = "not found (looked in " + d.tried + ")";
    return d;
}

/// The data folder, found once per process.
inline const DataDir& data_dir() {
    static const DataDir d = find_data_dir();
    return d;
}

/// A bundled file: DATA/<rel>, or, when no data folder was found, a path that names the problem in the
/// error that opening it gives.
inline std::string bundled(const std::string& rel) {
    const DataDir& d = data_dir();
    if (!d.path.empty()) return d.path + "/" + rel;
    return "<massact data not found: install massact or set MASSACT_DATA>/" + rel;
}

inline std::string default_model() { return bundled("models/tiny-llama"); }
inline std::string default_data() { return bundled("data/val.txt"); }

}  // namespace massact_tool
