// Every command of the tool, compiled once (the object library massact_cli): see cli_entry.hpp.
#include "cli_entry.hpp"

#include "cli.hpp"

namespace massact_tool {

int cli_entry(int argc, char** argv, const Ranks& ranks, const MpiSession* mpi, bool parse_only, std::string* error) {
    return run_cli(argc, argv, ranks, mpi, parse_only, error);
}

}  // namespace massact_tool
