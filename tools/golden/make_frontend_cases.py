#!/usr/bin/env python3
"""Golden outputs of transformers' VitsTokenizer with its two text front-ends: uroman and espeak phonemes.

Writes
  tests/data/io/frontends/hin_uroman/{vocab.json,tokenizer_config.json}  an mms-tts-style Hindi tokenizer with
      is_uroman=true: "_" (id 0, the pad/blank), space, apostrophe, hyphen, a-z and 0-9, which covers
      what uroman writes for the scripts below (anything else is dropped by the tokenizer's filter)
  tests/data/io/frontends/vits_ljs/{vocab.json,tokenizer_config.json}    a kakao-enterprise/vits-ljs-style tokenizer
      with phonemize=true: the original VITS symbol set (text/symbols.py: pad "_", punctuation, ASCII letters,
      IPA letters; the duplicated "'" keeps its last id, as a dict built from the list does)
  tests/data/io/frontend_cases.json  {versions, tokenizers: [{name, dir, cases: [{text, front_end_text, ids}]}]}
      front_end_text: for uroman, uroman.Uroman().romanize_string of the normalised text when it holds a
      non-ASCII character (what VitsTokenizer.prepare_for_tokenization does before filtering), else the normalised
      text; for phonemes, prepare_for_tokenization's output (phonemizer.phonemize with transformers' arguments).
      ids: VitsTokenizer(text)["input_ids"] (null where transformers gives None for a symbol outside the vocab).

Needs: transformers, uroman, phonemizer (see requirements.txt) and espeak-ng with libespeak-ng (Debian packages
espeak-ng, libespeak-ng1). Usage (from the repository root): python3 tools/golden/make_frontend_cases.py
"""
import importlib.metadata
import json
import os
import subprocess

import transformers
import uroman
from transformers import VitsTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "tests", "data", "io")

# Original VITS text/symbols.py.
_PAD = "_"
_PUNCTUATION = ';:,.!?¡¿—…"«»“” '
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_LETTERS_IPA = "ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢǀǁǂǃˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘'̩'ᵻ"
VITS_SYMBOLS = [_PAD] + list(_PUNCTUATION) + list(_LETTERS) + list(_LETTERS_IPA)
VITS_LJS_VOCAB = {}
for i, s in enumerate(VITS_SYMBOLS):
    VITS_LJS_VOCAB[s] = i

VITS_LJS_CONFIG = {
    "add_blank": True,
    "is_uroman": False,
    "language": "en-us",
    "normalize": True,
    "pad_token": "_",
    "phonemize": True,
    "tokenizer_class": "VitsTokenizer",
    "unk_token": "<unk>",
}

HIN_VOCAB = {}
for i, ch in enumerate(["_", " ", "'", "-"] + list("abcdefghijklmnopqrstuvwxyz") + list("0123456789")):
    HIN_VOCAB[ch] = i

HIN_CONFIG = {
    "add_blank": True,
    "is_uroman": True,
    "language": "hin",
    "normalize": True,
    "pad_token": "_",
    "phonemize": False,
    "tokenizer_class": "VitsTokenizer",
    "unk_token": "<unk>",
}

# At least one sentence per script; then Latin, digits and punctuation, which uroman leaves to the tokenizer.
UROMAN_TEXTS = [
    "नमस्ते, आप कैसे हैं?",                      # Devanagari (Hindi)
    "मैं 25 साल का हूँ।",                          # Devanagari with ASCII digits
    "भारत की राजधानी नई दिल्ली है।",               # Devanagari
    "안녕하세요, 만나서 반갑습니다.",               # Hangul
    "مرحبا بالعالم",                               # Arabic
    "ሰላም ለዓለም",                                   # Ethiopic (Amharic)
    "Привет, как дела?",                           # Cyrillic (Russian)
    "Съешь же ещё этих мягких французских булок.", # Cyrillic
    "你好，世界！",                                 # Han (Chinese)
    "สวัสดีครับ",                                   # Thai
    "Γειά σου Κόσμε!",                             # Greek
    "שלום עולם",                                   # Hebrew
    "আমি বাংলায় গান গাই",                           # Bengali
    "வணக்கம் உலகம்",                               # Tamil
    "გამარჯობა მსოფლიო",                           # Georgian
    "Բարեւ աշխարհ",                                # Armenian
    "សួស្តី​ពិភពលោក",                                # Khmer (with a zero-width space)
    "བཀྲ་ཤིས་བདེ་ལེགས།",                             # Tibetan
    "こんにちは世界",                               # Hiragana and Han (Japanese)
    "Ünïcödé Çafé naïve",                          # Latin with diacritics (non-ASCII: romanised)
    "Hello World 2024!",                           # ASCII only: uroman is not applied
    "  दो   स्पेस  ",                                # surrounding and repeated spaces
    "हिंदी और English मिलाकर",                      # mixed scripts
    "١٢٣ ४५६ 789",                                  # Arabic-Indic and Devanagari digits
]

PHONEME_TEXTS = [
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Printing, in the only sense with which we are at present concerned, differs from most if not from all the "
    "arts and crafts represented in the Exhibition.",
    "I have 3 cats and 12 dogs.",
    "It costs 19.99 dollars, or 1,5 euros.",
    "In 1984, there were 1,000,000 people.",
    "Wait... what?!",
    "\"Quoted speech,\" she said; then: silence.",
    "Well — that's it…",
    "«Bonjour» and “curly quotes”",
    "¿Qué? ¡Sí!",
    "Dr. Smith lives on St. James St.",
    "NASA and the FBI met at 10 a.m.",
    "don't can't won't",
    "state-of-the-art well-known",
    "?!",
    "...leading dots",
    "trailing comma,",
    "  spaces   around   ",
    "multiple, , marks ; here",
    "parentheses (like this) and [brackets]",
    "first line\nsecond line",
    "The U.S.A. is big.",
    "Hmm... okay; fine: yes!",
]


def write_tokenizer(name, vocab, config):
    d = os.path.join(OUT_DIR, "frontends", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(vocab, indent=2, ensure_ascii=False) + "\n")
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return d


def main():
    romanizer = uroman.Uroman()
    tokenizers = []

    d = write_tokenizer("hin_uroman", HIN_VOCAB, HIN_CONFIG)
    tok = VitsTokenizer.from_pretrained(d)
    cases = []
    for text in UROMAN_TEXTS:
        normalised = tok.normalize_text(text)
        front = romanizer.romanize_string(normalised) if any(ord(c) > 0x7F for c in normalised) else normalised
        cases.append({"text": text, "front_end_text": front, "ids": tok(text)["input_ids"]})
    tokenizers.append({"name": "hin_uroman", "dir": "frontends/hin_uroman", "cases": cases})

    d = write_tokenizer("vits_ljs", VITS_LJS_VOCAB, VITS_LJS_CONFIG)
    tok = VitsTokenizer.from_pretrained(d)
    cases = []
    for text in PHONEME_TEXTS:
        front, _ = tok.prepare_for_tokenization(text)
        cases.append({"text": text, "front_end_text": front, "ids": tok(text)["input_ids"]})
    tokenizers.append({"name": "vits_ljs", "dir": "frontends/vits_ljs", "cases": cases})

    espeak = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    out = {
        "versions": {
            "transformers": transformers.__version__,
            "uroman": importlib.metadata.version("uroman"),
            "phonemizer": importlib.metadata.version("phonemizer"),
            "espeak-ng": espeak,
        },
        "tokenizers": tokenizers,
    }
    with open(os.path.join(OUT_DIR, "frontend_cases.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    for t in tokenizers:
        print(t["name"], len(t["cases"]), "cases")


if __name__ == "__main__":
    main()
