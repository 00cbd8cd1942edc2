// Figures of the attention-sink literature rendered with gnuplot (pngcairo). Shared by the massact
// tool's report and the example programs; not part of the library. Each function writes its data
// and script next to the PNG (DIR/data/NAME.dat, DIR/data/NAME.gp), runs gnuplot, and returns
// whether the PNG was made.
#pragma once

#include <massact/massact.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace massact_plot {

using massact::Index;

/// Run gnuplot with one argument, without a shell (no quoting, no expansion of the path), its stdout
/// and stderr going to `log` ("/dev/null" to drop them). True when it exits 0.
inline bool run_gnuplot(const std::string& arg, const std::string& log) {
    const pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            ::dup2(fd, 1);
            ::dup2(fd, 2);
        }
        const char* argv[] = {"gnuplot", arg.c_str(), nullptr};
        ::execvp("gnuplot", const_cast<char* const*>(argv));
        ::_exit(127);
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

inline bool gnuplot_available() { return run_gnuplot("--version", "/dev/null"); }

/// Any string (a token, a model name, a path: untrusted) as a gnuplot double-quoted literal that gnuplot reads as
/// plain text. Every byte but letters and spaces is written as an octal escape (`\140` for a backquote),
/// which gnuplot's string syntax decodes only after the line has been read: the script's text then holds no
/// backquote (command substitution), `@` (macros), quote, `;`, `$` or newline that gnuplot could act on, and
/// the string value is drawn as it is (figures use `noenhanced` text). A NUL byte, which would end the string,
/// is drawn as `\0`.
inline std::string quote(const std::string& s) {
    std::string out = "\"";
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' ') {  // (digits too are escaped: gnuplot
                                                                               // reads "\0552" as one 4-digit escape)
            out += ch;
        } else if (c == 0) {
            out += "\\\\0";
        } else {
            char esc[5];
            std::snprintf(esc, sizeof esc, "\\%03o", c);
            out += esc;
        }
    }
    return out + "\"";
}

/// A path as gnuplot's command-line argument: a relative path that starts with '-' would be read as an option
/// (`-e COMMAND`), so relative paths get a leading "./".
inline std::string path_argument(const std::string& path) {
    return path.empty() || path[0] == '/' ? path : "./" + path;
}

struct Figure {
    std::string dir, name;  // writes dir/name.png, dir/data/name.{dat,gp}
    std::string png() const { return dir + "/" + name + ".png"; }
    std::string dat() const { return dir + "/data/" + name + ".dat"; }
    std::string gp() const { return dir + "/data/" + name + ".gp"; }
    /// Write the script (after the terminal and output lines) and run gnuplot: the one way figures are drawn.
    bool render(const std::string& script, int width = 1200, int height = 800, int font = 11) const {
        ::mkdir((dir + "/data").c_str(), 0755);
        std::ofstream(gp()) << "set terminal pngcairo noenhanced size " << width << "," << height << " font \"DejaVu Sans," << font
                            << "\"\nset output " << quote(png()) << "\n"
                            << script;
        return run_gnuplot(path_argument(gp()), gp() + ".log");
    }
};

/// The figure a command-line PNG path names: "out/x.png" is {dir "out", name "x"}.
inline Figure figure_at(const std::string& path) {
    const auto slash = path.find_last_of('/');
    std::string name = path.substr(slash == std::string::npos ? 0 : slash + 1);
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".png") == 0) name.resize(name.size() - 4);
    return {slash == std::string::npos ? "." : path.substr(0, slash), name};
}

/// A command's --figure PATH: draw(figure) with gnuplot, print where it went (or that gnuplot is missing);
/// a gnuplot failure is an error naming the path.
template <typename Draw>
void write_figure(const std::string& path, Draw&& draw) {
    const Figure f = figure_at(path);
    if (!gnuplot_available())
        std::printf("figure skipped: gnuplot not found (sudo apt-get install gnuplot-nox)\n");
    else if (draw(f))
        std::printf("wrote %s\n", f.png().c_str());
    else
        throw massact::Error("--figure: gnuplot failed to write " + path);
}

/// x-tic labels "(\"label\" i, ...)" for token positions.
inline std::string token_tics(const std::vector<std::string>& labels) {
    std::string s = "(";
    for (std::size_t i = 0; i < labels.size(); ++i) s += (i ? ", " : "") + quote(labels[i]) + " " + std::to_string(i);
    return s + ")";
}

/// Figure 1 of Sun et al.: |x| of one layer's hidden state over tokens x dims, as 3D impulses. The
/// `massive` dims are drawn in red and labelled with their dim and value at the token where they peak;
/// the z axis reaches above the tallest spike.
inline bool magnitude_3d(const Figure& f, const massact::RowMatrixF& x, const std::vector<std::string>& labels, int layer,
                         const std::string& model, const std::vector<Index>& massive = {}) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    std::ofstream d(f.dat());
    auto is_massive = [&](Index j) { return std::find(massive.begin(), massive.end(), j) != massive.end(); };
    for (Index t = 0; t < x.rows(); ++t)
        for (Index j = 0; j < x.cols(); ++j) d << t << ' ' << j << ' ' << std::abs(x(t, j)) << ' ' << (is_massive(j) ? 1 : 0) << '\n';
    d.close();
    const double top = x.cwiseAbs().maxCoeff();
    std::string labels_gp;
    for (std::size_t i = 0; i < massive.size(); ++i) {  // labels as a staircase above the spikes: neighbours stay readable
        const Index j = massive[i];
        Index t = 0;
        x.col(j).cwiseAbs().maxCoeff(&t);
        char buf[200];
        std::snprintf(buf, sizeof buf, "set label 'dim %ld: %.0f' at %ld,%ld,%.3f front tc rgb '#b2182b' font ',10'\n",
                      static_cast<long>(j), static_cast<double>(std::abs(x(t, j))), static_cast<long>(t), static_cast<long>(j),
                      top * (1.03 + 0.07 * static_cast<double>(i)));
        labels_gp += buf;
    }
    char zr[64];
    std::snprintf(zr, sizeof zr, "set zrange [0:%.3f]\n", top * (1.1 + 0.07 * static_cast<double>(massive.size())));
    return f.render("set title " + quote(model + ": |x| of the hidden state after block " + std::to_string(layer)) + "\n" +
                    "set xlabel 'token'\nset ylabel 'dim'\nset zlabel '|x|' rotate parallel\nset view 62, 22\n" + zr + labels_gp +
                    "set xtics " + token_tics(labels) + " rotate by 45 right font ',8'\nset ticslevel 0\nunset key\n"
                    "splot " + quote(f.dat()) + " using 1:2:($4 == 0 ? $3 : 1/0) with impulses lc rgb '#1f4e9e' lw 1, " +
                    quote(f.dat()) + " using 1:2:($4 == 1 ? $3 : 1/0) with impulses lc rgb '#b2182b' lw 3\n");
}

/// Top-1/2/3 and median |x| per layer, log scale.
inline bool layer_magnitudes(const Figure& f, const massact::analysis::ScanResult& r, const std::string& model) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    std::ofstream d(f.dat());
    for (const auto& l : r.layers) d << l.layer << ' ' << l.top1_mean << ' ' << l.top2_mean << ' ' << l.top3_mean << ' ' << l.median_mean << '\n';
    d.close();
    const std::string q = quote(f.dat());
    return f.render("set title " + quote(model + ": largest and median |x| of the residual stream per layer (mean over sequences)") +
                    "\nset logscale y\nset xlabel 'layer'\nset ylabel '|x|'\nset key top left\nset grid\nset xtics 1\n"
                    "plot " + q + " u 1:2 w lp lw 2 pt 7 t 'top 1', " + q + " u 1:3 w lp lw 2 pt 5 t 'top 2', " + q +
                    " u 1:4 w lp lw 2 pt 9 t 'top 3', " + q + " u 1:5 w lp lw 2 pt 13 t 'median'\n");
}

/// Attention pattern (mean over heads) of every layer, as heat maps with token labels.
inline bool attention_maps(const Figure& f, const std::vector<massact::RowMatrixF>& mean_pattern,
                           const std::vector<std::string>& labels, const std::string& model) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    std::vector<std::size_t> shown;  // the layers with attention (a Gated DeltaNet or Mamba-2 layer has no pattern)
    for (std::size_t l = 0; l < mean_pattern.size(); ++l)
        if (mean_pattern[l].size() > 0) shown.push_back(l);
    if (shown.empty()) return false;
    const std::size_t L = shown.size();
    const int cols = L > 4 ? 4 : static_cast<int>(L), rows = static_cast<int>((L + 3) / 4);
    std::string script = "set multiplot layout " + std::to_string(rows) + "," + std::to_string(cols) + " title " +
              quote(model + ": attention (mean over heads); the first column is the sink") + "\n";
    script += "set palette defined (0 'white', 0.3 '#9ecae1', 1 '#08306b')\nset cbrange [0:1]\nunset colorbox\nset yrange [] reverse\n";
    script += "set xtics " + token_tics(labels) + " rotate by 90 right font ',6'\nset ytics " + token_tics(labels) + " font ',6'\n";
    for (const std::size_t l : shown) {
        const std::string dat = f.dir + "/data/" + f.name + "_" + std::to_string(l) + ".dat";
        std::ofstream d(dat);
        const auto& P = mean_pattern[l];
        for (Index i = 0; i < P.rows(); ++i) {
            for (Index j = 0; j < P.cols(); ++j) d << (j ? " " : "") << P(i, j);
            d << '\n';
        }
        script += "set title 'layer " + std::to_string(l) + "'\nplot " + quote(dat) + " matrix with image notitle\n";
    }
    script += "unset multiplot\n";
    return f.render(script, 400 * cols, 400 * rows + 60, 9);
}

/// Darcet et al.'s high-norm map: per image, the norm of every patch token's hidden state over the patch
/// grid (row-major [gh, gw] in `norms`), titled with the CLS and register norms.
inline bool token_norm_maps(const Figure& f, const std::vector<massact::RowMatrixF>& norms, const std::vector<std::string>& titles,
                            const std::string& heading) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    const int n = static_cast<int>(norms.size()), cols = n > 4 ? 4 : n, rows = (n + 3) / 4;
    std::string script = "set termoption noenhanced\nset multiplot layout " + std::to_string(rows) + "," + std::to_string(cols) +
                         " title " + quote(heading) + "\n";
    script += "set palette defined (0 '#fff5eb', 0.5 '#fd8d3c', 1 '#7f2704')\nset yrange [] reverse\nset size ratio -1\n"
              "unset xtics\nunset ytics\n";
    for (int i = 0; i < n; ++i) {
        const std::string dat = f.dir + "/data/" + f.name + "_" + std::to_string(i) + ".dat";
        std::ofstream d(dat);
        const auto& M = norms[static_cast<std::size_t>(i)];
        for (Index r = 0; r < M.rows(); ++r) {
            for (Index c = 0; c < M.cols(); ++c) d << (c ? " " : "") << M(r, c);
            d << '\n';
        }
        script += "set title " + quote(titles[static_cast<std::size_t>(i)]) + " font ',9'\nplot " + quote(dat) + " matrix with image notitle\n";
    }
    script += "unset multiplot\n";
    return f.render(script, 360 * cols, 360 * rows + 60, 9);
}

/// Bars: perplexity original / zero / mean (Sun et al., Table 3).
inline bool perplexity_bars(const Figure& f, double original, double zero, double mean, const std::string& what) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    std::ofstream d(f.dat());
    d << "original " << original << "\n\"set to zero\" " << zero << "\n\"set to mean\" " << mean << "\n";
    d.close();
    return f.render("set title " + quote("perplexity when " + what) + "\nset style fill solid 0.8\nset boxwidth 0.6\n"
                    "set yrange [0:*]\nunset key\nset grid y\n"
                    "plot " + quote(f.dat()) + " using 0:2:xtic(1) with boxes lc rgb '#3182bd', '' using 0:2:(sprintf('%.3f', $2)) with labels offset 0,1\n");
}

/// Attention on a token per layer, before and after an intervention (one or more pairs of curves).
struct Series {
    std::string title;
    std::vector<double> values;
};
inline bool attention_shift(const Figure& f, const std::vector<Series>& series, const std::string& title) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    std::ofstream d(f.dat());
    const std::size_t L = series.empty() ? 0 : series[0].values.size();
    for (std::size_t l = 0; l < L; ++l) {
        d << l;
        for (const auto& s : series) d << ' ' << s.values[l];
        d << '\n';
    }
    d.close();
    std::string plot = "plot ";
    for (std::size_t i = 0; i < series.size(); ++i)
        plot += (i ? ", " : "") + quote(f.dat()) + " u 1:" + std::to_string(i + 2) + " w lp lw 2 pt " + std::to_string(5 + 2 * i) +
                " t " + quote(series[i].title);
    return f.render("set title " + quote(title) + "\nset logscale y\nset xlabel 'layer'\nset ylabel 'attention (mean over heads and later queries)'\n"
                    "set key below\nset grid\nset xtics 1\n" + plot + "\n");
}

/// Sun et al. Sec. 6: top-1 |x| per layer of two models (log scale), and attention on the first
/// token and on the bias slot of each.
inline bool model_pair(const Figure& f, const massact::analysis::ModelPair& p, const std::string& a, const std::string& b) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    const auto j = p.to_json();
    std::ofstream d(f.dat());
    auto num = [](const nlohmann::json& v) { return v.is_null() ? std::string("?") : std::to_string(v.get<double>()); };  // ?: no attention
    for (const auto& l : j["layers"])
        d << l["layer"].get<int>() << ' ' << l["top1_a"].get<double>() << ' ' << l["top1_b"].get<double>() << ' '
          << num(l["attention_on_first_token_a"]) << ' ' << num(l["attention_on_first_token_b"]) << ' '
          << l["attention_on_bias_slot_a"].get<double>() << ' ' << l["attention_on_bias_slot_b"].get<double>() << '\n';
    d.close();
    const std::string q = quote(f.dat());
    std::string s = "set datafile missing '?'\nset multiplot layout 1,2\nset grid\nset xtics 1\nset xlabel 'layer'\nset key top left\n";
    s += "set title 'largest |x| of the residual stream (mean over sequences)'\nset logscale y\nset ylabel '|x|'\n";
    s += "plot " + q + " u 1:2 w lp lw 2 pt 7 t " + quote(a) + ", " + q + " u 1:3 w lp lw 2 pt 5 t " + quote(b) + "\n";
    s += "unset logscale y\nset yrange [0:*]\nset title 'where attention goes (mean over heads, queries 1..T-1)'\nset ylabel 'attention'\n";
    s += "plot " + q + " u 1:4 w lp lw 2 pt 7 t " + quote(a + ": first token") + ", " + q + " u 1:5 w lp lw 2 pt 5 t " +
         quote(b + ": first token") + ", " + q + " u 1:7 w lp lw 2 pt 9 dt 2 t " + quote(b + ": bias slot") + "\n";
    s += "unset multiplot\n";
    return f.render(s, 1400, 600);
}


/// Several models (the sink-free comparison), one curve each: the largest |x| over the median per layer (log), the
/// attention on the first token, and the share of heads that are sinks (Gu et al.'s alpha > epsilon).
inline bool model_set(const Figure& f, const massact::analysis::ModelSet& set, const std::vector<std::string>& titles) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    const auto j = set.to_json();
    std::ofstream d(f.dat());
    std::size_t L = 0;
    for (const auto& m : j["models"]) L = std::max(L, m["layers"].size());
    for (std::size_t l = 0; l < L; ++l) {
        d << l;
        for (const auto& m : j["models"]) {
            const auto& layers = m["layers"];
            if (l >= layers.size()) {
                d << " ? ? ?";
                continue;
            }
            const auto& r = layers[l];
            auto num = [&](const char* key) { return r.contains(key) ? std::to_string(r[key].get<double>()) : std::string("?"); };  // ?: no attention
            d << ' ' << r["ratio"].get<double>() << ' ' << num("attention_on_first_token") << ' ' << num("sink_rate");
        }
        d << '\n';
    }
    d.close();
    const std::string q = quote(f.dat());
    auto curves = [&](int offset) {
        std::string s = "plot ";
        for (std::size_t i = 0; i < titles.size(); ++i)
            s += (i ? ", " : "") + q + " u 1:" + std::to_string(2 + 3 * i + offset) + " w lp lw 2 pt " + std::to_string(5 + 2 * (i % 4)) +
                 " t " + quote(titles[i]);
        return s + "\n";
    };
    std::string s = "set datafile missing '?'\nset multiplot layout 1,3\nset grid\nset xtics 1\nset xlabel 'layer'\nset key top left\n";
    s += "set title 'largest |x| / median |x| of the residual stream'\nset logscale y\nset ylabel 'ratio'\n" + curves(0);
    s += "unset logscale y\nset yrange [0:*]\nset title 'attention on the first token (mean over heads)'\nset ylabel 'attention'\n" + curves(1);
    s += "set yrange [0:1]\nset title 'sink rate: heads with alpha > epsilon (Gu et al.)'\nset ylabel 'share of heads'\n" + curves(2);
    s += "unset multiplot\n";
    return f.render(s, 1800, 560);
}

/// Jin et al.'s picture: the mean |q| (left) and |k| (right) of each dim before RoPE, averaged over heads, against the dim's
/// rotary inverse frequency (log scale: slow rotation on the left), one curve per layer. Dims that do not rotate are left out.
inline bool qk_profile(const Figure& f, const massact::analysis::QKProfile& p) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    if (p.layers.empty()) return false;
    const auto& freq = p.layers[0].frequency;
    std::vector<Index> dims;
    for (Index d = 0; d < static_cast<Index>(freq.size()); ++d)
        if (freq[static_cast<std::size_t>(d)] > 0) dims.push_back(d);
    std::sort(dims.begin(), dims.end(), [&](Index a, Index b) { return freq[static_cast<std::size_t>(a)] < freq[static_cast<std::size_t>(b)]; });
    std::ofstream d(f.dat());
    auto head_mean = [](const massact::analysis::QKSiteProfile& s, Index dim) {
        double m = 0;
        for (Index h = 0; h < s.heads; ++h) m += s.abs_at(h, dim) / double(s.heads);
        return m;
    };
    for (Index dim : dims) {
        d << freq[static_cast<std::size_t>(dim)];
        for (const auto& L : p.layers) d << ' ' << (L.q.mean_abs.empty() ? 0.0 : head_mean(L.q, dim)) << ' ' << (L.k.mean_abs.empty() ? 0.0 : head_mean(L.k, dim));
        d << '\n';
    }
    d.close();
    const std::string q = quote(f.dat());
    auto curves = [&](int offset) {
        std::string s = "plot ";
        for (std::size_t l = 0; l < p.layers.size(); ++l)
            s += (l ? ", " : "") + q + " u 1:" + std::to_string(2 + 2 * l + offset) + " w p pt 7 ps 0.8 t " + quote("layer " + std::to_string(l));
        return s + "\n";
    };
    std::string s = "set multiplot layout 1,2\nset grid\nset logscale x\nset xlabel 'rotary inverse frequency of the dim (left: slow)'\n"
                    "set key outside right\n";
    s += "set title 'mean |q| per dim before RoPE (mean over heads)'\nset ylabel '|q|'\n" + curves(0);
    s += "set title 'mean |k| per dim before RoPE (mean over heads)'\nset ylabel '|k|'\n" + curves(1);
    s += "unset multiplot\n";
    return !dims.empty() && f.render(s, 1600, 600);
}

/// One stream run: its per-token NLL and, for cache runs, the attention on the cache's first tokens.
struct StreamCurve {
    std::string title;
    std::vector<double> nll, sink_attention;
};

/// StreamingLLM's figure: log-perplexity (mean NLL) of each block of `bin` tokens against the position,
/// one curve per run; below, the attention the new token pays to the first tokens of the cache (mean over
/// layers and heads, per block) over time.
inline bool stream_curves(const Figure& f, const std::vector<StreamCurve>& runs, Index bin, const std::string& title) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    std::ofstream d(f.dat());
    std::size_t n = 0;
    for (const auto& r : runs) n = std::max(n, r.nll.size());
    const auto B = static_cast<std::size_t>(bin);
    auto mean = [&](const std::vector<double>& v, std::size_t i0) {
        if (i0 >= v.size()) return std::string("?");
        double s = 0;
        const std::size_t i1 = std::min(v.size(), i0 + B);
        for (std::size_t i = i0; i < i1; ++i) s += v[i];
        char b[32];
        std::snprintf(b, sizeof b, "%.6g", s / static_cast<double>(i1 - i0));
        return std::string(b);
    };
    for (std::size_t i0 = 0; i0 < n; i0 += B) {
        d << i0 + std::min(B, n - i0) / 2 + 1;
        for (const auto& r : runs) d << ' ' << mean(r.nll, i0) << ' ' << mean(r.sink_attention, i0);
        d << '\n';
    }
    d.close();
    std::string nll = "plot ", att = "plot ";
    bool any_att = false;
    for (std::size_t i = 0; i < runs.size(); ++i) {
        const std::string col = std::to_string(2 + 2 * i), t = quote(runs[i].title);
        nll += (i ? ", " : "") + quote(f.dat()) + " u 1:" + col + " w l lw 2 t " + t;
        if (!runs[i].sink_attention.empty()) {
            att += std::string(any_att ? ", " : "") + quote(f.dat()) + " u 1:" + std::to_string(3 + 2 * i) + " w l lw 2 t " + t;
            any_att = true;
        }
    }
    std::string s = "set datafile missing '?'\nset grid\nset key outside right\nset xrange [0:" + std::to_string(n + 1) + "]\n";
    s += any_att ? "set multiplot layout 2,1 title " + quote(title) + "\n" : "set title " + quote(title) + "\n";
    s += "set ylabel 'log perplexity (mean NLL per " + std::to_string(bin) + " tokens)'\nset xlabel 'position in the stream'\n" + nll + "\n";
    if (any_att)
        s += "set yrange [0:1]\nset ylabel 'attention on the first tokens of the cache'\n" + att + "\nunset multiplot\n";
    return f.render(s, 1200, any_att ? 1000 : 700);
}

}  // namespace massact_plot
