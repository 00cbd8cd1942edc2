// Fuzz target: config.json bytes -> the block description (and its text form).
#include "common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const nlohmann::json j = fuzz::json_or_discarded(data, size);
    if (j.is_discarded()) return 0;
    fuzz::expect_clean([&] {
        const massact::ModelConfig c = massact::parse_config(j, "fuzz/config.json");
        (void)massact::describe_blocks(c);
        (void)massact::hook_site_names(c, false);
        for (const auto& r : c.rope) (void)r.inv_freq(64);
    });
    return 0;
}
