// massact/analysis/sink_metrics.hpp - attention-sink metrics per (layer, head).
//
//   attention on the first token: mean over sequences and over queries 1..T-1 of A[t, 0];
//   attention on the first delimiter k: mean over queries k+1..T-1 of A[t, k], over sequences that have one;
//   Gu et al. (2024) alpha: mean over sequences of the mean over queries t < T_sink of A[t, 0];
//   attention on the extra slot (models or runs with a sink slot): mean over queries 1..T-1.
// Mergeable: sums over sequences.
#pragma once

#include "massact/core/bytes.hpp"
#include "massact/core/eigen.hpp"

#include <algorithm>
#include <vector>

namespace massact::analysis {

struct SinkAccumulator {
    std::vector<double> first, alpha, delim, slot, regs;  // [H] sums over sequences
    double sequences = 0, delim_sequences = 0;

    void reset(Index heads) {
        for (auto* v : {&first, &alpha, &delim, &slot, &regs}) v->assign(static_cast<std::size_t>(heads), 0.0);
        sequences = delim_sequences = 0;
    }

    /// One sequence's pattern [H, T, T]; `delimiter` = its first delimiter position (-1: none); t_sink = Gu's T.
    void add_pattern(const float* pattern, Index heads, Index T, Index delimiter, Index t_sink) {
        add_keys([&](Index h, Index q, Index key) { return pattern[(h * T + q) * T + (key == 0 ? 0 : delimiter)]; }, heads, T,
                 delimiter, t_sink);
    }

    /// The same from the probabilities of chosen keys only, [H, T, C] (attn.hook_pattern_columns with the keys of
    /// sink_columns(): column 0 key 0, column 1 the delimiter): no [T, T] pattern is needed.
    void add_columns(const float* probs, Index heads, Index T, Index C, Index delimiter, Index t_sink) {
        add_keys([&](Index h, Index q, Index key) { return probs[(h * T + q) * C + key]; }, heads, T, delimiter, t_sink);
    }

    /// The keys add_columns() and add_register_columns() read, for a sequence whose first delimiter is `delimiter`
    /// (-1: none) and `registers` register tokens (keys 1..R, vision): [0, delimiter, 1, .., R].
    static std::vector<Index> sink_columns(Index delimiter, Index registers) {
        std::vector<Index> cols = {0, delimiter};
        for (Index k = 1; k <= registers; ++k) cols.push_back(k);
        return cols;
    }

    /// Vision: one sequence's attention on its register tokens (keys 1..R), summed over them and averaged
    /// over every query.
    void add_registers(const float* pattern, Index heads, Index T, Index registers) {
        add_register_keys([&](Index h, Index q, Index k) { return pattern[(h * T + q) * T + k]; }, heads, T, registers);
    }
    /// The same from add_columns()'s [H, T, C] (registers in columns 2 .. R + 1).
    void add_register_columns(const float* probs, Index heads, Index T, Index C, Index registers) {
        add_register_keys([&](Index h, Index q, Index k) { return probs[(h * T + q) * C + 1 + k]; }, heads, T, registers);
    }

    /// One sequence's extra-slot probabilities [H, T].
    void add_slot(const float* probs, Index heads, Index T) {
        for (Index h = 0; h < heads; ++h) {
            double s = 0;
            for (Index q = 1; q < T; ++q) s += probs[h * T + q];
            slot[static_cast<std::size_t>(h)] += s / double(T - 1);
        }
    }

    void save(ByteWriter& w) const {
        for (const auto* v : {&first, &alpha, &delim, &slot, &regs}) w.put_vector(*v);
        w.put(sequences);
        w.put(delim_sequences);
    }
    void load(ByteReader& r) {
        for (auto* v : {&first, &alpha, &delim, &slot, &regs}) *v = r.get_vector<double>();
        sequences = r.get<double>();
        delim_sequences = r.get<double>();
    }

    void merge(const SinkAccumulator& o) {
        auto add = [](std::vector<double>& a, const std::vector<double>& b) {
            if (a.empty()) a.assign(b.size(), 0.0);
            for (std::size_t i = 0; i < b.size(); ++i) a[i] += b[i];
        };
        add(first, o.first);
        add(alpha, o.alpha);
        add(delim, o.delim);
        add(slot, o.slot);
        add(regs, o.regs);
        sequences += o.sequences;
        delim_sequences += o.delim_sequences;
    }

    /// Per-head means.
    std::vector<double> mean_first() const { return scaled(first, sequences); }
    std::vector<double> mean_alpha() const { return scaled(alpha, sequences); }
    std::vector<double> mean_delim() const { return scaled(delim, delim_sequences); }
    std::vector<double> mean_slot() const { return scaled(slot, sequences); }
    std::vector<double> mean_registers() const { return scaled(regs, sequences); }

private:
    /// at(h, q, key): the probability query q of head h gives the first token (key = 0) or the first delimiter (key = 1).
    template <typename At>
    void add_keys(At at, Index heads, Index T, Index delimiter, Index t_sink) {
        const Index Tg = std::min(t_sink, T);
        const bool has_delim = delimiter > 0 && delimiter + 1 < T;
        for (Index h = 0; h < heads; ++h) {
            double s = 0, g = 0;
            for (Index q = 1; q < T; ++q) s += at(h, q, 0);
            for (Index q = 0; q < Tg; ++q) g += at(h, q, 0);
            first[static_cast<std::size_t>(h)] += s / double(T - 1);
            alpha[static_cast<std::size_t>(h)] += g / double(Tg);
            if (has_delim) {
                double sd = 0;
                for (Index q = delimiter + 1; q < T; ++q) sd += at(h, q, 1);
                delim[static_cast<std::size_t>(h)] += sd / double(T - 1 - delimiter);
            }
        }
        sequences += 1;
        delim_sequences += has_delim ? 1 : 0;
    }
    /// at(h, q, k): the probability query q of head h gives register k (1..R).
    template <typename At>
    void add_register_keys(At at, Index heads, Index T, Index registers) {
        for (Index h = 0; h < heads; ++h) {
            double s = 0;
            for (Index q = 0; q < T; ++q)
                for (Index k = 1; k <= registers; ++k) s += at(h, q, k);
            regs[static_cast<std::size_t>(h)] += s / double(T);
        }
    }

    static std::vector<double> scaled(const std::vector<double>& v, double n) {
        std::vector<double> out(v.size(), 0.0);
        if (n > 0)
            for (std::size_t i = 0; i < v.size(); ++i) out[i] = v[i] / n;
        return out;
    }
};

}  // namespace massact::analysis
