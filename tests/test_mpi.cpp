// mpirun -np 2 massact scan: the windows dealt to two ranks, merged at rank 0, equal the one-process scan;
// a failing rank ends the job with its message. Built when the tool is built with MPI (MASSACT_MPI).
#include "common.hpp"

#include <fstream>
#include <sstream>

using namespace massact;

namespace {

int shell(const std::string& cmd, std::string& out) {
    const std::string dir = test::temp_dir("mpi");
    const int rc = std::system((cmd + " > " + dir + "/out.txt 2>&1").c_str());
    std::ifstream f(dir + "/out.txt");
    std::stringstream ss;
    ss << f.rdbuf();
    out = ss.str();
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string mpirun(int ranks) {
    return std::string(MASSACT_MPIEXEC) + " --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " -x OMP_NUM_THREADS=1 ";
}

/// Every number of a within `rel` of b (relative), every other value equal; the worst difference in `worst`.
void compare_json(const nlohmann::json& a, const nlohmann::json& b, const std::string& path, double rel, double& worst) {
    INFO(path);
    REQUIRE(a.type() == b.type());
    if (a.is_object()) {
        REQUIRE(a.size() == b.size());
        for (auto it = a.begin(); it != a.end(); ++it) {
            REQUIRE(b.contains(it.key()));
            compare_json(it.value(), b[it.key()], path + "." + it.key(), rel, worst);
        }
    } else if (a.is_array()) {
        REQUIRE(a.size() == b.size());
        for (std::size_t i = 0; i < a.size(); ++i) compare_json(a[i], b[i], path + "[" + std::to_string(i) + "]", rel, worst);
    } else if (a.is_number_float()) {
        const double x = a.get<double>(), y = b.get<double>();
        const double d = x == y ? 0.0 : std::fabs(x - y) / std::max(std::fabs(x), 1e-300);
        worst = std::max(worst, d);
        CHECK(d <= rel);
    } else {
        CHECK(a == b);
    }
}

}  // namespace

TEST_CASE("mpirun -np 2 massact scan equals the one-process scan") {
    const std::string dir = test::temp_dir("mpi-scan");
    const std::string args = " scan " + test::model("tiny-llama") + " --data " + std::string(MASSACT_SOURCE_DIR) +
                             "/examples/data/val.txt --max-seqs 24 --json ";
    std::string out1, out2, out3;
    REQUIRE(shell(std::string(MASSACT_TOOL) + args + dir + "/one.json", out1) == 0);
    REQUIRE(shell(mpirun(2) + MASSACT_TOOL + args + dir + "/two.json", out2) == 0);
    REQUIRE(shell(mpirun(3) + MASSACT_TOOL + args + dir + "/three.json", out3) == 0);
    CHECK(out2.find("2 processes") != std::string::npos);
    std::ifstream f1(dir + "/one.json"), f2(dir + "/two.json"), f3(dir + "/three.json");
    const auto one = nlohmann::json::parse(f1), two = nlohmann::json::parse(f2), three = nlohmann::json::parse(f3);
    CHECK(one["val_sequences"] == 24);
    CHECK(one["massive_activations"].size() > 0);  // tiny-llama's dims are found, by both
    double worst = 0;
    compare_json(one, two, "", 1e-6, worst);
    compare_json(one, three, "", 1e-6, worst);
    MESSAGE("largest relative difference, 1 vs 2 and 3 ranks: " << worst);
}

TEST_CASE("a failing rank ends mpirun with its message") {
    // two sequences; the second, rank 1's share, holds a token id outside the vocabulary
    const std::string dir = test::temp_dir("mpi-fail");
    std::ofstream(dir + "/ids.txt") << "1 100 200 300\n1 100 999999 300\n";
    std::string out;
    const int rc = shell(mpirun(2) + MASSACT_TOOL + " scan " + test::model("tiny-llama") + " --ids-file " + dir + "/ids.txt --json " + dir + "/s.json", out);
    INFO(out);
    CHECK(rc != 0);
    CHECK(out.find("rank 1 of 2") != std::string::npos);
    CHECK(out.find("outside the vocabulary") != std::string::npos);
    CHECK(!std::filesystem::exists(dir + "/s.json"));
}

TEST_CASE("under mpirun, commands that do not split their work are refused, not run twice") {
    std::string out;
    const int rc = shell(mpirun(2) + MASSACT_TOOL + " eval " + test::model("tiny-llama") + " --ids 1,2,3", out);
    INFO(out);
    CHECK(rc != 0);
    CHECK(out.find("only scan runs on several processes") != std::string::npos);
}
