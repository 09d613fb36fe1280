#!/usr/bin/env python3
# gpt2_reference.py: the GPT-2 encoder (openai/gpt-2 src/encoder.py, same logic) used once to
# produce the expected ids hard-coded in tests/test_tokenizer.c. Not run by the tests.
#   python3 tests/gen/gpt2_reference.py [DATA_DIR]      (needs `pip install regex`)
# Prints the table rows of test_tokenizer.c's cases[] and, per shared corpus, the token count
# and the FNV-1a hash of the ids (as little-endian uint32) that test_corpora checks.
import json
import os
import sys

import regex

PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Encoder:
    def __init__(self, vocab_dir):
        with open(os.path.join(vocab_dir, "encoder.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(vocab_dir, "vocab.bpe"), encoding="utf-8") as f:
            lines = f.read().split("\n")[1:-1]
        self.ranks = {tuple(line.split()): i for i, line in enumerate(lines)}
        self.byte_encoder = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            bigram = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if bigram not in self.ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
        self.cache[token] = word
        return word

    def encode(self, text):
        ids = []
        for tok in PAT.findall(text):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(tok))
        return ids


CASES = [
    ("hello", "Hello world"),
    ("contractions", "I'm don't they'll we've she's you're he'd IT'S"),
    ("numbers", "In 2024, 3.14159 and 1,000,000"),
    ("spaces", "a    b  \n\n  c"),
    ("newlines", "line one\nline two\n\n\nline three\n"),
    ("tabs", "\tindented\t\tcode\t x = 1;\n\t\treturn"),
    ("accents", "café naïve résumé"),
    ("emoji", "hi 👋🏽 there 🚀"),
    ("cjk", "日本語のテキスト 中文"),
    ("mixed", " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles ( "
              "Japanese : 戦場のヴァルキュリア3 , lit . Valkyria of the Battlefield 3 ) , commonly "
              "referred to as Valkyria Chronicles III outside Japan , is a tactical role @-@ "
              "playing video game ."),
    ("edge", "  leading and trailing  \r\n\u00a0nbsp\u2003em-space 'quoted' ''' x'sy 42nd "
             "!!!?? <|endoftext|>"),
]


def c_pieces(s, width=80):
    # C string literal contents, cut into pieces of about `width` characters.
    pieces, cur, hex_before = [], "", False
    esc = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in esc:
            tok, hex_now = esc[c], False
        elif 32 <= b < 127:
            # A hex escape swallows following hex digits: close and reopen the literal.
            tok = ('""' if hex_before and c in "0123456789abcdefABCDEF" else "") + c
            hex_now = False
        else:
            tok, hex_now = "\\x%02x" % b, True
        if len(cur) + len(tok) > width:
            pieces.append(cur)
            cur = tok.lstrip('"')
        else:
            cur += tok
        hex_before = hex_now
    return pieces + [cur]


def c_entry(name, text, ids, width=100):
    out = ['    {"%s",' % name]
    out += ['     "%s"' % p for p in c_pieces(text)]
    out[-1] += ","
    line = "     {"
    for k, i in enumerate(ids):
        item = "%d%s" % (i, ", " if k + 1 < len(ids) else "},")
        if len(line) + len(item) > width:
            out.append(line.rstrip())
            line = "      "
        line += item
    out.append(line)
    out.append("     %d}," % len(ids))
    return "\n".join(out)


def fnv1a(ids):
    h = 0xcbf29ce484222325
    for i in ids:
        for k in range(4):
            h = ((h ^ ((i >> (8 * k)) & 0xff)) * 0x100000001b3) & 0xffffffffffffffff
    return h


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    enc = Encoder(os.path.join(data, "gpt2"))
    for name, text in CASES:
        print(c_entry(name, text, enc.encode(text)))
    for corpus in ("tinyshakespeare/input.txt", "wikitext-2/valid.txt"):
        with open(os.path.join(data, corpus), encoding="utf-8", newline="") as f:
            ids = enc.encode(f.read())
        print("// %s: %d tokens, FNV-1a of the ids 0x%016x" % (corpus, len(ids), fnv1a(ids)))


if __name__ == "__main__":
    main()
