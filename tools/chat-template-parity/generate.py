#!/usr/bin/env python3
"""Expected chat-template renderings, from Python's jinja2 set up the way
transformers' apply_chat_template sets it up (an immutable sandbox with
trim_blocks, lstrip_blocks and loop controls; tojson as json.dumps with
ensure_ascii=False; raise_exception raising a TemplateError). Run by hand
(needs jinja2; no network):

  tools/chat-template-parity/generate.py NAME path/to/tokenizer_config.json \
      > tests/fixtures/chat_templates/NAME.json
"""
import json
import sys

import jinja2
from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "e.g. Zürich"}},
                   "required": ["city"]}}}]


def conversations():
    u = lambda c: {"role": "user", "content": c}
    a = lambda c: {"role": "assistant", "content": c}
    s = lambda c: {"role": "system", "content": c}
    plain = [
        [u("Hello!")],
        [u("What is 2 + 2?"), a("4."), u("And 3 + 3?")],
        [s("You are terse."), u("Name a colour.")],
        [s("Be kind."), u("Hi"), a("Hello! How can I help?"), u("Tell me a joke.")],
        [u("  padded  with spaces \n")],
        [u("Line one\nLine two\n\n\tindented")],
        [u("Ünïcödé: 日本語, עברית, emoji 👩‍👩‍👧 and 🇯🇵")],
        [u("Quotes ' \" and braces {{ not a tag }} {% nor this %}")],
        [u("")],
        [u("first"), a("second"), u("third"), a("fourth"), u("fifth")],
        [a("An assistant speaks first.")],
        [u("one"), u("two in a row")],
        [s("Only a system message.")],
        [u("<think>not a real thought</think> hi"), a("<think>\nreasoning\n</think>\n\nThe answer."), u("ok")],
    ]
    cases = [{"messages": m} for m in plain]
    cases.append({"messages": [u("Weather in Paris?")], "tools": TOOLS})
    cases.append({"messages": [
        u("Weather in Paris?"),
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "{\"temp_c\": 21}", "tool_call_id": "call12345"},
    ], "tools": TOOLS})
    return cases


def main():
    name, path = sys.argv[1:3]
    config = json.load(open(path, encoding="utf-8"))
    source = config["chat_template"]
    if isinstance(source, list):
        source = next(t["template"] for t in source if t["name"] == "default")
    token = lambda t: (t.get("content") if isinstance(t, dict) else t) or ""
    bos, eos = token(config.get("bos_token")), token(config.get("eos_token"))

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(source)
    cases = []
    for conv in conversations():
        for add_generation_prompt in (True, False):
            case = dict(conv, add_generation_prompt=add_generation_prompt)
            try:
                case["expected"] = template.render(bos_token=bos, eos_token=eos,
                                                   add_generation_prompt=add_generation_prompt, **conv)
            except TemplateError as e:
                case["error"] = str(e)
            cases.append(case)
    json.dump({"model": name, "generator": f"jinja2 {jinja2.__version__} (transformers' settings)",
               "template": source, "bos_token": bos, "eos_token": eos, "cases": cases},
              sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
