#!/usr/bin/env python3
"""Held-out checkpoints of the Families III architectures: other sizes, head counts, flags and seeds than
tests/data/families/<name>, with transformers' float32 references (tests/data/heldout/<name>/).

    python3 tools/make_heldout_families.py tests/data/families OUT_DIR

Needs PyTorch and transformers (5.17 was used); massact never runs it. Each family's configuration is its
tests/data/families/<name>/config.json with the overrides below (HELDOUT), a fresh random initialisation
(seed per family), every floating parameter then perturbed (matrices + N(0, 0.05), vectors + N(0, 0.1)) and
rounded to BF16, the reference computed on the CPU in float32 with eager attention from exactly those
rounded weights, and the checkpoint stored as BF16 (config.json, model.safetensors) beside ref.safetensors:
input_ids [2, 20] (vision: pixel_values [2, 3, S, S]), hidden_states.i, attentions.i (the layers with
softmax attention), logits (vision: last_hidden_state, pooler_output). A family whose configuration
transformers refuses is reported and skipped; the script exits 1 if any was."""
import json
import os
import sys
import traceback

import torch

# name -> (seed, overrides); the sizes differ from the base checkpoints' (hidden 64, 4 heads of 16, 4 layers)
SMALL = {"hidden_size": 48, "intermediate_size": 96, "vocab_size": 320, "num_attention_heads": 6,
         "num_key_value_heads": 3}
HELDOUT = {
    "qwen3_next": (101, {**SMALL, "head_dim": 8, "num_hidden_layers": 5,
                         "layer_types": ["linear_attention", "linear_attention", "full_attention", "linear_attention", "full_attention"],
                         "mlp_only_layers": [2], "num_experts": 6, "num_experts_per_tok": 3, "norm_topk_prob": False,
                         "moe_intermediate_size": 24, "shared_expert_intermediate_size": 40,
                         "linear_num_key_heads": 2, "linear_num_value_heads": 6, "linear_key_head_dim": 8,
                         "linear_value_head_dim": 12, "linear_conv_kernel_dim": 3, "partial_rotary_factor": 0.5,
                         "rope_parameters": {"partial_rotary_factor": 0.5, "rope_theta": 5000.0, "rope_type": "default"}}),
    "qwen3_next_gated_dense": (102, {**SMALL, "head_dim": 12, "num_hidden_layers": 3, "num_key_value_heads": 2,
                                     "layer_types": ["full_attention"] * 3, "mlp_only_layers": [0, 1, 2],
                                     "tie_word_embeddings": True}),
    "qwen3_5_text": (103, {**SMALL, "head_dim": 8, "num_hidden_layers": 3,
                           "layer_types": ["linear_attention", "full_attention", "linear_attention"],
                           "linear_num_key_heads": 1, "linear_num_value_heads": 3, "linear_key_head_dim": 12,
                           "linear_value_head_dim": 8, "linear_conv_kernel_dim": 5, "partial_rotary_factor": 0.5,
                           "rope_parameters": {"partial_rotary_factor": 0.5, "rope_theta": 20000.0, "rope_type": "default"}}),
    "deepseek_v2": (104, {**SMALL, "num_key_value_heads": 6, "num_hidden_layers": 3, "q_lora_rank": 24, "kv_lora_rank": 12,
                          "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "qk_head_dim": 12, "head_dim": 4, "v_head_dim": 10,
                          "n_routed_experts": 6, "n_shared_experts": 1, "num_experts_per_tok": 3, "first_k_dense_replace": 2,
                          "moe_intermediate_size": 24, "topk_method": "group_limited_greedy", "n_group": 3, "topk_group": 2,
                          "routed_scaling_factor": 1.5}),
    "deepseek_v3": (105, {**SMALL, "num_key_value_heads": 6, "num_hidden_layers": 3, "q_lora_rank": None, "kv_lora_rank": 20,
                          "qk_nope_head_dim": 12, "qk_rope_head_dim": 6, "qk_head_dim": 18, "head_dim": 6, "v_head_dim": 8,
                          "n_routed_experts": 8, "n_shared_experts": 2, "num_experts_per_tok": 3, "n_group": 4, "topk_group": 2,
                          "first_k_dense_replace": 1, "moe_intermediate_size": 16, "routed_scaling_factor": 1.8,
                          "norm_topk_prob": False,
                          "rope_parameters": {"rope_theta": 10000.0, "rope_type": "yarn", "factor": 4.0,
                                              "original_max_position_embeddings": 16, "beta_fast": 32.0, "beta_slow": 1.0,
                                              "mscale": 0.707, "mscale_all_dim": 0.707}}),
    "llama4_text": (106, {**SMALL, "head_dim": 8, "num_hidden_layers": 5, "attention_chunk_size": 6,
                          "layer_types": ["chunked_attention", "chunked_attention", "full_attention", "chunked_attention", "full_attention"],
                          "no_rope_layers": [1, 1, 0, 1, 0], "no_rope_layer_interval": 3, "moe_layers": [0, 2, 4],
                          "interleave_moe_layer_step": 2, "num_local_experts": 3, "intermediate_size_mlp": 80,
                          "floor_scale": 4, "attn_scale": 0.2, "use_qk_norm": False}),
    "smollm3": (107, {**SMALL, "num_hidden_layers": 5, "no_rope_layer_interval": 3, "no_rope_layers": [1, 1, 0, 1, 1],
                      "layer_types": ["full_attention"] * 5, "tie_word_embeddings": True, "attention_bias": True}),
    "cohere": (108, {**SMALL, "num_hidden_layers": 3, "use_qk_norm": False, "logit_scale": 0.125, "tie_word_embeddings": True}),
    "cohere2": (109, {**SMALL, "head_dim": 8, "num_hidden_layers": 5, "sliding_window": 5, "logit_scale": 0.5,
                      "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention", "full_attention"]}),
    "olmoe": (110, {**SMALL, "num_hidden_layers": 3, "num_experts": 6, "num_experts_per_tok": 3, "norm_topk_prob": True}),
    "olmo3": (111, {**SMALL, "num_hidden_layers": 3, "sliding_window": 5,
                    "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
                    "rope_parameters": {"full_attention": {"rope_theta": 10000.0, "rope_type": "default"},
                                        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}}),
    "granite": (112, {**SMALL, "num_hidden_layers": 3, "attention_multiplier": 0.1, "embedding_multiplier": 6.0,
                      "logits_scaling": 8.0, "residual_multiplier": 0.25, "tie_word_embeddings": True}),
    "granitemoe": (113, {**SMALL, "num_hidden_layers": 3, "num_local_experts": 5, "num_experts_per_tok": 1,
                         "attention_multiplier": 0.3, "embedding_multiplier": 4.0, "logits_scaling": 3.0, "residual_multiplier": 0.6}),
    "glm4": (114, {**SMALL, "head_dim": 12, "num_hidden_layers": 3, "num_key_value_heads": 2, "partial_rotary_factor": 0.25,
                   "rope_parameters": {"partial_rotary_factor": 0.25, "rope_theta": 10000.0, "rope_type": "default"}}),
    "qwen2_moe": (115, {**SMALL, "num_hidden_layers": 3, "layer_types": ["full_attention"] * 3, "mlp_only_layers": [1],
                        "num_experts": 5, "num_experts_per_tok": 2, "norm_topk_prob": True, "moe_intermediate_size": 20,
                        "shared_expert_intermediate_size": 36}),
    "nemotron": (116, {**SMALL, "head_dim": 8, "num_hidden_layers": 3, "partial_rotary_factor": 0.25,
                       "rope_parameters": {"partial_rotary_factor": 0.25, "rope_theta": 10000.0, "rope_type": "default"}}),
    "apertus": (117, {**SMALL, "num_hidden_layers": 3,
                      "rope_parameters": {"factor": 4.0, "high_freq_factor": 2.0, "low_freq_factor": 1.0,
                                          "original_max_position_embeddings": 64, "rope_theta": 50000.0, "rope_type": "llama3"}}),
    "exaone4": (118, {**SMALL, "num_hidden_layers": 3, "sliding_window": 5, "sliding_window_pattern": 3,
                      "layer_types": ["sliding_attention", "sliding_attention", "full_attention"]}),
    "seed_oss": (119, {**SMALL, "head_dim": 8, "num_hidden_layers": 3, "attention_bias": False, "attention_out_bias": True,
                       "mlp_bias": True}),
    "vaultgemma": (120, {**SMALL, "head_dim": 8, "num_hidden_layers": 3, "sliding_window": 6, "query_pre_attn_scalar": 64,
                         "attn_logit_softcapping": 20.0, "final_logit_softcapping": 15.0,
                         "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}),
    "bitnet": (121, {**SMALL, "num_hidden_layers": 3}),
    "mamba2": (122, {"hidden_size": 48, "vocab_size": 320, "num_hidden_layers": 2, "num_heads": 6, "head_dim": 16,
                     "expand": 2, "n_groups": 2, "state_size": 8, "conv_kernel": 3, "chunk_size": 4, "use_bias": True}),
    "siglip_vision": (123, {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 6, "num_hidden_layers": 2,
                            "image_size": 24, "patch_size": 6}),
    "dinov3": (124, {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 6, "num_hidden_layers": 2,
                     "image_size": 24, "patch_size": 6, "num_register_tokens": 2, "use_gated_mlp": True,
                     "layerscale_value": 0.5, "rope_theta": 50.0, "query_bias": False, "out_features": ["stage2"],
                     "out_indices": [2], "stage_names": ["stem", "stage1", "stage2"]}),
}


def perturb_and_round(model, gen):
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if "e_score_correction_bias" in n]:
            if not p.is_floating_point():
                continue
            scale = 0.05 if p.dim() >= 2 else 0.1
            p.add_(torch.randn(p.shape, generator=gen) * scale)
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


def make(name, src_dir, out_dir):
    import transformers
    seed, overrides = HELDOUT[name]
    with open(os.path.join(src_dir, name, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(overrides)
    cfg.pop("dtype", None)
    cfg.pop("transformers_version", None)
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    tmp = os.path.join(out_dir, name, "config.json")
    with open(tmp, "w") as f:
        json.dump(cfg, f, indent=2)
    config = transformers.AutoConfig.from_pretrained(os.path.join(out_dir, name))
    cls = getattr(transformers, cfg["architectures"][0])
    torch.manual_seed(seed)
    model = cls._from_config(config, attn_implementation="eager", torch_dtype=torch.float32)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    perturb_and_round(model, gen)
    vision = getattr(cls, "main_input_name", "input_ids") == "pixel_values"
    ref = {}
    with torch.no_grad():
        if vision:
            s = cfg["image_size"]
            px = torch.randn((2, 3, s, s), generator=gen)
            out = model(pixel_values=px, output_hidden_states=True, output_attentions=True)
            ref["pixel_values"] = px
            ref["last_hidden_state"] = out.last_hidden_state
            ref["pooler_output"] = out.pooler_output
        else:
            ids = torch.randint(0, cfg["vocab_size"], (2, 20), generator=gen)
            kw = {"output_hidden_states": True}
            if cfg["model_type"] != "mamba2":
                kw["output_attentions"] = True
            out = model(input_ids=ids, **kw)
            ref["input_ids"] = ids
            ref["logits"] = out.logits
        for i, h in enumerate(out.hidden_states):
            ref["hidden_states.%d" % i] = h
        # transformers 5.17 returns the softmax-attention layers' patterns only (Qwen3-Next, Qwen3.5): name them
        # by their layer index
        atts = list(getattr(out, "attentions", None) or [])
        layers = range(len(atts))
        if len(atts) != len(out.hidden_states) - 1 and "layer_types" in cfg:
            layers = [l for l, t in enumerate(cfg["layer_types"]) if t != "linear_attention"]
        assert len(layers) == len(atts), (name, len(atts))
        for l, a in zip(layers, atts):
            if a is not None:
                ref["attentions.%d" % l] = a
    from safetensors.torch import save_file
    ref = {k: v.detach().contiguous() if v.dtype == torch.int64 else v.detach().float().contiguous() for k, v in ref.items()}
    for k, v in ref.items():
        assert torch.isfinite(v.float()).all(), (name, k)
    model.to(torch.bfloat16).save_pretrained(os.path.join(out_dir, name))
    save_file(ref, os.path.join(out_dir, name, "ref.safetensors"))
    print(name, "ok", sum(p.numel() for p in model.parameters()), "params;",
          " ".join("%s%s" % (k, list(v.shape)) for k, v in ref.items() if not k.startswith("hidden_states.")))


def main():
    src, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(4)
    failed = []
    for name in sys.argv[3:] or HELDOUT:
        try:
            make(name, src, out)
        except Exception:
            failed.append(name)
            print(name, "FAILED")
            traceback.print_exc()
    print("failed:", failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
