"""LLM libraries (TRL and PEFT): a library that is not installed, a chat template that is missing or does not mark
the assistant's tokens, LoRA target modules the model does not have."""

from __future__ import annotations

import re

from ftdoctor.sdk import finding, read_source

# The packages of the `llm` extra: a script that imports one of them cannot run without it.
_LLM_LIBRARIES = ("trl", "peft")


def missing_llm_library(exc, capture):
    import sys

    if not isinstance(exc, ModuleNotFoundError):
        return None
    # `name` is the module the import system could not find, whatever the message says.
    root = (exc.name or "").partition(".")[0]
    if root not in _LLM_LIBRARIES or (exc.name or "") != root:
        return None
    others = [m for m in _LLM_LIBRARIES if m != root]
    return finding(
        "FTD014",
        f"The script imports `{root}`, which this Python cannot import: it is not installed "
        f"in this environment ({type(exc).__name__}: {exc}).",
        f"Install the LLM fine-tuning libraries into this Python: `{sys.executable} -m pip install "
        f"{' '.join(_supported_versions())}` (the versions ftdoctor supports), then run again.",
        evidence={"module": root, "also_needed": others},
    )


def _supported_versions() -> list[str]:
    """The requirement of each LLM library as ftdoctor's own `llm` extra states it ("trl>=1.0"), quoted for a
    shell; the bare names when the package metadata cannot be read (a source checkout on the path)."""
    import re
    from importlib import metadata

    specs = {}
    try:
        for req in metadata.requires("pytest-ftdoctor") or ():
            name, _, marker = req.partition(";")
            if "extra" in marker and "llm" in marker:
                spec = name.strip().replace(" ", "")
                specs[re.split(r"[<>=!~\[]", spec, maxsplit=1)[0].lower()] = spec
    except Exception:
        specs = {}
    return [f"'{specs[m]}'" if m in specs else m for m in _LLM_LIBRARIES]


def _attr(obj, name: str):
    """``obj.name``, or None: the objects of a failing script may raise anything when asked."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _frames(tb):
    """The frames of a traceback, outermost first."""
    out = []
    while tb is not None:
        out.append(tb.tb_frame)
        tb = tb.tb_next
    return out


def _is_tokenizer(obj) -> bool:
    import sys

    tu = sys.modules.get("transformers.tokenization_utils_base")
    pu = sys.modules.get("transformers.processing_utils")
    kinds = tuple(k for k in (getattr(tu, "PreTrainedTokenizerBase", None), getattr(pu, "ProcessorMixin", None)) if k)
    return bool(kinds) and isinstance(obj, kinds)


def _is_conversation(value) -> bool:
    """A list of chat messages: mappings with a role and a content."""
    from collections.abc import Mapping

    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(m, Mapping) and "role" in m for m in value[:8])
    )


def _conversation_columns(value) -> list[str] | None:
    """The columns of a row or dataset that hold conversations (None: it is neither, or holds none)."""
    from collections.abc import Mapping

    from ftdoctor.facts import datasets as data

    try:
        if data.is_hf_dataset(value) and not data.is_streaming(value):
            if not data.safe_len(value):
                return None
            value = value[0]
        if isinstance(value, Mapping) or type(value).__name__ == "LazyRow":
            cols = [str(k) for k in value.keys() if _is_conversation(value[k])]
            return cols or None
    except Exception:  # a script's dataset that cannot be read here: no evidence either way
        return None
    return None


def _chat_evidence(tb):
    """What the frames of a failure hold about chat templates: whether a library was reading one (a function of
    the chat template or its generation markers was running), the tokenizers (the one whose template was read
    first), the conversational columns, whether an assistant-only mask was asked for, and whether TRL was the
    caller."""
    reading, tokenizers, columns, conversation = False, [], [], False
    assistant_only, trl = False, False
    for frame in reversed(_frames(tb)):  # innermost first
        code = frame.f_code.co_name
        if "chat_template" in code or "generation_marker" in code:
            reading = True
        if str(frame.f_globals.get("__name__", "")).partition(".")[0] == "trl":
            trl = True
        for name, value in list(frame.f_locals.items()):
            if _is_tokenizer(value):
                if not any(value is t for t in tokenizers):
                    tokenizers.append(value)
            elif _is_conversation(value):
                conversation = True
            elif name == "return_assistant_tokens_mask" and value is True:
                assistant_only = True
            elif _attr(value, "assistant_only_loss") is True:
                assistant_only = True
            else:
                cols = _conversation_columns(value)
                if cols:
                    columns.extend(c for c in cols if c not in columns)
    return reading, tokenizers, columns, conversation or bool(columns), assistant_only, trl


def _template_text(tokenizer) -> str | None:
    template = _attr(tokenizer, "chat_template")
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return template if isinstance(template, str) and template.strip() else None


_GENERATION_MARK = re.compile(r"\{%-?\s*generation\s*-?%\}")


def chat_template(exc, capture):
    """A conversation rendered with a tokenizer that has no chat template, or an assistant-only loss asked of a
    template that does not mark the assistant's tokens (FTD011, FTD015)."""
    reading, tokenizers, columns, conversational, assistant_only, trl = _chat_evidence(capture.exc_tb)
    if not reading or not tokenizers or not conversational:
        return None
    missing = [t for t in tokenizers if _template_text(t) is None]
    unmarked = [
        t for t in tokenizers if _template_text(t) is not None and not _GENERATION_MARK.search(_template_text(t))
    ]
    where = f" (column{'s' if len(columns) > 1 else ''} {', '.join(f'`{c}`' for c in columns)})" if columns else ""
    if missing:
        tok = missing[0]
        name = _script_name(capture, tok) or "tokenizer"
        source = str(_attr(tok, "name_or_path") or "")
        loaded = f" loaded from `{source}`" if source else ""
        detail = (
            f"The data is conversational{where} and `{name}`{loaded} has no chat template "
            f"(`{name}.chat_template` is None), so the conversations cannot be rendered into tokens: base "
            f"(not instruct) checkpoints often ship without one. {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"
        )
        copy_from = (
            '`model, tokenizer, _ = clone_chat_template(model, tokenizer, "<instruct checkpoint>")` (from '
            "`trl`: it also adds the template's special tokens and resizes the embeddings)"
            if trl
            else f'`{name}.chat_template = AutoTokenizer.from_pretrained("<instruct checkpoint>").chat_template`'
        )
        fix = (
            f"Load the tokenizer of the instruct/chat checkpoint, which carries the template "
            f'(`{name} = AutoTokenizer.from_pretrained("<instruct checkpoint>")`); or give this one a template: '
            f"{copy_from}, or set `{name}.chat_template` to a Jinja template; or render the conversations into a "
            '`text` column yourself (`dataset.map(lambda ex: {"text": ...})`) and train on that.'
            + (
                " With `assistant_only_loss=True` the template needs `{% generation %}` markers around the "
                "assistant's turns."
                if assistant_only
                else ""
            )
        )
        site = _attribute_site(capture, name, "chat_template") or capture.site_of(tok)
        return finding(
            "FTD011",
            detail,
            fix,
            location=str(site) if site else None,
            evidence={
                "tokenizer": source or None,
                "conversation_columns": columns,
                "assistant_only_loss": assistant_only,
            },
        )
    if assistant_only and unmarked:
        tok = unmarked[0]
        name = _script_name(capture, tok) or "tokenizer"
        detail = (
            f"An assistant-only loss was asked for on conversational data{where}, and the chat template of "
            f"`{name}` has no `{{% generation %}}` markers: nothing tells which tokens the assistant wrote, so "
            f"every assistant mask is all zeros. {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"
        )
        fix = (
            f"Wrap the assistant's turns of `{name}.chat_template` in `{{% generation %}}` ... "
            "`{% endgeneration %}`, the end-of-turn token inside (`{% if message['role'] == 'assistant' %}"
            "{% generation %}{{ message['content'] }}<end of turn>{% endgeneration %}{% endif %}`)"
            + (
                "; TRL patches the templates of the models it knows (Llama 3, Qwen 2.5/3, Gemma, Phi-3 ...), so the "
                "tokenizer of such a checkpoint also works"
                if trl
                else ""
            )
            + "; or train on the whole conversation (`assistant_only_loss=False`)."
        )
        site = _attribute_site(capture, name, "chat_template") or capture.site_of(tok)
        return finding(
            "FTD015",
            detail,
            fix,
            location=str(site) if site else None,
            evidence={"tokenizer": str(_attr(tok, "name_or_path") or "") or None, "conversation_columns": columns},
        )
    return None


def _attribute_site(capture, name: str, attribute: str):
    """The last line of the script that sets ``name.attribute``."""
    import ast

    from ftdoctor.sdk import Site

    try:
        tree = ast.parse(read_source(capture.script))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    lines = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Attribute) and t.attr == attribute and isinstance(t.value, ast.Name) and t.value.id == name
    ]
    return Site(capture.script, max(lines)) if lines else None


def _script_name(capture, obj) -> str | None:
    """The script's name for ``obj``: at the failing line of the script, or in its module namespace."""
    from ftdoctor.core.frames import user_frame_in_traceback

    frame = user_frame_in_traceback(capture.exc_tb, capture.user_dir)
    spaces = ([frame.f_locals, frame.f_globals] if frame is not None else []) + [capture.namespace]
    for space in spaces:
        for name, value in list(space.items()):
            if value is obj and not name.startswith("_"):
                return name
    return None


def lora_targets_not_found(exc, capture):
    """LoraConfig(target_modules=...) naming no module of the model: the model's real Linear layer names."""
    frames = _frames(capture.exc_tb)
    if not any(str(f.f_globals.get("__name__", "")).partition(".")[0] == "peft" for f in frames[-6:]):
        return None
    config, model = _peft_config_and_model(frames)
    if config is None or model is None:
        return None
    wanted = _attr(config, "target_modules")
    if not wanted:
        return None
    names, attention = _linear_layer_names(model)
    if not names:
        return None
    wanted_list = sorted(wanted) if isinstance(wanted, (set, frozenset)) else wanted
    wanted_set = {wanted} if isinstance(wanted, str) else set(wanted)
    if isinstance(wanted, str):
        try:
            matched = [n for n in _module_names(model) if re.fullmatch(wanted, n)]
        except re.error:
            matched = []
    else:
        matched = [n for n in _module_names(model) if n.rsplit(".", 1)[-1] in wanted_set or n in wanted_set]
    if matched:
        return None  # PEFT found some: its error is about something else
    suggest = attention or names
    model_name = type(model).__name__
    shown = repr(wanted) if isinstance(wanted, str) else "[" + ", ".join(f'"{w}"' for w in wanted_list) + "]"
    detail = (
        f"`target_modules={shown}` names no module of `{model_name}`: its Linear layers are called "
        f"{', '.join(f'`{n}`' for n in names)}, so the adapter has nowhere to go. {type(exc).__name__}: "
        f"{str(exc).splitlines()[0][:200]}"
    )
    listed = "[" + ", ".join(f'"{n}"' for n in suggest) + "]"
    fix = (
        "Use the model's own layer names: "
        + (f"the attention projections, `target_modules={listed}`" if attention else f"`target_modules={listed}`")
        + ', or every Linear layer but the output head, `target_modules="all-linear"`.'
    )
    return finding(
        "FTD013",
        detail,
        fix,
        location=_target_modules_site(capture, wanted_set),
        evidence={
            "target_modules": sorted(wanted_set),
            "linear_layers": names,
            "suggested": suggest,
            "model": model_name,
        },
    )


def _peft_config_and_model(frames):
    """The adapter config and the base model it was applied to, from the frames of PEFT's failing call."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None, None
    config = model = None
    for frame in reversed(frames):  # innermost first: the model PEFT was injecting into
        for value in list(frame.f_locals.values()):
            candidates = list(value.values()) if isinstance(value, dict) else [value]
            for v in candidates:
                module = type(v).__module__ or ""
                if config is None and module.startswith("peft") and _attr(v, "target_modules") is not None:
                    config = v
                if model is None and isinstance(v, torch.nn.Module) and not module.startswith("peft"):
                    model = v
        if config is not None and model is not None:
            break
    return config, model


def _module_names(model) -> list[str]:
    try:
        return [n for n, _ in model.named_modules() if n]
    except Exception:
        return []


def _linear_layer_names(model) -> tuple[list[str], list[str]]:
    """The distinct last parts of the names of the model's Linear layers (GPT-2's Conv1D included), the output head
    left out, and those of them that only occur inside attention blocks."""
    import sys

    import torch

    kinds = [torch.nn.Linear]
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    if conv1d is not None:
        kinds.append(conv1d)
    try:
        head = model.get_output_embeddings() if callable(getattr(model, "get_output_embeddings", None)) else None
    except Exception:
        head = None
    names, inside, outside = [], set(), set()
    for full, module in model.named_modules():
        if not isinstance(module, tuple(kinds)) or module is head or not full:
            continue
        parent, _, leaf = full.rpartition(".")
        if leaf.isdigit():
            continue  # a Linear in a ModuleList: its name is an index, not a layer name
        if leaf not in names:
            names.append(leaf)
        (inside if re.search(r"attn|attention", parent, re.I) else outside).add(leaf)
    attention = [n for n in names if n in inside and n not in outside]
    return names, attention


def _target_modules_site(capture, wanted: set) -> str | None:
    """The script's `target_modules=` argument that names these modules: the literal equal to them, or the only
    `target_modules=` of the script when it is not a literal (a variable)."""
    import ast

    from ftdoctor.sdk import Site

    try:
        tree = ast.parse(read_source(capture.script))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    same, other = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg != "target_modules":
                    continue
                try:
                    value = ast.literal_eval(kw.value)
                    value = {value} if isinstance(value, str) else set(value)
                except (ValueError, SyntaxError, TypeError):
                    other.append((kw.value.lineno, None))
                    continue
                (same if value == wanted else other).append((kw.value.lineno, value))
    if same:
        return str(Site(capture.script, min(same)[0]))
    if len(other) == 1 and other[0][1] is None:
        return str(Site(capture.script, other[0][0]))
    return None
