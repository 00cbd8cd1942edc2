// massact/io/checkpoint.hpp - the tensors of a Hugging Face model directory:
// model.safetensors, or shards listed by model.safetensors.index.json.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/json_file.hpp"
#include "massact/io/safetensors.hpp"

#include <map>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace massact::io {

inline bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

class Checkpoint {
public:
    explicit Checkpoint(const std::string& dir) : dir_(dir) {
        const std::string single = dir + "/model.safetensors";
        const std::string index = dir + "/model.safetensors.index.json";
        if (file_exists(index)) {
            const auto j = read_json_file(index);
            if (!j.contains("weight_map") || !j["weight_map"].is_object())
                throw Error(index + ": field \"weight_map\" missing or not an object");
            std::map<std::string, std::size_t> shard_of_file;
            for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
                if (!it.value().is_string())
                    throw Error(index + ": weight_map[\"" + it.key() + "\"] is not a file name");
                const std::string file = it.value().get<std::string>();
                if (file.find('/') != std::string::npos)
                    throw Error(index + ": weight_map[\"" + it.key() + "\"] = \"" + file + "\" is not a plain file name");
                auto f = shard_of_file.find(file);
                if (f == shard_of_file.end()) {
                    f = shard_of_file.emplace(file, shards_.size()).first;
                    shards_.push_back(std::make_unique<SafetensorsFile>(dir + "/" + file));
                }
                if (!shards_[f->second]->has(it.key()))
                    throw Error(dir + "/" + file + ": missing tensor \"" + it.key() + "\" (listed in " + index + ")");
                where_[it.key()] = f->second;
            }
        } else if (file_exists(single)) {
            shards_.push_back(std::make_unique<SafetensorsFile>(single));
            for (const auto& n : shards_[0]->names()) where_[n] = 0;
        } else {
            throw Error(dir + ": no model.safetensors or model.safetensors.index.json");
        }
    }

    /// Tensors from another container (a GGUF file) under Hugging Face names; `owner` keeps their bytes.
    Checkpoint(std::string name, std::map<std::string, TensorView> views, std::shared_ptr<const void> owner)
        : dir_(std::move(name)), views_(std::move(views)), owner_(std::move(owner)) {}

    const std::string& dir() const { return dir_; }
    bool has(const std::string& name) const { return where_.count(name) != 0 || views_.count(name) != 0; }
    std::vector<std::string> names() const {
        std::vector<std::string> v;
        for (const auto& kv : where_) v.push_back(kv.first);
        for (const auto& kv : views_) v.push_back(kv.first);
        return v;
    }
    const TensorView& tensor(const std::string& name) const {
        if (const auto v = views_.find(name); v != views_.end()) return v->second;
        auto it = where_.find(name);
        if (it == where_.end()) throw Error(dir_ + ": missing tensor \"" + name + "\"");
        return shards_[it->second]->tensor(name);
    }
    std::size_t num_shards() const { return shards_.size(); }

private:
    std::string dir_;
    std::vector<std::unique_ptr<SafetensorsFile>> shards_;
    std::map<std::string, std::size_t> where_;
    std::map<std::string, TensorView> views_;
    std::shared_ptr<const void> owner_;
};

}  // namespace massact::io
