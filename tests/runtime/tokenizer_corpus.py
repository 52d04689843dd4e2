#!/usr/bin/env python3
"""The tokenizer reference tests' corpus: about 1 MB of varied text, one document per file in
OUT_DIR. Debian's license texts, this repository's C++ source, Unicode from many scripts with
combining marks, emoji (with ZWJ sequences and skin tones), digits, runs of spaces, tabs and
newlines, and contractions in both cases. Valid UTF-8 only (JavaScript would replace invalid
bytes). With --specials, also documents that hold the special-token texts of the tokenizer
families (<s>, <|endoftext|>, <|begin_of_text|>, ...), which decode does not give back.
    tokenizer_corpus.py OUT_DIR REPO_ROOT [--specials]
"""
import glob, os, sys
out, root = sys.argv[1], sys.argv[2]
specials = "--specials" in sys.argv[3:]
os.makedirs(out)
docs = []
for p in sorted(glob.glob("/usr/share/common-licenses/*")):
    if os.path.isfile(p):
        docs.append(open(p, "rb").read())
for folder in ("runtime", "parallel", "launch", "scheduler"):
    for p in sorted(glob.glob(os.path.join(root, folder, "*.cc"))):
        docs.append(open(p, "rb").read())
scripts = ("Ελληνικά κείμενα και τόνοι. Русский текст, ёлка! 中文文本，标点符号。"
           " 日本語のテキスト、カタカナ。 한국어 텍스트입니다. العربية نص. עברית טקסט."
           " हिन्दी पाठ। ไทย ข้อความ. Tiếng Việt có dấu. e\u0301 a\u0308 n\u0303 (combining),"
           " \u00c5ngstr\u00f6m, \ufb01 ligature, \u2028 and \u00a0 spaces.")
emoji = "😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🧑🏿‍🚀 ✈︎ 1️⃣ "
mixed = ("I'm we're they've she'd he'll IT'S WE'RE THEY'VE Don't DON'T o'clock "
         "12345678901234567890 3.14159 1,000,000 0x1F 2026-12-02T14:00:00Z ")
ws = "a  b   c    d\t\te\n\n\nf \n \n  g\r\nh   \n    \t  \n" + " " * 40 + "\n" + "\t" * 10 + "end  "
for i in range(120):
    docs.append(((scripts + emoji + mixed) * (i % 5 + 1) + ws * (i % 3 + 1)).encode())
if specials:
    marks = ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>",
             "<|im_start|>", "<|im_end|>", "<|eot_id|>"]
    for i in range(40):
        parts = []
        for k, m in enumerate(marks):
            sep = ["", " ", "  ", "\n", "\t "][(i + k) % 5]
            parts.append(sep + m + sep + (scripts if (i + k) % 3 == 0 else mixed)[: 40 + i])
        with open(os.path.join(out, f"special{i:04d}.txt"), "wb") as f:
            f.write(("".join(parts) + "<s><s></s>" + ws).encode())
for i, d in enumerate(docs):
    try:
        d.decode("utf-8")
    except UnicodeDecodeError:
        continue
    with open(os.path.join(out, f"doc{i:04d}.txt"), "wb") as f:
        f.write(d)
