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
#include "cli_entry.hpp"
#include "mpi.hpp"

int main(int argc, char** argv) {
    const massact_tool::MpiSession mpi(&argc, &argv);  // one rank of 1 unless started by mpirun / srun
    return massact_tool::cli_entry(argc, argv, mpi.ranks(), &mpi);
}
