// Several processes (mpirun / srun): the tool's link to Open MPI. Built when CMake finds MPI
// (MASSACT_MPI); the library knows nothing of it: a partial scan is bytes (ScanAccumulator::save), and
// this file only moves those bytes to rank 0, which merges them in rank order.
#pragma once

#include <massact/massact.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(MASSACT_HAVE_MPI)
#include <mpi.h>
#endif

namespace massact_tool {

/// This process's place among the processes of the run (rank 0 of 1 without MPI).
struct Ranks {
    int rank = 0, size = 1;
    bool root() const { return rank == 0; }
    /// Rows [first, last) of n rows for this rank: contiguous shares, rank order = row order.
    std::pair<massact::Index, massact::Index> share(massact::Index n) const {
        return {n * rank / size, n * (rank + 1) / size};
    }
};

/// Whether a launcher started this process as an MPI rank (Open MPI's mpirun, or srun / PMI(x)). A plain
/// `massact ...` does not initialise MPI at all (a singleton init would start Open MPI's daemon every time).
inline bool launched_by_mpi() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
        if (std::getenv(v)) return true;
    return false;
}

class MpiSession {
public:
    MpiSession(int* argc, char*** argv) {
#if defined(MASSACT_HAVE_MPI)
        active_ = launched_by_mpi();
        if (!active_) return;
        MPI_Init(argc, argv);
        MPI_Comm_rank(MPI_COMM_WORLD, &ranks_.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &ranks_.size);
#else
        (void)argc;
        (void)argv;
#endif
    }
    ~MpiSession() {
#if defined(MASSACT_HAVE_MPI)
        if (active_) MPI_Finalize();
#endif
    }
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;
    const Ranks& ranks() const { return ranks_; }

    /// A failing rank ends the whole job: its message, then MPI_Abort (mpirun exits non-zero).
    [[noreturn]] void abort(const std::string& msg) const {
        std::fprintf(stderr, "massact: error: rank %d of %d: %s\n", ranks_.rank, ranks_.size, msg.c_str());
        std::fflush(stderr);
#if defined(MASSACT_HAVE_MPI)
        if (active_) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
        std::exit(1);
    }

private:
    Ranks ranks_;
    [[maybe_unused]] bool active_ = false;  // MPI_Init was called (a launcher started this rank)
};

/// Every rank's bytes, at rank 0 in rank order (other ranks get an empty list).
inline std::vector<std::vector<unsigned char>> gather_bytes(const Ranks& r, const std::vector<unsigned char>& mine) {
    std::vector<std::vector<unsigned char>> all;
#if defined(MASSACT_HAVE_MPI)
    if (r.size > 1) {
        const auto n = static_cast<unsigned long long>(mine.size());
        std::vector<unsigned long long> sizes(static_cast<std::size_t>(r.size));
        MPI_Gather(&n, 1, MPI_UNSIGNED_LONG_LONG, sizes.data(), 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
        std::vector<int> counts(static_cast<std::size_t>(r.size)), offsets(static_cast<std::size_t>(r.size));
        std::size_t total = 0;
        for (int i = 0; i < r.size; ++i) {
            if (sizes[static_cast<std::size_t>(i)] > 1u << 30) throw massact::Error("a partial scan of more than 1 GiB");
            counts[static_cast<std::size_t>(i)] = static_cast<int>(sizes[static_cast<std::size_t>(i)]);
            offsets[static_cast<std::size_t>(i)] = static_cast<int>(total);
            total += sizes[static_cast<std::size_t>(i)];
        }
        std::vector<unsigned char> flat(r.root() ? total : 0);
        MPI_Gatherv(mine.data(), static_cast<int>(mine.size()), MPI_UNSIGNED_CHAR, flat.data(), counts.data(), offsets.data(),
                    MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD);
        if (r.root())
            for (int i = 0; i < r.size; ++i)
                all.emplace_back(flat.begin() + offsets[static_cast<std::size_t>(i)],
                                 flat.begin() + offsets[static_cast<std::size_t>(i)] + counts[static_cast<std::size_t>(i)]);
        return all;
    }
#endif
    (void)r;
    all.push_back(mine);
    return all;
}

}  // namespace massact_tool
