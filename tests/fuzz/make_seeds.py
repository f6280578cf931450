#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz harness from the fixtures (run by hand;
the output under corpus/NAME/seed-* is committed). Crash reproducers live
beside the seeds as corpus/NAME/crash-* and are replayed by ctest."""
import hashlib
import json
import os
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(ROOT, "tests", "fixtures", "tiny-llama")
PROTO = os.path.join(ROOT, "proto")


def read(*p):
    with open(os.path.join(*p), "rb") as f:
        return f.read()


def part(b):
    return struct.pack("<I", len(b)) + b


def encode(message, text):
    return subprocess.run(
        ["protoc", "-I", PROTO, "--encode=" + message, "tessera/v1/inference.proto", "tessera/v1/adapters.proto"],
        input=text.encode(), capture_output=True, check=True).stdout


def write(name, seeds):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for i, s in enumerate(seeds):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(s)


adapters = ["road", "lora2", "diablo"]
write("safetensors", [read(FIX, "adapters", a, "adapter_model.safetensors") for a in adapters] +
      [read(FIX, "owner_secret", "passport.safetensors")])
write("adapter", [part(read(FIX, "adapters", a, "adapter_config.json")) +
                  read(FIX, "adapters", a, "adapter_model.safetensors") for a in adapters])
write("model_config", [read(FIX, "model", "config.json"), read(FIX, "model-ropeid", "config.json")])
write("tokenizer", [b"\x01Once upon a time, a small robot", b"\x02h\xc3\xa9llo  w\xc3\xb6rld\n\t 123 <s></s>"])
# The fixture tokenizer.json, and a trimmed copy (the first 300 vocabulary
# entries and the merges among them) small enough to mutate quickly.
tok = json.loads(read(FIX, "model", "tokenizer.json"))
small = dict(tok)
small["model"] = dict(tok["model"])
small["model"]["vocab"] = {k: v for k, v in tok["model"]["vocab"].items() if v < 300}
merges = []
for m in tok["model"]["merges"]:
    a, b = m.split(" ", 1) if isinstance(m, str) else m
    if a in small["model"]["vocab"] and b in small["model"]["vocab"] and (a + b) in small["model"]["vocab"]:
        merges.append(m)
small["model"]["merges"] = merges
small["added_tokens"] = [t for t in tok.get("added_tokens", []) if t["id"] < 300]
# A SentencePiece-style tokenizer (Llama-2's pipeline) cut to its first 300
# ids: specials, the 256 byte-fallback tokens and a few pieces.
sp = json.loads(read(ROOT, "tests", "fixtures", "tokenizers", "llama2", "tokenizer.json"))
sp["model"]["vocab"] = {k: v for k, v in sp["model"]["vocab"].items() if v < 300}
sp["model"]["merges"] = [m for m in sp["model"]["merges"]
                         if all(p in sp["model"]["vocab"] for p in (m.split(" ") if isinstance(m, str) else m))][:200]
write("tokenizer_json", [part(read(FIX, "model", "tokenizer.json")) + read(FIX, "model", "tokenizer_config.json"),
                         part(json.dumps(small, separators=(",", ":")).encode()) +
                         read(FIX, "model", "tokenizer_config.json"),
                         part(json.dumps(sp, separators=(",", ":"), ensure_ascii=False).encode()) +
                         read(ROOT, "tests", "fixtures", "tokenizers", "llama2", "tokenizer_config.json")])
write("request", [
    encode("tessera.v1.GenerateRequest", 'text: "Once upon a time" sampling { max_new_tokens: 4 }'),
    encode("tessera.v1.GenerateRequest",
           'token_ids { ids: [1, 2, 3] } stopping { stop: ["x", "yz"] stop_token_ids: [5] } adapter_id: "a/b"'),
])
up = []
for a in ["road"]:
    cfg = read(FIX, "adapters", a, "adapter_config.json")
    model = read(FIX, "adapters", a, "adapter_model.safetensors")
    msgs = [encode("tessera.v1.UploadAdapterRequest", 'metadata { name: "seed" }')]
    msgs.append(encode("tessera.v1.UploadAdapterRequest",
                       'chunk { file: "adapter_config.json" data: "%s" }' %
                       "".join("\\%03o" % c for c in cfg)))
    msgs.append(encode("tessera.v1.UploadAdapterRequest",
                       'chunk { file: "adapter_model.safetensors" data: "%s" }' %
                       "".join("\\%03o" % c for c in model)))
    msgs.append(encode("tessera.v1.UploadAdapterRequest",
                       'sha256: "%s"' % hashlib.sha256(cfg + model).hexdigest()))
    up.append(b"".join(struct.pack("<H", len(m)) + m for m in msgs))
write("upload_stream", up)
# Chat templates of real checkpoints with a small conversation.
_chat = json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "h\u00e9llo"}]).encode()
write("chat_template", [part(json.loads(read(ROOT, "tests", "fixtures", "chat_templates", n + ".json"))["template"].encode())
                        + _chat for n in ("llama3", "llama3_1", "qwen2_5", "qwen3", "mistral_nemo", "deepseek_v3")])


def safetensors_subset(raw, keep):
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out_header, blobs, offset = {}, [], 0
    for name in sorted(k for k in header if k != "__metadata__" and keep(k)):
        b, e = header[name]["data_offsets"]
        out_header[name] = dict(header[name], data_offsets=[offset, offset + e - b])
        blobs.append(data[b:e])
        offset += e - b
    h = json.dumps(out_header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


raw_factors = read(FIX, "owner_secret", "original_lora.safetensors")
write("watermark", [part(read(FIX, "owner_secret", "passport.safetensors")) + raw_factors,
                    # one module only: small enough to mutate quickly, still valid
                    part(read(FIX, "owner_secret", "passport.safetensors")) +
                    safetensors_subset(raw_factors, lambda k: "layers.0.self_attn.q_proj." in k)])
key_hash = hashlib.sha256(b"key-a").hexdigest()
write("tenants", [part(b"Bearer key-a") + (
    '{"tenants": [{"id": "acme", "role": "user", "api_key_sha256": "%s", "max_adapters": 3}]}' % key_hash).encode()])

# Reproducers of the crashes found before the hardening issue: each once took
# the server down (std::stoll out_of_range, std::regex stack overflow, JSON
# recursion, a zero-byte tensor of 2^62 elements).
def st(header):
    h = header.encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h


def crash(name, label, data):
    with open(os.path.join(HERE, "corpus", name, "crash-" + label), "wb") as f:
        f.write(data)


lora_cfg = read(FIX, "adapters", "lora", "adapter_config.json")
crash("adapter", "layer-out-of-range", part(lora_cfg) + st(
    '{"base_model.model.model.layers.99999999999999999999.self_attn.q_proj.lora_A.weight":'
    '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}') + b"\0" * 4)
crash("adapter", "long-tensor-name", part(lora_cfg) + st(
    '{"base_model.model.model.layers.0.' + "x" * 60000 + '_proj.lora_A.weight":'
    '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}') + b"\0" * 4)
crash("adapter", "deep-config", part(b'{"peft_type": "LORA", "modules_to_save": ' + b"[" * 100000 + b"]" * 100000 +
                                     b"}") + read(FIX, "adapters", "lora", "adapter_model.safetensors"))
crash("safetensors", "huge-shape-zero-bytes",
      st('{"t":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}'))
crash("watermark", "layer-out-of-range", part(read(FIX, "owner_secret", "passport.safetensors")) + st(
    '{"model.layers.99999999999999999999.self_attn.q_proj.lora_A.weight":'
    '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}') + b"\0" * 4)
crash("tenants", "deep", part(b"Bearer x") + b"[" * 100000)
