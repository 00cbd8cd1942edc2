// The massact tool's command line: every command's options (CLI11) and its action, as one function that main
// (and the command-line fuzz target) calls. Errors print "massact: error: ..." and give 1; nothing exits.
#pragma once

#include "commands/bench.hpp"
#include "commands/bos.hpp"
#include "commands/docs.hpp"
#include "commands/eval.hpp"
#include "commands/info.hpp"
#include "commands/report.hpp"
#include "commands/intervene.hpp"
#include "commands/qk.hpp"
#include "commands/quant.hpp"
#include "commands/registers.hpp"
#include "commands/run.hpp"
#include "commands/scan.hpp"
#include "commands/superexpert.hpp"
#include "commands/stream.hpp"
#include "commands/tokenize.hpp"
#include "commands/variants.hpp"
#include "mpi.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <functional>
#include <map>

namespace massact_tool {

/// Parse argv and run the command; returns the exit status (0, or 1 after printing the error). `mpi` (optional)
/// is the MPI session of an mpirun launch: a failing rank aborts the job through it. With `parse_only` the
/// command line is parsed and checked but the command does not run (the command-line fuzz target). `error`
/// (optional) receives the message of a failure (the Python module raises it).
inline int run_cli(int argc, char** argv, const Ranks& ranks = {}, const MpiSession* mpi = nullptr, bool parse_only = false,
                   std::string* error = nullptr) {
    CLI::App app{"massact: massive activations and attention sinks in transformer language models"};
    app.require_subcommand(1);
    app.set_version_flag("--version", [] {
        const auto& d = data_dir();
        return std::string("massact ") + massact::version() + "\ndata: " + (d.path.empty() ? d.how : d.path + ", " + d.how);
    });
    ProgressMode progress = ProgressMode::Auto;
    app.add_option("--progress", progress, "progress bars on stderr: auto (when it is a terminal), always, never")
        ->transform(CLI::CheckedTransformer(std::map<std::string, ProgressMode>{
            {"auto", ProgressMode::Auto}, {"always", ProgressMode::Always}, {"never", ProgressMode::Never}}));
    std::function<int()> action;
    InfoArgs info;
    RunArgs run;
    EvalArgs eval;
    TokenizeArgs tokenize;
    ScanArgs scan;
    scan.ranks = ranks;
    AblateArgs ablate;
    InjectArgs inject;
    SuperWeightArgs superweight;
    ReportArgs report;
    CompareArgs compare;
    SwapArgs swap;
    StreamArgs stream;
    GenerateArgs generate;
    BenchArgs bench;
    QuantArgs quant;
    QKArgs qk;
    SuperExpertArgs superexpert;
    BosArgs bos;
    RegistersArgs registers;
    add_info(app, info, action);
    add_run(app, run, action);
    add_eval(app, eval, action);
    add_tokenize(app, tokenize, action);
    add_scan(app, scan, action);
    add_intervention_commands(app, ablate, inject, superweight, action);
    add_report(app, report, action);
    add_variant_commands(app, compare, swap, action);
    add_stream(app, stream, action);
    add_generate(app, generate, action);
    add_bench(app, bench, action);
    add_quant(app, quant, action);
    add_qk(app, qk, action);
    add_superexpert(app, superexpert, action);
    add_bos(app, bos, action);
    add_registers(app, registers, action);
    DocsArgs docs;
    add_docs(app, docs, action);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help prints and exits 0; every command-line error prints CLI11's message and exits 1.
        const int status = app.exit(e) == 0 ? 0 : 1;
        if (status && error) *error = e.what();
        return status;
    }
    struct ModeScope {  // this thread's progress mode for the command's duration
        explicit ModeScope(ProgressMode m) { progress_mode() = m; }
        ~ModeScope() { progress_mode() = ProgressMode::Auto; }
    } mode_scope(progress);
    try {
        if (ranks.size > 1 && !app.got_subcommand("scan"))  // (only scan splits its windows across ranks)
            throw massact::Error("under mpirun only scan runs on several processes; run " + app.get_subcommands().front()->get_name() +
                                 " as one process (its threads: OMP_NUM_THREADS)");
        return action && !parse_only ? action() : 0;
    } catch (const std::exception& e) {
        if (mpi && ranks.size > 1) mpi->abort(e.what());  // one failing rank ends the job
        std::fprintf(stderr, "massact: error: %s\n", e.what());
        if (error) *error = e.what();
        return 1;
    }
}

}  // namespace massact_tool
