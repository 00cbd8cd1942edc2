// The tool's command line as one compiled function (examples/massact/cli.cpp, the object library massact_cli):
// the tool's main and the command-line fuzz target link the same object instead of compiling every command each.
#pragma once

#include "mpi.hpp"

#include <string>

namespace massact_tool {

/// run_cli (cli.hpp): parse argv and run the command; the exit status (0, or 1 after printing the error).
int cli_entry(int argc, char** argv, const Ranks& ranks = {}, const MpiSession* mpi = nullptr, bool parse_only = false,
              std::string* error = nullptr);

}  // namespace massact_tool
