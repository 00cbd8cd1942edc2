// massact - command-line tool over the massact library.
//
//   massact info MODEL_DIR [--paths]
//   massact completion [bash] | massact manpage   (shell completion, man page: both installed)
//   massact --version
//   massact run  MODEL_DIR (--ids 1,2,3 | --ids-file FILE[:TENSOR]) --dump OUT.safetensors [--hooks GLOB,...]
//   massact eval MODEL_DIR --ids-file FILE[:TENSOR] [--json OUT]
//   massact tokenize MODEL_DIR [--no-special] [--json] TEXT
//   massact scan MODEL_DIR (--data FILE | --ids-file F[:T] | --prompt TEXT) [--seq-len 256] [--max-seqs N] [--json OUT]
//   massact ablate MODEL_DIR --layer L --dims D1,D2 --tokens first|... --mode zero|mean|value=X|scale=S|add=X
//   massact inject MODEL_DIR --layer L --from 0 --to 30 [--dims D1,D2|all]
//   massact superweight MODEL_DIR [--threshold 50]
//   massact report [MODEL_DIR] [--data FILE] [--out DIR]
//   massact compare MODEL_A MODEL_B (data) [--json OUT] [--figure OUT.png]
//   massact swap MODEL_DIR --softmax softmax1|clipped[:zeta,gamma]|sink=X (data)
//   massact stream MODEL_DIR (--data FILE | --ids-file F[:T]) [--tokens N] [--policy dense|cache|recompute] [--sinks S]
//                  [--window W] [--compare] [--json OUT] [--figure OUT.png]
//   massact quant MODEL_DIR (data) [--json OUT] [--figure OUT.png]
//   massact bench MODEL_DIR [-p 256] [-n 0] [-d DEPTH] [-r 3] [-t THREADS] [--json]
//   massact generate MODEL_DIR (--prompt TEXT | --ids 1,2,3) [-n 64] [--temperature 0] [--seed S] [--sinks S --window W]
// Inputs: --ids, --ids-file FILE[:TENSOR], --prompt TEXT, --text-file FILE.
//
// Errors print "massact: error: ..." and exit with status 1; no output file is left behind.
#include "commands/bench.hpp"
#include "commands/docs.hpp"
#include "commands/eval.hpp"
#include "commands/info.hpp"
#include "commands/report.hpp"
#include "commands/intervene.hpp"
#include "commands/quant.hpp"
#include "commands/run.hpp"
#include "commands/scan.hpp"
#include "commands/stream.hpp"
#include "commands/tokenize.hpp"
#include "commands/variants.hpp"
#include "mpi.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <functional>

int main(int argc, char** argv) {
    const massact_tool::MpiSession mpi(&argc, &argv);  // one rank of 1 unless started by mpirun / srun
    CLI::App app{"massact: massive activations and attention sinks in transformer language models"};
    app.require_subcommand(1);
    app.set_version_flag("--version", [] {
        const auto& d = massact_tool::data_dir();
        return std::string("massact ") + massact::version() + "\ndata: " + (d.path.empty() ? d.how : d.path + ", " + d.how);
    });
    std::function<int()> action;
    massact_tool::InfoArgs info;
    massact_tool::RunArgs run;
    massact_tool::EvalArgs eval;
    massact_tool::TokenizeArgs tokenize;
    massact_tool::ScanArgs scan;
    scan.ranks = mpi.ranks();
    massact_tool::AblateArgs ablate;
    massact_tool::InjectArgs inject;
    massact_tool::SuperWeightArgs superweight;
    massact_tool::ReportArgs report;
    massact_tool::CompareArgs compare;
    massact_tool::SwapArgs swap;
    massact_tool::StreamArgs stream;
    massact_tool::GenerateArgs generate;
    massact_tool::BenchArgs bench;
    massact_tool::QuantArgs quant;
    massact_tool::add_info(app, info, action);
    massact_tool::add_run(app, run, action);
    massact_tool::add_eval(app, eval, action);
    massact_tool::add_tokenize(app, tokenize, action);
    massact_tool::add_scan(app, scan, action);
    massact_tool::add_intervention_commands(app, ablate, inject, superweight, action);
    massact_tool::add_report(app, report, action);
    massact_tool::add_variant_commands(app, compare, swap, action);
    massact_tool::add_stream(app, stream, action);
    massact_tool::add_generate(app, generate, action);
    massact_tool::add_bench(app, bench, action);
    massact_tool::add_quant(app, quant, action);
    massact_tool::DocsArgs docs;
    massact_tool::add_docs(app, docs, action);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help prints and exits 0; every command-line error prints CLI11's message and exits 1.
        return app.exit(e) == 0 ? 0 : 1;
    }
    try {
        if (mpi.ranks().size > 1 && !app.got_subcommand("scan"))  // (only scan splits its windows across ranks)
            throw massact::Error("under mpirun only scan runs on several processes; run " + app.get_subcommands().front()->get_name() +
                                 " as one process (its threads: OMP_NUM_THREADS)");
        return action ? action() : 0;
    } catch (const std::exception& e) {
        if (mpi.ranks().size > 1) mpi.abort(e.what());  // one failing rank ends the job
        std::fprintf(stderr, "massact: error: %s\n", e.what());
        return 1;
    }
}
