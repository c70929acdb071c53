#!/usr/bin/env python3
"""Golden tokenizer outputs from transformers' VitsTokenizer.

Writes
  tests/data/io/mms_tts_eng/vocab.json, tokenizer_config.json  (facebook/mms-tts-eng's tokenizer files)
  tests/data/io/tokenizer_cases.json                            ({tokenizers: [{name, vocab, add_blank, pad_token,
                                                                  cases: [{text, ids, dropped}]}]})

The mms-tts-eng vocabulary (38 characters, "k" = 0 is also the pad/blank token) is the one in
transformers' tests/models/vits/test_tokenization_vits.py (same order, " " at 19), whose
integration test pins facebook/mms-tts-eng's ids for three sentences; that test is re-checked here.
A second, made-up vocabulary exercises what mms-tts-eng cannot: upper-case and multi-character
keys that normalisation must keep, and non-ASCII keys.

Usage (from the repository root): python3 tools/golden/make_tokenizer_cases.py
"""
import json
import os
import tempfile

import transformers
from transformers import VitsTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "tests", "data", "io")

MMS_TTS_ENG_VOCAB = {}
for i, ch in enumerate("k ' z y u d h e s w – 3 c p - 1 j m i X f l o 0 b r a 4 2 n _ x v t q 5 6 g".split(" ")):
    MMS_TTS_ENG_VOCAB[" " if ch == "X" else ch] = i

MMS_TTS_ENG_CONFIG = {
    "add_blank": True,
    "is_uroman": False,
    "language": "eng",
    "normalize": True,
    "pad_token": "k",
    "phonemize": False,
    "tokenizer_class": "VitsTokenizer",
    "unk_token": "<unk>",
}

MMS_TEXTS = [
    "Hello world",
    "HELLO, World!",
    "The quick brown fox jumps over the lazy dog.",
    "   leading and trailing spaces   ",
    "multiple    spaces   inside",
    "kite",
    "walk",
    "k",
    "kk",
    "Kayak KK",
    " k ",
    "knock knock",
    "Café naïve résumé",
    "Straße",
    "İstanbul",
    "ÀÉÎÕÜ ÿ Ÿ",
    "I'm 25 – year-old_dev",
    "emoji 😀 test 🎉",
    "tab\there\nnewline\r\n",
    "«Quoted» text? Yes; really: (maybe)",
    "123-456 7890",
    "ΣΑΣ greek",
    "x",
    "!?hello?!",
    "\u00a0non-breaking\u2003spaces\u00a0",
    "A—B–C-D",
]

# Upper case, multi-character and non-ASCII keys; id 0 is the blank "_".
CUSTOM_VOCAB = {"_": 0, "a": 1, "b": 2, "c": 3, "h": 4, "A": 5, "Ch": 6, "ß": 7, "é": 8, " ": 9, "sch": 10,
                "s": 11, "o": 12, "n": 13}
CUSTOM_TEXTS = [
    "Ach so",
    "ACH SO",
    "Chocolate",
    "CHOC",
    "Schon",
    "schon",
    "ÉCOLE école",
    "Straße STRASSE",
    "Aa Bb",
    " Ach ",
]


def make_tokenizer(vocab, config):
    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False)
    from_dir = VitsTokenizer.from_pretrained(tmp)
    direct = VitsTokenizer(vocab_file=os.path.join(tmp, "vocab.json"), add_blank=config["add_blank"],
                           normalize=True, phonemize=False, pad_token=config["pad_token"])
    return from_dir, direct


def dropped_characters(tok, text):
    seen = []
    for ch in tok.normalize_text(text):
        if ch not in tok.encoder and ch not in seen:
            seen.append(ch)
    return seen


def cases_for(vocab, config, texts):
    tok, direct = make_tokenizer(vocab, config)
    cases = []
    for text in texts:
        ids = tok(text).input_ids
        assert ids == direct(text).input_ids, text
        cases.append({"text": text, "ids": ids, "dropped": dropped_characters(tok, text)})
    return tok, cases


def main():
    mms_dir = os.path.join(OUT_DIR, "mms_tts_eng")
    os.makedirs(mms_dir, exist_ok=True)
    with open(os.path.join(mms_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(MMS_TTS_ENG_VOCAB, f, ensure_ascii=False, indent=2)
        f.write("\n")
    with open(os.path.join(mms_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(MMS_TTS_ENG_CONFIG, f, indent=2)
        f.write("\n")

    tokenizers = []
    mms, mms_cases = cases_for(MMS_TTS_ENG_VOCAB, MMS_TTS_ENG_CONFIG, MMS_TEXTS)
    # transformers' pinned facebook/mms-tts-eng integration ids (test_tokenizer_integration, padding removed).
    assert mms("We use k as our padding token").input_ids == [
        0, 9, 0, 7, 0, 19, 0, 4, 0, 8, 0, 7, 0, 19, 0, 0, 0, 19, 0, 26, 0, 8, 0, 19, 0, 22, 0, 4, 0, 25, 0, 19, 0,
        13, 0, 26, 0, 5, 0, 5, 0, 18, 0, 29, 0, 37, 0, 19, 0, 33, 0, 22, 0, 0, 0, 7, 0, 29, 0]
    assert mms("The quick brown fox! Jumps over the lazy dog...").input_ids[:18] == [
        0, 33, 0, 6, 0, 7, 0, 19, 0, 34, 0, 4, 0, 18, 0, 12, 0, 0]
    tokenizers.append({"name": "mms_tts_eng", "vocab": MMS_TTS_ENG_VOCAB, "add_blank": True, "pad_token": "k",
                       "cases": mms_cases})

    no_blank_config = dict(MMS_TTS_ENG_CONFIG, add_blank=False)
    _, cases = cases_for(MMS_TTS_ENG_VOCAB, no_blank_config, MMS_TEXTS)
    tokenizers.append({"name": "mms_tts_eng_no_blank", "vocab": MMS_TTS_ENG_VOCAB, "add_blank": False,
                       "pad_token": "k", "cases": cases})

    custom_config = {"add_blank": True, "normalize": True, "pad_token": "_", "phonemize": False,
                     "is_uroman": False}
    _, cases = cases_for(CUSTOM_VOCAB, custom_config, CUSTOM_TEXTS)
    tokenizers.append({"name": "custom_case_keys", "vocab": CUSTOM_VOCAB, "add_blank": True, "pad_token": "_",
                       "cases": cases})

    out = {"generator": "tools/golden/make_tokenizer_cases.py", "transformers_version": transformers.__version__,
           "tokenizers": tokenizers}
    with open(os.path.join(OUT_DIR, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", sum(len(t["cases"]) for t in tokenizers), "cases")


if __name__ == "__main__":
    main()
