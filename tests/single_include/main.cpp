// A user translation unit built against single_include/ alone (no include/ on the path): the bundled model
// runs, and massact::probe::Scan, fed by a hook as an engine would feed it, finds tiny-llama's massive dim.
#include <massact/massact.hpp>

#include <algorithm>
#include <cstdio>

#ifndef MASSACT_SINGLE_HEADER
#error "this test must compile against single_include/massact/massact.hpp"
#endif

int main(int argc, char** argv) {
    if (argc < 2) return 2;
    const massact::Transformer model(argv[1]);
    const massact::ModelConfig& c = model.config();
    massact::TokenBatch ids(1, 6);
    ids << 1, 100, 200, 300, 400, 500;
    massact::probe::Scan probe(c.num_layers, c.num_heads, c.hidden_size, {}, c.model_type);
    massact::Hooks hooks;
    hooks.add("*hook_resid_post", [&](massact::Activation& a) {
        probe.observe(a.layer, "hook_resid_post", a.data, ids.cols(), c.hidden_size, c.hidden_size, massact::probe::DType::F32,
                      ids.row(0).data());
    });
    model.forward(ids, hooks);
    probe.end_sequence();
    const auto r = probe.result();
    const auto first = massact::analysis::first_token_massive(r);
    const bool found = std::find(first.dims.begin(), first.dims.end(), massact::Index(215)) != first.dims.end();
    std::printf("single header: %zu massive dim(s), first-token dims from layer %d%s\n", r.massive.size(), first.layer,
                found ? ", 215 among them" : ", 215 missing");
    return found ? 0 : 1;
}
