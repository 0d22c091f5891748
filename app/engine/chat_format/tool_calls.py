"""Tool calls as each model family writes them, and the grammar that forces one.

A model asks for a tool in its family's own syntax, the one its chat template
writes back into past assistant turns:

* Hermes / Qwen 2.5-3 / generic: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
  (GLM writes ``<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``,
  Qwen3-Coder ``<tool_call><function=name><parameter=k>v</parameter></function></tool_call>``);
* Llama 3.1-3.3: ``{"name": ..., "parameters": {...}}``, after ``<|python_tag|>`` or alone;
* Llama 4: pythonic ``[get_weather(city="Paris")]`` (after ``<|python_start|>``);
* Mistral: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}]`` or ``[TOOL_CALLS]name[ARGS]{...}``;
* gpt-oss: ``<|channel|>commentary to=functions.name <|constrain|>json<|message|>{...}<|call|>``;
* Granite: ``<|tool_call|>[{"name": ..., "arguments": {...}}]``;
* DeepSeek: ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>...name<｜tool▁sep｜>{...}<｜tool▁call▁end｜>...``;
* Command R7B: ``<|START_ACTION|>[{"tool_name": ..., "parameters": {...}}]<|END_ACTION|>``;
* Kimi K2: ``<|tool_call_begin|>functions.name:0<|tool_call_argument_begin|>{...}<|tool_call_end|>``.

The family is recognised from the template (the markers it renders).  A template
that knows nothing of tools gets the Hermes format, described to the model in a
system message Paddock adds.  When a call is required (the user picked a tool,
or an API client sent ``tool_choice``), generation is constrained by a llama.cpp
grammar built from the tools' JSON schemas, so even a small model writes a
valid call.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ParsedCall = dict[str, Any]  # {"id", "name", "arguments": dict}


def _call(name: str, arguments: Any) -> ParsedCall:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            arguments = {"_raw": arguments}
    if not isinstance(arguments, dict):
        arguments = {"_raw": arguments}
    return {"id": new_call_id(), "name": str(name).strip(), "arguments": arguments}


def new_call_id() -> str:
    """Nine letters and digits: the shape every template accepts (Mistral's insists on it)."""
    return uuid.uuid4().hex[:9]


def _json_values(text: str) -> list[Any]:
    """Every JSON value in ``text``, in order (separated by anything)."""
    decoder = json.JSONDecoder()
    out, i = [], 0
    while i < len(text):
        at = min((p for p in (text.find("{", i), text.find("[", i)) if p >= 0), default=-1)
        if at < 0:
            break
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            i = at + 1
            continue
        out.append(value)
        i = end
    return out


def _from_objects(values: Sequence[Any], name_keys: Sequence[str] = ("name", "tool_name"),
                  arg_keys: Sequence[str] = ("arguments", "parameters")) -> list[ParsedCall]:
    calls = []
    for value in values:
        for obj in value if isinstance(value, list) else [value]:
            if not isinstance(obj, dict):
                continue
            inner = obj.get("function")
            fn: dict[str, Any] = inner if isinstance(inner, dict) else obj
            name = next((fn[k] for k in name_keys if isinstance(fn.get(k), str)), None)
            if name:
                args: Any = next((fn[k] for k in arg_keys if k in fn), {})
                calls.append(_call(name, args))
    return calls


def parse_hermes(text: str) -> list[ParsedCall]:
    calls: list[ParsedCall] = []
    for body in re.findall(r"<tool_call>(.*?)(?:</tool_call>|$)", text, re.S):
        if "<function=" in body:  # Qwen3-Coder
            calls += parse_function_tags(body)
        elif "<arg_key>" in body or not body.strip().startswith("{"):  # GLM
            name = body.split("<arg_key>", 1)[0].strip()
            keys = re.findall(r"<arg_key>(.*?)</arg_key>", body, re.S)
            values = re.findall(r"<arg_value>(.*?)</arg_value>", body, re.S)
            if name:
                calls.append(_call(name, {k.strip(): _scalar(v.strip()) for k, v in zip(keys, values, strict=False)}))
        else:
            calls += _from_objects(_json_values(body))
    return calls


def parse_llama3(text: str) -> list[ParsedCall]:
    return _from_objects(_json_values(text.replace("<|python_tag|>", "")))


def parse_pythonic_tags(text: str) -> list[ParsedCall]:
    """LFM 2.5: ``<|tool_call_start|>[f(k='v')]<|tool_call_end|>``."""
    return [c for body in re.findall(r"<\|tool_call_start\|>(.*?)(?:<\|tool_call_end\|>|$)", text, re.S)
            for c in parse_pythonic(body)]


def parse_pythonic(text: str) -> list[ParsedCall]:
    body = text.replace("<|python_start|>", "").replace("<|python_end|>", "").strip()
    try:
        tree = ast.parse(body if body.startswith("[") else f"[{body}]", mode="eval")
    except SyntaxError:
        return []
    if not isinstance(tree.body, ast.List):
        return []
    calls = []
    for node in tree.body.elts:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            name = ast.unparse(node.func)
            try:
                args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
            except ValueError:
                continue
            calls.append(_call(name, args))
    return calls


def parse_mistral(text: str) -> list[ParsedCall]:
    calls: list[ParsedCall] = []
    for body in text.split("[TOOL_CALLS]")[1:]:
        if "[ARGS]" in body:  # Mistral Small 3.2 / Devstral / Ministral 3 (with [CALL_ID] in history)
            name, _, rest = body.partition("[ARGS]")
            name = name.split("[CALL_ID]", 1)[0]
            values = _json_values(rest)
            calls.append(_call(name.strip(), values[0] if values else {}))
        else:
            calls += _from_objects(_json_values(body))
    return calls


def parse_gpt_oss(text: str) -> list[ParsedCall]:
    calls = []
    for name, args in re.findall(r"to=functions\.([\w.\-]+).*?<\|message\|>(.*?)"
                                 r"(?=<\|call\|>|<\|end\|>|<\|start\|>|$)", text, re.S):
        calls.append(_call(name, args))
    return calls


def parse_granite(text: str) -> list[ParsedCall]:
    return _from_objects(_json_values(text.split("<|tool_call|>", 1)[-1]))


def parse_deepseek(text: str) -> list[ParsedCall]:
    calls = []
    for body in re.findall(r"<｜tool▁call▁begin｜>(.*?)(?:<｜tool▁call▁end｜>|$)", text, re.S):
        head, _, args = body.partition("<｜tool▁sep｜>")
        if head.strip() == "function":  # V3: function<sep>name\n```json\n{...}\n```
            name, _, args = args.partition("\n")
        else:
            name = head
        args = re.sub(r"^\s*```(?:json)?|```\s*$", "", args.strip()).strip()
        calls.append(_call(name.strip(), args))
    return calls


def parse_command(text: str) -> list[ParsedCall]:
    body = text.split("<|START_ACTION|>", 1)[-1].split("<|END_ACTION|>", 1)[0]
    return _from_objects(_json_values(body))


def parse_kimi(text: str) -> list[ParsedCall]:
    calls = []
    for ident, args in re.findall(r"<\|tool_call_begin\|>\s*([^<]+?)\s*<\|tool_call_argument_begin\|>(.*?)"
                                  r"(?:<\|tool_call_end\|>|$)", text, re.S):
        name = ident.split(":", 1)[0].removeprefix("functions.")
        calls.append(_call(name, args))
    return calls


_NS = "(?:｜DSML｜|minimax:|atem:)?"
_INVOKE = re.compile(f'<{_NS}invoke name="([^"]+)">(.*?)</{_NS}invoke>', re.S)
_PARAM = re.compile(f'<{_NS}parameter name="([^"]+)"[^>]*>(.*?)</{_NS}parameter>', re.S)


def parse_invoke(text: str) -> list[ParsedCall]:
    """MiniMax M2, DeepSeek V3.2+ (DSML), Muse: ``<invoke name="f"><parameter name="k">v</parameter></invoke>``."""
    return [_call(name, {k: _scalar(v.strip()) for k, v in _PARAM.findall(body)})
            for name, body in _INVOKE.findall(text)]


def parse_function_tags(text: str) -> list[ParsedCall]:
    """Seed-OSS / Qwen3-Coder ``<function=f><parameter=k>v</parameter></function>``, functionary
    ``<function=f>{json}</function>``, MiniCPM ``<function name="f"><param name="k">v</param></function>``."""
    calls = []
    for name, inner in re.findall(r'<function(?:=|\s+name=")([^>"\s]+)"?>(.*?)(?:</function>|$)', text, re.S):
        params = dict(re.findall(r"<parameter=([^>\s]+)>(.*?)</parameter>", inner, re.S))
        params.update(re.findall(r'<param name="([^"]+)">(.*?)</param>', inner, re.S))
        if params:
            calls.append(_call(name, {k: _scalar(v.strip()) for k, v in params.items()}))
        else:
            values = _json_values(inner)
            calls.append(_call(name, values[0] if values else {}))
    return calls


def parse_gemma4(text: str) -> list[ParsedCall]:
    """Gemma 4: ``<|tool_call>call:f{city:<|"|>Paris<|"|>}<tool_call|>``."""
    calls = []
    for name, body in re.findall(r"call:([\w.\-]+)\{(.*?)\}<tool_call\|>", text, re.S):
        args: dict[str, Any] = {}
        for key, quoted, bare in re.findall(r'(\w+):(?:<\|"\|>(.*?)<\|"\|>|([^,}]*))', body, re.S):
            args[key] = quoted if quoted or not bare else _scalar(bare.strip())
        calls.append(_call(name, args))
    return calls


def parse_name_map(text: str) -> list[ParsedCall]:
    """Apertus: ``[{"f": {"k": "v"}}]`` (each object maps a tool's name to its arguments)."""
    calls = []
    for value in _json_values(text):
        for obj in value if isinstance(value, list) else [value]:
            if isinstance(obj, dict):
                calls += [_call(k, v) for k, v in obj.items()]
    return calls


def parse_solar(text: str) -> list[ParsedCall]:
    return [_call(name, args) for name, args in re.findall(
        r"<\|tool_call:name\|>(.*?)<\|tool_call:args\|>(.*?)<\|tool_call:end\|>", text, re.S)]


def parse_hunyuan(text: str) -> list[ParsedCall]:
    return parse_hermes(text.replace(":opensource>", ">").replace("<tool_call>", "<tool_call>")
                        .replace("<tool_sep>", "").replace("<tool_calls>", ""))


def parse_kimi3(text: str) -> list[ParsedCall]:
    """Kimi K3: ``<|open|>call tool="f" index="1"<|sep|><|open|>argument key="k" type="string"<|sep|>v
    <|close|>argument<|sep|>...<|close|>call<|sep|>``."""
    calls = []
    for name, body in re.findall(r'<\|open\|>call tool="([^"]+)"[^<]*<\|sep\|>(.*?)(?:<\|close\|>call<\|sep\|>|$)',
                                 text, re.S):
        args: dict[str, Any] = {}
        for key, kind, value in re.findall(r'<\|open\|>argument key="([^"]+)"(?: type="(\w+)")?<\|sep\|>(.*?)'
                                           r"<\|close\|>argument<\|sep\|>", body, re.S):
            args[key] = value if kind == "string" else _scalar(value)
        calls.append(_call(name, args))
    return calls


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class ToolCallFormat:
    """How a family writes a call: where it starts in the output, and how to read it.

    Args:
        starts: markers that open the calls (text from there on is held back from the answer).
        json_start: the answer itself may be the call (a JSON object or a pythonic list, no marker).
        prefix / suffix: what surrounds the call JSON in a grammar-forced call.
    """

    name: str
    starts: tuple[str, ...]
    parse: Callable[[str], list[ParsedCall]]
    json_start: bool = False
    prefix: str = "<tool_call>\n"
    suffix: str = "\n</tool_call>"
    signature: str = ""
    arguments_key: str = "arguments"


HERMES = ToolCallFormat("hermes", ("<tool_call>",), parse_hermes, signature="<tool_call>")
FORMATS: tuple[ToolCallFormat, ...] = (
    ToolCallFormat("gpt-oss", ("to=functions.",), parse_gpt_oss, signature="<|call|>"),
    ToolCallFormat("gemma4", ("<|tool_call>",), parse_gemma4, signature="<|tool_call>"),
    ToolCallFormat("invoke", ("<minimax:tool_call>", "<｜DSML｜function_calls>", "<｜DSML｜tool_calls>",
                              "<atem:function_calls>"), parse_invoke, signature="invoke name="),
    ToolCallFormat("seed", ("<seed:tool_call>",), parse_function_tags, signature="<seed:tool_call>"),
    ToolCallFormat("hunyuan", ("<tool_calls:opensource>", "<tool_call:opensource>"), parse_hunyuan,
                   signature="<tool_sep{}>"),
    ToolCallFormat("solar", ("<|tool_calls|>", "<|tool_call:begin|>"), parse_solar, signature="<|tool_call:name|>"),
    ToolCallFormat("nemotron", ("<TOOLCALL>",), lambda t: _from_objects(_json_values(t)), prefix="<TOOLCALL>[",
                   suffix="]</TOOLCALL>", signature="<TOOLCALL>"),
    ToolCallFormat("apriel", ("<tool_calls>",), lambda t: _from_objects(_json_values(t)), prefix="<tool_calls>[",
                   suffix="]</tool_calls>", signature="<tool_calls>"),
    ToolCallFormat("lfm", ("<|tool_call_start|>",), parse_pythonic_tags, signature="<|tool_call_start|>"),
    ToolCallFormat("gigachat", ("<|function_call|>",), lambda t: _from_objects(_json_values(t)),
                   prefix="<|function_call|>", suffix="", signature="<|function_call|>"),
    ToolCallFormat("apertus", ("<|tools_prefix|>",), parse_name_map, signature="<|tools_prefix|>"),
    ToolCallFormat("kimi3", ("<|open|>tools<|sep|>",), parse_kimi3, signature="open_tag('call'"),
    ToolCallFormat("gigachat3", ("function call<|role_sep|>",), lambda t: _from_objects(_json_values(t)),
                   prefix="function call<|role_sep|>\n", suffix="", signature="'role': 'function call'"),
    ToolCallFormat("firefunction", ("functools[",), lambda t: _from_objects(_json_values(t.replace("functools", ""))),
                   prefix="functools[", suffix="]", signature="functools["),
    ToolCallFormat("mistral", ("[TOOL_CALLS]",), parse_mistral, prefix="[TOOL_CALLS][", suffix="]",
                   signature="[TOOL_CALLS]"),
    ToolCallFormat("granite", ("<|tool_call|>",), parse_granite, prefix="<|tool_call|>[", suffix="]",
                   signature="<|tool_call|>"),
    ToolCallFormat("deepseek", ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>"), parse_deepseek,
                   signature="tool▁calls▁begin"),
    ToolCallFormat("command", ("<|START_ACTION|>",), parse_command, prefix="<|START_ACTION|>[",
                   suffix="]<|END_ACTION|>", signature="<|START_ACTION|>", arguments_key="parameters"),
    ToolCallFormat("kimi", ("<|tool_calls_section_begin|>", "<|tool_call_begin|>"), parse_kimi,
                   signature="<|tool_call_begin|>"),
    ToolCallFormat("llama4", ("<|python_start|>",), parse_pythonic, json_start=True, prefix="[", suffix="]",
                   signature="<|python_start|>"),
    HERMES,
    ToolCallFormat("functionary", ("<function=",), parse_function_tags, signature="<function="),
    ToolCallFormat("minicpm", ('<function name="',), parse_function_tags, signature='<function name='),
    ToolCallFormat("llama3", ("<|python_tag|>",), parse_llama3, json_start=True, prefix="", suffix="",
                   signature="<|python_tag|>", arguments_key="parameters"),
)


def tool_call_format(template: str | None) -> tuple[ToolCallFormat, bool]:
    """The family's call format, and whether the template renders ``tools`` itself
    (False: Paddock describes the tools in a system message of its own, Hermes style)."""
    source = template or ""
    renders_tools = "tools" in source
    for fmt in FORMATS:
        if fmt.signature and fmt.signature in source:
            return fmt, renders_tools
    if "ipython" in source:  # Llama 3.x templates without the python tag's name spelled out
        return FORMATS[-1], renders_tools
    return HERMES, renders_tools


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """For a template that knows nothing of tools: Hermes' own instructions (as its template writes them)."""
    listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{listing}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
        "<args-json-object>}\n</tool_call>"
    )


def call_grammar(fmt: ToolCallFormat, tools: Sequence[dict[str, Any]], only: str | None = None) -> str:
    """A GBNF grammar that admits exactly one call of one of ``tools`` in the family's syntax.

    Args:
        only: the name of the one tool allowed (``tool_choice`` naming a function).
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    choices = []
    for tool in tools:
        fn = tool.get("function", tool)
        if only is not None and fn.get("name") != only:
            continue
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        choices.append({"type": "object", "properties": {"name": {"const": fn["name"]}, fmt.arguments_key: params},
                        "required": ["name", fmt.arguments_key]})
    if not choices:
        raise ValueError(f"no tool named {only!r}")
    schema = choices[0] if len(choices) == 1 else {"anyOf": choices}
    fmt = forced_call_format(fmt)
    body = json_schema_to_gbnf(json.dumps(schema))
    body = body.replace("root ::=", "call ::=", 1)
    return f"root ::= {_gbnf_literal(fmt.prefix)} call {_gbnf_literal(fmt.suffix)}\n{body}"


def forced_call_format(fmt: ToolCallFormat) -> ToolCallFormat:
    """The syntax a grammar-forced call (:func:`call_grammar`) is written in, to read it back: the
    family's own where it has a wrapper for one call; Hermes' where the family keeps Hermes' default
    wrapper (its own markers are not what the grammar writes); llama3's JSON object for llama4
    (pythonic: a list of calls is not JSON)."""
    if fmt.name == "llama4":
        return FORMATS[-1]
    if (fmt.prefix, fmt.suffix) == (HERMES.prefix, HERMES.suffix):
        return HERMES
    return fmt


def _gbnf_literal(text: str) -> str:
    if not text:
        return '""'
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
