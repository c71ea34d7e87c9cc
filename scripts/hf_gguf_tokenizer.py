"""A GGUF's vocabulary as a Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json,
chat_template.jinja), by transformers' own GGUF tokenizer conversion (what
AutoTokenizer.from_pretrained(dir, gguf_file=...) runs) fed from the `gguf` package: transformers'
own GGUF reader imports torch, which CI does not have. Used by make-hf-tokenizers.py and
make-hf-smollm2.py.

The conversion writes a plain ByteLevel pre-tokenizer for every byte-level vocabulary, whatever
tokenizer.ggml.pre says; where the model's real tokenizer.json differs (SmolLM2's splits digits
first, as llama.cpp's "smollm" pre-tokenizer does) the real one is put back.
"""
import json
import os
import sys

from gguf import GGUFReader

PRE_TOKENIZER_FIXES = {
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
}


def metadata_value(reader, key):
    """A GGUF metadata value as transformers' GGUF reader returns it: str, number, bool, or list."""
    f = reader.fields[key]
    kind = f.types[0].name
    if kind == "STRING":
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if kind == "ARRAY":
        if f.types[1].name == "STRING":
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    v = f.parts[f.data[0]].tolist()[0]
    return bool(v) if kind == "BOOL" else v


def write_hf_tokenizer(reader, out):
    """Writes the tokenizer folder of GGUFReader `reader` into directory `out`."""
    import transformers
    from transformers import TokenizersBackend
    from transformers.integrations.gguf import gguf_tokenizer_mapping as tm

    if int(transformers.__version__.split(".")[0]) < 5:
        sys.exit("hf_gguf_tokenizer: needs transformers >= 5 (found %s)" % transformers.__version__)
    metadata = {k: metadata_value(reader, k) for k in reader.fields if k.startswith("tokenizer.")}
    architecture = metadata_value(reader, "general.architecture")
    # The grouping below is transformers' get_gguf_tokenizer's.
    grouped = {group: {name: metadata["tokenizer." + key] for key, name in renames.items() if "tokenizer." + key in metadata}
               for group, renames in tm.GGUF_TOKENIZER_MAPPING.items()}
    tokenizer, tokenizer_config = grouped["tokenizer"], grouped["tokenizer_config"]
    if tokenizer.get("tokenizer_type") == "llama":
        tokenizer_config.setdefault("add_bos_token", True)
    for name, key in tm._SPECIAL_TOKENS.items():
        token_id = metadata.get("tokenizer.ggml." + key)
        tokenizer_config[name] = tokenizer["tokens"][token_id] if token_id is not None else None
    fast, extra = tm.convert_gguf_tokenizer(architecture, tokenizer)
    TokenizersBackend(tokenizer_object=fast, **tokenizer_config, **extra).save_pretrained(out)
    fix = PRE_TOKENIZER_FIXES.get(metadata.get("tokenizer.ggml.pre", ""))
    if fix is not None:
        path = os.path.join(out, "tokenizer.json")
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        tj["pre_tokenizer"] = fix
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)


def write_hf_tokenizer_of(gguf_path, out):
    write_hf_tokenizer(GGUFReader(gguf_path), out)
