// massact/text/regex.hpp - the regular expressions of tokenizer.json (Split patterns, Replace
// normalizers and decoders) through PCRE2 with Unicode properties and JIT.
//
// Patterns are compiled as UTF-8 with Unicode semantics for \s, \w, \d and case folding (PCRE2_UCP),
// like the Oniguruma engine Hugging Face `tokenizers` uses. Subjects may hold invalid UTF-8
// (PCRE2_MATCH_INVALID_UTF): an invalid byte never matches, so it stays in the gaps between matches.
// A Regex is immutable after construction and safe to use from several threads (match data is
// allocated per call).
#pragma once

#include "massact/core/error.hpp"

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace massact::text {

/// A half-open byte range [begin, end) of a subject.
struct Span {
    std::size_t begin, end;
};

class Regex {
public:
    enum class Syntax { Pattern, Literal };

    /// Compile `pattern` (a regular expression, or with Syntax::Literal a plain string matched
    /// byte for byte, as tokenizers' `{"String": ...}` patterns). Errors name the pattern and the offset PCRE2 complains about.
    explicit Regex(std::string_view pattern, Syntax syntax = Syntax::Pattern) : pattern_(pattern) {
        literal_ = syntax == Syntax::Literal && !pattern.empty();
        if (literal_) return;
        const std::uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
        int code = 0;
        PCRE2_SIZE offset = 0;
        pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &code,
                                       &offset, nullptr);
        if (!re)
            throw Error("regular expression \"" + pattern_ + "\": " + message(code) + " at offset " +
                        std::to_string(offset));
        code_ = std::shared_ptr<pcre2_code>(re, CodeFree{});
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // the interpreter runs where JIT is unavailable
    }

    const std::string& pattern() const { return pattern_; }

    /// Every non-overlapping match, leftmost first (an empty match advances by one character).
    std::vector<Span> find_all(std::string_view subject) const {
        if (literal_) return find_literal(subject);
        std::unique_ptr<pcre2_match_data, MatchDataFree> md(pcre2_match_data_create_from_pattern(code_.get(), nullptr));
        std::vector<Span> out;
        std::size_t start = 0;
        while (start <= subject.size()) {
            const int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start, 0,
                                       md.get(), nullptr);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) throw Error("regular expression \"" + pattern_ + "\": " + message(rc));
            const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
            out.push_back({ov[0], ov[1]});
            if (ov[1] > ov[0]) {
                start = ov[1];
            } else {  // empty match: step over one character
                start = ov[1] + 1;
                while (start < subject.size() && (static_cast<unsigned char>(subject[start]) & 0xC0) == 0x80) ++start;
            }
        }
        return out;
    }

    /// `subject` with every match replaced by `content`.
    std::string replace_all(std::string_view subject, std::string_view content) const {
        std::string out;
        std::size_t prev = 0;
        for (const Span& m : find_all(subject)) {
            out.append(subject.substr(prev, m.begin - prev)).append(content);
            prev = m.end;
        }
        out.append(subject.substr(prev));
        return out;
    }

private:
    struct CodeFree {
        void operator()(pcre2_code* c) const { pcre2_code_free(c); }
    };
    struct MatchDataFree {
        void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
    };
    std::vector<Span> find_literal(std::string_view subject) const {
        std::vector<Span> out;
        for (std::size_t at = subject.find(pattern_); at != std::string_view::npos; at = subject.find(pattern_, at + pattern_.size()))
            out.push_back({at, at + pattern_.size()});
        return out;
    }
    static std::string message(int code) {
        PCRE2_UCHAR buf[256];
        const int n = pcre2_get_error_message(code, buf, sizeof buf);
        return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
    }

    std::string pattern_;
    bool literal_ = false;
    std::shared_ptr<pcre2_code> code_;
};

}  // namespace massact::text
