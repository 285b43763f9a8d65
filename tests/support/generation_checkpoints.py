"""Tiny generative checkpoints (GPT-2, BART, T5, Pegasus) with tokenizers of their real kinds.

No weights or tokenizers can be downloaded here. Each model is a small config with seeded random
weights and the special tokens, start tokens and generation defaults its real counterpart has;
each tokenizer is trained offline on a small English corpus with the `tokenizers` library, in
the real model's kind: byte-level BPE for GPT-2 and BART (GPT-2's <|endoftext|> last, as id 50256
is; BART's <s> <pad> </s> <unk> first and <mask> last), and sentencepiece-like Unigrams for T5
(<pad>=0, </s>=1, <unk>=2) and Pegasus (<pad>=0, </s>=1, <mask_1>, <mask_2>, <unk_2>..<unk_102>,
<unk>=105). All are saved as transformers fast tokenizers, so
`transformers.pipeline` and `AutoTokenizer` load them as they load the real ones.
"""

from __future__ import annotations

from pathlib import Path

from sentences import SENTENCES

# Words beside SENTENCES, so that common English (and a little German, for translation prompts)
# tokenizes into real subwords rather than single bytes.
_WORDS = """
the be to of and a in that have it for not on with he as you do at this but his by from they
we say her she or an will my one all would there their what so up out if about who get which go
me when make can like time no just him know take people into year your good some could them see
other than then now look only come its over think also back after use two how our work first
well way even new want because any these give day most us is was are were been has had did said
man woman child world life hand part place case week company system program question government
number night point home water room mother area money story fact month lot right study book eye
job word business issue side kind head house service friend father power hour game line end
member law car city community name president team minute idea kid body information school face
others level office door health person art war history party result change morning reason
research girl guy moment air teacher force education summary translate summarize english german
text model token sentence short long small large quick brown fox jumps lazy dog cat sits
outside weather rain sun today tomorrow yesterday morning evening news report market price
cheap expensive buy sell music song play read write learn teach city country river mountain
sea ocean tree flower garden food bread water coffee tea milk apple orange red blue green
yellow black white happy sad big little old young early late fast slow hot cold open close
start stop begin finish walk run drive fly swim sleep wake eat drink speak listen hear watch
der die das und ist ein eine nicht mit auf für von sie es ich du wir ihr haus hund katze
schnell langsam gut schlecht heute morgen wasser brot welt kind frau mann buch stadt
""".split()

CORPUS = [*SENTENCES, *(" ".join(_WORDS[i:i + 12]) for i in range(0, len(_WORDS), 12)),
          *(f"The {a} and the {b} are {c}." for a, b, c in zip(_WORDS, _WORDS[7:], _WORDS[13:]))]

# Model configs: two layers, width 32, four heads; positions well above any test prompt. The
# initializer scales keep logits spread (few argmax near-ties) yet well conditioned: T5 at
# initializer_factor 4 differs from itself in float64 by 0.1 in its logits.
_GPT2 = dict(n_embd=32, n_layer=2, n_head=4, n_inner=37, n_positions=128,
             initializer_range=0.2)
_BART = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37,
             max_position_embeddings=128, init_std=0.2)
_PEGASUS = dict(_BART, scale_embedding=True)
_T5 = dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
           relative_attention_num_buckets=8, relative_attention_max_distance=32)

# t5-small's own task_specific_params: the pipelines read their prefixes and defaults.
T5_TASK_PARAMS = {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 200,
                      "min_length": 30, "no_repeat_ngram_size": 3, "num_beams": 4,
                      "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to German: "},
    "translation_en_to_fr": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to French: "},
    "translation_en_to_ro": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to Romanian: "},
}

# The decoder family beside GPT-2, and today's small edge LLMs: model_type -> (config class,
# config values, tokenizer style). Two layers, width 64 in 4 heads of 16 (ONNX Runtime's
# GroupQueryAttention, the llm recipe's attention, takes head sizes of 16 and up); grouped-query
# attention (2 KV heads) where the architecture has it; sliding windows of 8 positions, so that
# the tests' prompts and generations cross them; Phi-3 with LongRoPE whose original length (16)
# the longer tests cross, so both of its frequency sets are used.
_DECODER = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=128, initializer_range=0.2)
_GQA = dict(_DECODER, num_key_value_heads=2)
_LONGROPE = {"type": "longrope", "short_factor": [1.0, 1.05, 1.1, 1.2, 1.3, 1.4, 1.6, 1.8],
             "long_factor": [1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0]}
_HYBRID = dict(sliding_window=8, layer_types=["sliding_attention", "full_attention"])
LLMS = {
    "gptj": ("GPTJConfig", dict(n_embd=32, n_layer=2, n_head=4, n_inner=37, rotary_dim=4,
                                n_positions=128, initializer_range=0.2), "gpt2"),
    "gpt_neo": ("GPTNeoConfig", dict(hidden_size=32, num_layers=2, num_heads=4,
                                     intermediate_size=37, max_position_embeddings=128,
                                     window_size=8, attention_types=[[["global", "local"], 1]],
                                     initializer_range=0.2), "gpt2"),
    "gpt_neox": ("GPTNeoXConfig", dict(_DECODER, rotary_pct=0.25), "gpt2"),
    "opt": ("OPTConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              ffn_dim=37, max_position_embeddings=128, word_embed_proj_dim=32,
                              init_std=0.2), "opt"),
    "bloom": ("BloomConfig", dict(hidden_size=32, n_layer=2, n_head=4, initializer_range=0.2),
              "bloom"),
    # Llama 3.1/3.2's RoPE scaling, its original length crossed by the longer tests
    "llama": ("LlamaConfig", dict(_GQA, head_dim=16, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}), "llama3"),
    "mistral": ("MistralConfig", dict(_GQA, sliding_window=8), "mistral"),
    "qwen2": ("Qwen2Config", dict(_GQA, use_sliding_window=False), "chatml"),
    "qwen3": ("Qwen3Config", dict(_GQA, head_dim=16), "chatml"),
    "smollm3": ("SmolLM3Config", dict(_GQA, no_rope_layer_interval=2), "chatml"),
    "phi3": ("Phi3Config", dict(_GQA, original_max_position_embeddings=16,
                                rope_scaling=_LONGROPE), "phi3"),
    "gemma2": ("Gemma2Config", dict(_GQA, head_dim=16, query_pre_attn_scalar=16,
                                    attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                                    **_HYBRID), "gemma"),
    # Gemma 3's pattern: five sliding layers, then a global one (both of the two layers slide)
    "gemma3_text": ("Gemma3TextConfig", dict(_GQA, head_dim=16, query_pre_attn_scalar=16,
                                             sliding_window=8), "gemma"),
}

# (model_type, task) pairs; BART and T5 serve all three text-to-text tasks from one checkpoint.
# (mBART and Marian: translation_checkpoints.py.)
TINY_GENERATION = {
    ("gpt2", "text-generation"),
    *((model_type, "text-generation") for model_type in LLMS),
    *((model_type, task) for model_type in ("bart", "t5")
      for task in ("text2text-generation", "summarization", "translation")),
    ("pegasus", "summarization"),
}


def _byte_level_bpe(special_first: list[str], special_last: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_first,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.add_special_tokens(special_last)  # after the vocabulary: ids len(vocab) ...
    return tokenizer


def gpt2_tokenizer():
    """GPT-2's kind: byte-level BPE, no prefix space, <|endoftext|> last as bos, eos and unk."""
    from tokenizers import processors
    from transformers import GPT2TokenizerFast

    tokenizer = _byte_level_bpe([], ["<|endoftext|>"], 600)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return GPT2TokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>",
                             eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                             model_max_length=_GPT2["n_positions"])


def bart_tokenizer():
    """BART's kind: byte-level BPE with <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last, and
    `<s> ... </s>` around every text (RoBERTa's post-processor)."""
    from tokenizers import processors
    from transformers import BartTokenizerFast

    tokenizer = _byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"], 600)
    tokenizer.post_processor = processors.RobertaProcessing(
        sep=("</s>", 2), cls=("<s>", 0), trim_offsets=True, add_prefix_space=False)
    return BartTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                             sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                             pad_token="<pad>", mask_token="<mask>",
                             model_max_length=_BART["max_position_embeddings"])


def _unigram(special_tokens: list[str], unk_token: str, vocab_size: int, pair: str,
             single: str = "$A </s>", template_tokens=(("</s>", 1),)):
    """A sentencepiece-like Unigram: NFKC, whitespace split, Metaspace, the ``single`` and
    ``pair`` templates around texts (by default `... </s>` after every text: id 1 in both T5
    and Pegasus)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁")])
    tokenizer.decoder = decoders.Metaspace(replacement="▁")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                      unk_token=unk_token, show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=list(template_tokens))
    return tokenizer


def t5_tokenizer():
    """T5's kind: a Unigram (sentencepiece-like) vocabulary with <pad>=0 </s>=1 <unk>=2."""
    from transformers import T5TokenizerFast

    tokenizer = _unigram(["<pad>", "</s>", "<unk>"], "<unk>", 500, pair="$A </s> $B </s>")
    return T5TokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>",
                           pad_token="<pad>", extra_ids=0, model_max_length=512)


def pegasus_tokenizer():
    """Pegasus's kind: a Unigram with <pad>=0 </s>=1 <mask_1>=2 <mask_2>=3, the reserved
    <unk_2>..<unk_102>, then <unk>=105."""
    from transformers import PegasusTokenizerFast

    reserved = [f"<unk_{i}>" for i in range(2, 103)]
    tokenizer = _unigram(["<pad>", "</s>", "<mask_1>", "<mask_2>", *reserved, "<unk>"], "<unk>",
                         600, pair="$A $B </s>")
    return PegasusTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                unk_token="<unk>", mask_token="<mask_2>",
                                mask_token_sent="<mask_1>",
                                model_max_length=_PEGASUS["max_position_embeddings"])


# Chat templates of the real checkpoints' kinds (shortened where the real ones handle tools):
# rendered by transformers when the reference pipeline is given messages, and by the runtime.
CHAT_TEMPLATES = {
    "llama3": (
        "{{- bos_token }}{%- for message in messages %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
        "+ message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
        "{%- if add_generation_prompt %}"
        "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"),
    "mistral": (
        "{{- bos_token }}{%- for message in messages %}"
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{- raise_exception('Conversation roles must alternate user/assistant/user/"
        "assistant/...') }}{%- endif %}"
        "{%- if message['role'] == 'user' %}{{- '[INST] ' + message['content'] + ' [/INST]' }}"
        "{%- else %}{{- message['content'] + eos_token }}{%- endif %}{%- endfor %}"),
    "chatml": (
        "{%- for message in messages %}"
        "{%- if loop.first and message['role'] != 'system' %}"
        "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
        "{%- endif %}"),
    "phi3": (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] "
        "+ '<|end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}"
        "{% else %}{{ eos_token }}{% endif %}"),
    "gemma": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for message in messages %}{% if message['role'] == 'assistant' %}"
        "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
        "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"),
}

# style -> (special tokens first, special tokens last, bos, eos, pad, bos prepended to every
# text): the real checkpoints' layouts, in short.
_LLM_TOKENIZERS = {
    "opt": (["<s>", "<pad>", "</s>", "<unk>"], [], "</s>", "</s>", "<pad>", True),
    "bloom": (["<unk>", "<s>", "</s>", "<pad>"], [], "<s>", "</s>", "<pad>", False),
    "llama3": ([], ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                    "<|end_header_id|>", "<|eot_id|>"],
               "<|begin_of_text|>", "<|eot_id|>", None, True),
    "mistral": (["<unk>", "<s>", "</s>"], [], "<s>", "</s>", None, True),
    "chatml": ([], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>",
               "<|endoftext|>", False),
    "phi3": (["<unk>", "<s>", "</s>"], ["<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>",
                                        "<|system|>"], "<s>", "<|endoftext|>", "<|endoftext|>",
             False),
    "gemma": (["<pad>", "<eos>", "<bos>", "<unk>"], ["<start_of_turn>", "<end_of_turn>"],
              "<bos>", "<eos>", "<pad>", True),
}


def llm_tokenizer(style: str):
    """A byte-level BPE in a real LLM's layout (``_LLM_TOKENIZERS``), with its chat template
    where the real kind has one; GPT-2's for the "gpt2" style."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    if style == "gpt2":
        return gpt2_tokenizer()
    first, last, bos, eos, pad, prepend = _LLM_TOKENIZERS[style]
    tokenizer = _byte_level_bpe(first, last, 600)
    if prepend:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tokenizer.token_to_id(bos))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad,
        unk_token="<unk>" if "<unk>" in first else None, model_max_length=128,
        chat_template=CHAT_TEMPLATES.get(style))


def _llm_config(model_type: str, tokenizer, transformers):
    """An LLM's config from LLMS, with its tokenizer's special token ids; its generation
    defaults are the ids alone (greedy), as the real checkpoints' generation_config.json have
    beside their sampling settings."""
    config_class, values, _ = LLMS[model_type]
    ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id")
           for name in ("bos", "eos", "pad")}
    ids = {key: value for key, value in ids.items() if value is not None}
    config = getattr(transformers, config_class)(vocab_size=len(tokenizer), **ids, **values)
    return config, transformers.GenerationConfig(**ids)


def _model_and_generation_config(model_type: str, tokenizer, transformers):
    if model_type in LLMS:
        return _llm_config(model_type, tokenizer, transformers)
    if model_type == "gpt2":
        eos = tokenizer.eos_token_id
        config = transformers.GPT2Config(vocab_size=len(tokenizer), bos_token_id=eos,
                                         eos_token_id=eos, **_GPT2)
        return config, transformers.GenerationConfig(bos_token_id=eos, eos_token_id=eos)
    if model_type == "bart":
        ids = dict(bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2)
        config = transformers.BartConfig(vocab_size=len(tokenizer), **ids, **_BART)
        # as facebook/bart-large: the first generated token is <s>, the last one </s>
        generation = transformers.GenerationConfig(**ids, forced_bos_token_id=0,
                                                   forced_eos_token_id=2)
        return config, generation
    if model_type == "pegasus":
        # as google/pegasus-xsum: decoding starts at <pad>, and ends with a forced </s>
        ids = dict(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        config = transformers.PegasusConfig(vocab_size=len(tokenizer), **ids,
                                            forced_eos_token_id=1, **_PEGASUS)
        return config, transformers.GenerationConfig(**ids, forced_eos_token_id=1)
    if model_type == "t5":
        ids = dict(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        config = transformers.T5Config(vocab_size=len(tokenizer), **ids,
                                       task_specific_params=T5_TASK_PARAMS, **_T5)
        return config, transformers.GenerationConfig(**ids)
    raise KeyError(model_type)


_TOKENIZERS = {"gpt2": gpt2_tokenizer, "bart": bart_tokenizer, "t5": t5_tokenizer,
               "pegasus": pegasus_tokenizer}
_MODEL_CLASSES = {"gpt2": "GPT2LMHeadModel", "bart": "BartForConditionalGeneration",
                  "t5": "T5ForConditionalGeneration",
                  "pegasus": "PegasusForConditionalGeneration"}


def build_tiny_generation_checkpoint(model_type: str, task: str, directory: Path, *,
                                     seed: int = 0) -> Path:
    """Save a tiny random `model_type` model for `task` (with generation_config.json) and its
    tokenizer to directory."""
    import torch
    import transformers

    if (model_type, task) not in TINY_GENERATION:
        raise KeyError(f"no tiny generation checkpoint for {(model_type, task)}")
    directory = Path(directory)
    tokenizer = (llm_tokenizer(LLMS[model_type][2]) if model_type in LLMS
                 else _TOKENIZERS[model_type]())
    config, generation_config = _model_and_generation_config(model_type, tokenizer, transformers)
    torch.manual_seed(seed)
    model_class = (transformers.AutoModelForCausalLM.from_config if model_type in LLMS
                   else getattr(transformers, _MODEL_CLASSES[model_type]))
    model = model_class(config).eval()
    model.generation_config = generation_config
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
