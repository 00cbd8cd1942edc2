// Token input for the massact tool: --ids, --ids-file FILE[:TENSOR].
#pragma once

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace massact_tool {

using massact::Error;
using massact::Index;
using massact::TokenBatch;

struct TokenInput {
    std::string ids;        // --ids 1,2,3
    std::string ids_file;   // --ids-file FILE[:TENSOR]
    std::string prompt;     // --prompt TEXT (tokenized with the model's tokenizer.json, special tokens on)
    std::string text_file;  // --text-file FILE (the whole file as one sequence)
    bool single = false;    // one sequence given as [T]: dumps drop the batch dimension
};

inline std::string read_text_file(const std::string& path, const std::string& flag) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(flag + ": " + path + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline TokenBatch tokenize_text(const std::string& model_dir, const std::string& text, const std::string& flag) {
    const auto tok = massact::text::load_tokenizer(model_dir);
    const auto ids = tok.encode(text, true);
    if (ids.empty()) throw Error(flag + ": the text encodes to no tokens");
    TokenBatch b(1, static_cast<Index>(ids.size()));
    for (std::size_t i = 0; i < ids.size(); ++i) b(0, static_cast<Index>(i)) = ids[i];
    return b;
}

inline TokenBatch parse_id_list(const std::string& s, const std::string& flag) {
    std::vector<std::int64_t> v;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        std::size_t pos = 0;
        long long x = 0;
        try {
            x = std::stoll(item, &pos);
        } catch (const std::exception&) {
            pos = 0;
        }
        while (pos < item.size() && std::isspace(static_cast<unsigned char>(item[pos]))) ++pos;
        if (item.empty() || pos != item.size()) throw Error(flag + ": \"" + item + "\" is not an integer token id");
        v.push_back(x);
    }
    if (v.empty()) throw Error(flag + ": no token ids given");
    TokenBatch b(1, static_cast<Index>(v.size()));
    for (std::size_t i = 0; i < v.size(); ++i) b(0, static_cast<Index>(i)) = v[i];
    return b;
}

/// A JSON array of token ids (one sequence) or of equally long arrays (a batch).
inline TokenBatch json_ids(const nlohmann::json& j, const std::string& file, bool& single) {
    auto ids_of = [&](const nlohmann::json& row, std::size_t r) {
        std::vector<std::int64_t> v;
        for (const auto& x : row) {
            if (!x.is_number_integer())
                throw Error(file + ": sequence " + std::to_string(r) + ": " + massact::io::json_brief(x) + " is not an integer token id");
            v.push_back(x.get<std::int64_t>());
        }
        return v;
    };
    std::vector<std::vector<std::int64_t>> rows;
    single = j.empty() || !j[0].is_array();
    if (single) rows.push_back(ids_of(j, 0));
    else
        for (std::size_t r = 0; r < j.size(); ++r) {
            if (!j[r].is_array()) throw Error(file + ": entry " + std::to_string(r) + " is not an array of token ids");
            rows.push_back(ids_of(j[r], r));
            if (rows.back().size() != rows[0].size())
                throw Error(file + ": sequence " + std::to_string(r) + " has " + std::to_string(rows.back().size()) +
                            " ids, but the first has " + std::to_string(rows[0].size()) + " (sequences of a batch must have equal length)");
        }
    if (rows[0].empty()) throw Error("--ids-file: " + file + ": no token ids");
    TokenBatch b(static_cast<Index>(rows.size()), static_cast<Index>(rows[0].size()));
    for (Index r = 0; r < b.rows(); ++r)
        for (Index c = 0; c < b.cols(); ++c) b(r, c) = rows[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)];
    return b;
}

/// FILE[:TENSOR]: a safetensors tensor (I64/I32, [T] or [N, T]), a JSON array of ids (or of equally long
/// arrays), or a text file, one sequence per line.
inline TokenBatch read_ids_file(const std::string& spec, bool& single) {
    std::string file = spec, tensor;
    if (!massact::io::file_exists(file)) {
        const auto colon = spec.rfind(':');
        if (colon != std::string::npos) {
            file = spec.substr(0, colon);
            tensor = spec.substr(colon + 1);
        }
    }
    if (!massact::io::file_exists(file)) throw Error("--ids-file: " + file + ": no such file");
    std::ifstream probe(file, std::ios::binary);
    char magic[9] = {0};
    probe.read(magic, 9);
    const bool is_st = file.size() > 12 && file.compare(file.size() - 12, 12, ".safetensors") == 0;
    if (is_st || (probe.gcount() == 9 && magic[8] == '{')) {
        massact::io::SafetensorsFile st(file);
        if (tensor.empty()) {
            const auto names = st.names();
            if (st.has("input_ids")) tensor = "input_ids";
            else if (names.size() == 1) tensor = names[0];
            else throw Error("--ids-file: " + file + " holds several tensors: name one as FILE:TENSOR");
        }
        const auto& t = st.tensor(tensor);
        const auto v = t.to_int64();
        if (t.shape.size() == 1) {
            single = true;
            TokenBatch b(1, t.shape[0]);
            for (Index i = 0; i < t.shape[0]; ++i) b(0, i) = v[static_cast<std::size_t>(i)];
            return b;
        }
        if (t.shape.size() != 2) throw Error(t.where() + ": expected shape [T] or [N, T], found " + massact::io::shape_string(t.shape));
        TokenBatch b(t.shape[0], t.shape[1]);
        for (Index i = 0; i < b.size(); ++i) b.data()[i] = v[static_cast<std::size_t>(i)];
        if (b.size() == 0) throw Error(t.where() + ": empty tensor");
        return b;
    }
    if (!tensor.empty()) throw Error("--ids-file: " + file + " is a text file; a tensor name applies to safetensors only");
    const std::string body = read_text_file(file, "--ids-file");
    const auto first = body.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && body[first] == '[') return json_ids(massact::io::read_json_file(file), file, single);
    std::istringstream in(body);
    std::vector<std::vector<std::int64_t>> rows;
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        std::stringstream ls(line);
        std::vector<std::int64_t> row;
        std::string tok;
        while (ls >> tok) {
            std::size_t pos = 0;
            long long x = 0;
            try { x = std::stoll(tok, &pos); } catch (const std::exception&) { pos = 0; }
            if (pos != tok.size())
                throw Error(file + ":" + std::to_string(lineno) + ": \"" + tok + "\" is not an integer token id");
            row.push_back(x);
        }
        if (row.empty()) continue;
        if (!rows.empty() && row.size() != rows[0].size())
            throw Error(file + ":" + std::to_string(lineno) + ": " + std::to_string(row.size()) +
                        " ids, but the first sequence has " + std::to_string(rows[0].size()) +
                        " (sequences of a batch must have equal length)");
        rows.push_back(std::move(row));
    }
    if (rows.empty()) throw Error("--ids-file: " + file + ": no token ids");
    single = rows.size() == 1;
    TokenBatch b(static_cast<Index>(rows.size()), static_cast<Index>(rows[0].size()));
    for (Index r = 0; r < b.rows(); ++r)
        for (Index c = 0; c < b.cols(); ++c) b(r, c) = rows[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)];
    return b;
}

inline TokenBatch load_tokens(TokenInput& in, const std::string& model_dir) {
    const int given = !in.ids.empty() + !in.ids_file.empty() + !in.prompt.empty() + !in.text_file.empty();
    if (given == 0) throw Error("no input: give --ids, --ids-file, --prompt or --text-file");
    if (given > 1) throw Error("give only one of --ids, --ids-file, --prompt and --text-file");
    if (!in.ids_file.empty()) return read_ids_file(in.ids_file, in.single);
    in.single = true;
    if (!in.ids.empty()) return parse_id_list(in.ids, "--ids");
    if (!in.prompt.empty()) return tokenize_text(model_dir, in.prompt, "--prompt");
    return tokenize_text(model_dir, read_text_file(in.text_file, "--text-file"), "--text-file");
}

/// Inputs of the dataset commands (scan, ablate, inject, report): --data, or any TokenInput.
struct DataInput {
    TokenInput tokens;
    std::string data;     // --data FILE: text, documents separated by lines holding only 0x1E
    Index seq_len = 256;  // --seq-len: window length for --data; truncates longer --ids-file rows
    Index max_seqs = 0;   // --max-seqs: at most this many sequences (0 = all)
    Index random_tokens = 0;       // --random-tokens N: N sequences of --seq-len uniformly random tokens (Gu et al.)
    std::uint64_t random_seed = 0;  // --random-seed
    bool seq_len_given = false;
};

inline TokenBatch load_data(DataInput& in, const std::string& model_dir) {
    if (in.max_seqs < 0) throw Error("--max-seqs: must be positive");
    if (in.seq_len < 2) throw Error("--seq-len: must be at least 2");
    const bool tokens_given = !in.tokens.ids.empty() || !in.tokens.ids_file.empty() || !in.tokens.prompt.empty() ||
                              !in.tokens.text_file.empty();
    if (int(!in.data.empty()) + int(in.random_tokens > 0) + int(tokens_given) > 1)
        throw Error("give only one of --data, --random-tokens, --ids, --ids-file, --prompt and --text-file");
    if (in.random_tokens < 0) throw Error("--random-tokens: must be positive");
    if (in.random_tokens > 0) {
        if (!massact::text::has_tokenizer(model_dir))
            throw Error("--random-tokens: " + model_dir + " has no tokenizer (tokenizer.json or a GGUF vocabulary) to draw tokens from");
        const auto tok = massact::text::load_tokenizer(model_dir);
        const Index n = in.max_seqs > 0 ? std::min(in.max_seqs, in.random_tokens) : in.random_tokens;
        return massact::analysis::random_tokens(tok, n, in.seq_len, in.random_seed);
    }
    if (!in.data.empty()) {
        const auto tok = massact::text::load_tokenizer(model_dir);
        return massact::analysis::text_windows(tok, read_text_file(in.data, "--data"), in.seq_len, in.max_seqs);
    }
    if (!tokens_given) throw Error("no input: give --data, --random-tokens, --ids, --ids-file, --prompt or --text-file");
    TokenBatch b = load_tokens(in.tokens, model_dir);
    if (in.seq_len_given && in.seq_len < b.cols()) b = TokenBatch(b.leftCols(in.seq_len));
    if (in.max_seqs > 0 && in.max_seqs < b.rows()) b = TokenBatch(b.topRows(in.max_seqs));
    return b;
}

inline void add_data_options(CLI::App* cmd, DataInput& in);

inline void add_token_options(CLI::App* cmd, TokenInput& in) {
    cmd->add_option("--ids", in.ids, "Token ids of one sequence, comma separated (e.g. 1,2,3)");
    cmd->add_option("--ids-file", in.ids_file,
                    "FILE[:TENSOR]: safetensors tensor (I64/I32, [T] or [N,T]), JSON array of ids, or text, one sequence per line");
    cmd->add_option("--prompt", in.prompt, "Text, tokenized with the model's tokenizer (special tokens added)");
    cmd->add_option("--text-file", in.text_file, "A text file, tokenized as one sequence");
}

inline void add_data_options(CLI::App* cmd, DataInput& in) {
    add_token_options(cmd, in.tokens);
    cmd->add_option("--data", in.data, "Text file cut into windows (documents separated by lines holding only 0x1E)");
    cmd->add_option("--seq-len", in.seq_len, "Window length for --data; truncates longer --ids-file rows")
        ->capture_default_str()
        ->each([&](const std::string&) { in.seq_len_given = true; });
    cmd->add_option("--max-seqs", in.max_seqs, "Use at most this many sequences (0 = all)")->capture_default_str();
    cmd->add_option("--random-tokens", in.random_tokens,
                    "N sequences of --seq-len tokens drawn uniformly from the vocabulary (special tokens left out, BOS first where "
                    "the tokenizer adds one): Gu et al.'s protocol for the sink rate");
    cmd->add_option("--random-seed", in.random_seed, "Seed of --random-tokens")->capture_default_str();
}

}  // namespace massact_tool
