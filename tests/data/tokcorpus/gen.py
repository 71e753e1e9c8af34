#!/usr/bin/env python3
"""Builds the tokenizer test corpus (seeded, deterministic): python3 gen.py [OUTDIR]

Writes, next to this script unless OUTDIR is given:
  corpus.jsonl  {"tag": ..., "text": ...} or {"tag": ..., "hex": ...} (raw bytes, may be
                invalid UTF-8), several thousand items in the categories listed in README.md
  ids.jsonl     {"tag": ..., "ids": [...]} id sequences for decode tests (random, byte tokens,
                split UTF-8 characters, special tokens)
  chat.jsonl    {"tag": ..., "messages": [...], "add_generation_prompt": bool}

Prose, sentences and conversations are written for this corpus; code snippets come from this
repository's own files. Random strings use only code points assigned in Unicode 14 (the
version PCRE2 10.42 and Python 3.11 know; the Node oracle knows 17), so that both sides agree
on every character's category.
"""
import json
import os
import random
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
rng = random.Random(20260523)
items = []


def add(tag, text):
    items.append({"tag": tag, "text": text})


def add_hex(tag, data):
    items.append({"tag": tag, "hex": data.hex()})


# ---- English prose (written for this corpus) ---------------------------------------------
PROSE = [
    "The harbour was quiet before dawn. Fishing boats rocked against their ropes, and a gull "
    "walked along the rail of the pier as if it owned the place. Nobody argued with it.",
    "Maria checked the thermometer twice, then wrote 38.6 in the notebook. The fever hadn't "
    "broken yet, but the boy was drinking water again, which she took as a good sign.",
    "Most bridges fail slowly. Rust works its way under the paint, bolts loosen by a fraction "
    "of a turn each winter, and one day an inspector notices a crack that wasn't there before.",
    "\"We're not lost,\" said Tom, folding the map for the third time. \"We've just taken a "
    "route that nobody else would've chosen.\" His sister didn't laugh.",
    "In 1987 the library moved to a new building on Elm Street. The old one became a bakery; "
    "people still say the bread smells faintly of paper and glue.",
    "A compiler is a patient translator. It reads what you meant, complains about what you "
    "wrote, and eventually produces something the machine will execute without question.",
    "The recipe calls for 250 g of flour, 2 eggs, a pinch of salt and about 300 ml of milk. "
    "Whisk until smooth, rest for 30 minutes, then cook on a hot, lightly oiled pan.",
    "Rain had been forecast for Tuesday, Wednesday and Thursday; it arrived on Friday instead, "
    "all at once, and flooded the underpass on the way to the station.",
    "She'd learned to read timetables before she could ride a bicycle. Trains were reliable, "
    "she said, in a way that people rarely were -- at least on paper.",
    "The committee met at 9:30 a.m. to discuss the budget (again). After two hours, three "
    "coffees and one heated exchange, they agreed to meet next week.",
    "Every spring the river carries gravel down from the mountains and leaves it on the "
    "inside of each bend. Over centuries the valley floor has risen by several metres.",
    "I can't remember the name of the song, but I'll never forget the tune: four notes up, "
    "two down, and a long note that seemed to hang in the air for ever.",
    "Q: What's the capital of Australia?\nA: Canberra, not Sydney -- a common mistake.",
    "Dear Mr. O'Neill,\n\nThank you for your letter of 14 March. We're sorry to hear that the "
    "parcel arrived damaged. A replacement will be sent within 5-7 working days.\n\nYours "
    "sincerely,\nThe Customer Service Team",
    "HEADLINE: LOCAL TEAM WINS 3-2 AFTER EXTRA TIME!!! Fans celebrated late into the night; "
    "the mayor called it \"the best match I've ever seen\".",
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
    "How vexingly quick daft zebras jump!",
    "Tokenizers split text into pieces a model can count. Long, rare words become several "
    "pieces; short, common ones are usually a single token -- including the space before it.",
]

WORDS = ("the of and to in is was for on that with as by at from it this be are an or have "
         "not but had his they which one you were her all she there would their we him been "
         "has when who will more no if out so said what up its about into than them can only "
         "other new some could time these two may then do first any my now such like our over "
         "man me even most made after also did many before must through back years where much "
         "your way well down should because each just those people Mr how too little state good "
         "very make world still own see men work long get here between both life being under "
         "never day same another know while last might us great old year off come since "
         "against go came right used take three states himself few house use during without "
         "again place American around however home small found Mrs thought went say part once "
         "general high upon school every don't does got united left number course war until "
         "always away something fact though water less public put think almost hand enough far "
         "took head yet government system better set told nothing night end why called didn't "
         "eyes find going look asked later knew point next program city business give group "
         "toward young let room president side social given present several order national "
         "possible rather second face per among form important often things looked early white "
         "case John become large big need four within felt along children saw best church ever "
         "least power development light thing seemed family interest want members mind country "
         "area others done turned although open God service problem certain kind different "
         "thus began door help means sense whole matter perhaps itself York times law human "
         "line above name example action company hands local show whether five history gave "
         "today either act feet across taken past quite anything seen having death week "
         "experience body word half really field am car words already themselves I'm information "
         "tell together college shall money period held keep sure probably free seems real "
         "behind cannot miss political air question making office brought whose special heard "
         "major problems ago became federal moment study available known result street economic "
         "boy position reason change south board individual job society areas west close turn "
         "love community true court force full seem am").split()


def prose():
    for p in PROSE:
        add("prose/paragraph", p)
        for s in p.replace("!", "!|").replace("?", "?|").replace(". ", ".|").split("|"):
            if s.strip():
                add("prose/sentence", s.strip())
                add("prose/sentence-lead-space", " " + s.strip())
    add("prose/all", "\n\n".join(PROSE))
    for i in range(350):
        n = rng.randint(3, 40)
        words = [rng.choice(WORDS) for _ in range(n)]
        if rng.random() < 0.5:
            words[0] = words[0].capitalize()
        text = " ".join(words)
        if rng.random() < 0.3:
            text = text.upper() if rng.random() < 0.5 else text.title()
        add("prose/random", text + rng.choice([".", "!", "?", "", "...", ";", ":", ","]))


# ---- code from this repository -------------------------------------------------------------
CODE_FILES = [
    "common/text/utf8.c", "common/text/tok_encode.c", "common/base/err.h", "common/base/log.h",
    "common/model/config.h", "tests/fuzz/wire_seeds.py", "tests/fuzz/ctrl_seeds.py",
    "tests/oracle/step3_ref.py", "models/step3/config.json", "models/deepseek-v3/config.json",
    "deploy/examples/attnd-0.json", "bench/profiles/example.json", "deploy/run-tiny.sh",
    "tests/run-integ.sh", "Makefile", "docs/protocol.md", "README.md",
]


def code():
    for rel in CODE_FILES:
        path = os.path.join(REPO, rel)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        tag = "code/" + rel.rsplit(".", 1)[-1]
        i = 0
        while i < len(lines):
            k = rng.randint(1, 30)
            add(tag, "\n".join(lines[i:i + k]))
            i += k
        add(tag + "/head", "\n".join(lines[:120]))
    snippets = [
        "int main(void) {\n\tprintf(\"hello, world\\n\");\n\treturn 0;\n}\n",
        "for (size_t i = 0; i < n; i++) {\n    if (a[i] != b[i]) return -1;\n}",
        "def f(x):\n    if x < 0:\n        return -x\n    return x  # abs\n",
        "class Node:\n    def __init__(self, key, left=None, right=None):\n        self.key = key\n",
        "{\n  \"name\": \"afd\",\n  \"version\": [1, 2, 3],\n  \"nested\": {\"a\": null, \"b\": true}\n}",
        "[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
        "x <<= 2; y >>= 3; z = a ?: b; p->q->r = &s[i++]; *(int *)v = ~0u;",
        "<html>\n  <body class=\"main\">\n    <p>Text &amp; more</p>\n  </body>\n</html>",
        "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do wc -l \"$f\"; done 2>&1 | sort -n",
        "    \t    mixed_indent = True\n\t\tdeep()\n",
        "fn main() { let v: Vec<u8> = (0..=255).collect(); println!(\"{:?}\", &v[..4]); }",
        "if (x == 0x7fffffff && y != -1e-9f) { z = 'a' + '\\n'; }",
        "// TODO(someone): handle EAGAIN\n/* multi\n * line\n */\n",
        "a=1;b=2;c=a+b;d=c*c;e=d/2;f=e%3;g=f^1;h=g|2;i=h&3",
        "```python\nprint('fenced')\n```",
        "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nx[..., 0] = 1.0\n",
        "key: value\nlist:\n  - one\n  - two\nnested:\n  deeper:\n    deepest: 42\n",
    ]
    for s in snippets:
        add("code/snippet", s)
        add("code/snippet-crlf", s.replace("\n", "\r\n"))


# ---- CJK (written for this corpus) --------------------------------------------------------
ZH = ["今天天气很好，我们去公园散步吧。", "这个程序的运行速度比上一个版本快了三倍。",
      "请在明天上午十点之前提交报告。", "他说：“我已经把文件发给你了。”",
      "学习一门新的语言需要时间和耐心。", "北京、上海和广州都是人口超过一千万的城市。",
      "我们的服务器在晚上十一点进行维护，预计持续两个小时。", "这本书一共有二十三章，我才读到第七章。",
      "模型的参数量是三千二百一十亿，每个词元激活三百八十亿。", "你好！请问附近有地铁站吗？",
      "窗外下着小雨，屋里的茶还是热的。", "数据中心的电费占了运营成本的一半以上。"]
JA = ["今日はとても暑いですね。", "新しいプロジェクトは来月から始まります。",
      "すみません、駅までの道を教えていただけますか？", "このコードはメモリを使いすぎています。",
      "東京タワーの高さは三百三十三メートルです。", "私はコーヒーよりお茶のほうが好きです。",
      "カタカナで書くとコンピューターになります。", "週末は友達と映画を見に行く予定です。",
      "ひらがな、カタカナ、漢字の三種類の文字を使います。", "ｶﾀｶﾅの半角文字も時々見かけます。"]
KO = ["오늘 날씨가 정말 좋네요.", "이 프로그램은 리눅스에서만 실행됩니다.",
      "다음 주 월요일에 회의가 있습니다.", "한국어는 한글이라는 고유한 문자를 사용합니다.",
      "서울에서 부산까지 기차로 두 시간 반 걸립니다.", "저는 김치찌개를 제일 좋아해요!",
      "컴퓨터를 다시 시작해 주세요.", "책상 위에 연필 세 자루와 공책이 있다."]


def cjk():
    for tag, lines in (("cjk/zh", ZH), ("cjk/ja", JA), ("cjk/ko", KO)):
        for s in lines:
            add(tag, s)
            add(tag + "-space", " " + s + " ")
        add(tag + "/all", "".join(lines))
        add(tag + "/lines", "\n".join(lines))
    mixed = ["我用Python写了一个tokenizer，速度是100MB/s。", "GPUの数は8枚です。",
             "AI 모델은 2025년에 출시되었다.", "中文English日本語한국어混在",
             "价格：¥1,280（含税）", "第１章　はじめに", "（注）详见附录Ａ。"]
    for s in mixed:
        add("cjk/mixed", s)
    ranges = [(0x4E00, 0x9FA5), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3),
              (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0xFF01, 0xFF5E), (0x3000, 0x303F)]
    for i in range(150):
        parts = []
        for _ in range(rng.randint(1, 6)):
            lo, hi = rng.choice(ranges)
            parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 12))))
            if rng.random() < 0.4:
                parts.append(rng.choice([" ", "、", "。", "abc", "123", "\n", "！"]))
        add("cjk/random", "".join(ok_chars("".join(parts))))


# ---- emoji ---------------------------------------------------------------------------------
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "👍🏿", "❤️", "❤", "✨", "🔥", "🚀", "🧠", "🎉",
         "👨‍👩‍👧‍👦", "👩‍💻", "🧑🏾‍🚀", "🏳️‍🌈", "🏴‍☠️", "👁️‍🗨️", "❤️‍🔥", "🐻‍❄️",
         "🇺🇸", "🇯🇵", "🇩🇪", "🇨🇳", "🇧🇷", "🇺🇳", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "#️⃣", "*️⃣", "©️",
         "™️", "☺️", "✌🏻", "🤝", "🫠", "🦀", "🐍", "🍣", "⌛", "⏩", "🀄", "🃏", "🅰️", "🆗"]


def emoji():
    for e in EMOJI:
        add("emoji/one", e)
        add("emoji/in-text", f"I said {e} and left{e}.")
    add("emoji/all", "".join(EMOJI))
    add("emoji/all-spaced", " ".join(EMOJI))
    for i in range(100):
        s = "".join(rng.choice(EMOJI + [" ", "a", "!", "\n", "中"]) for _ in range(rng.randint(1, 15)))
        add("emoji/random", s)
    add("emoji/zwj-bare", "\u200d\u200d👩\u200d\u200d💻\u200d")
    add("emoji/vs", "a\ufe0fb\ufe0e❤\ufe0f")


# ---- combining marks and other scripts -----------------------------------------------------
def combining():
    bases = ["e", "a", "o", "n", "i", "ᄀ", "ا", "क", "α", "z", " ", "1"]
    marks = [chr(c) for c in list(range(0x300, 0x36F)) + [0x1AB0, 0x1DC0, 0x20D0, 0xFE20]]
    for i in range(80):
        s = ""
        for _ in range(rng.randint(1, 8)):
            s += rng.choice(bases) + "".join(rng.choice(marks) for _ in range(rng.randint(0, 5)))
            if rng.random() < 0.3:
                s += " "
        add("combining/random", s)
    for s in ["Tiếng Việt có dấu: Hà Nội, Đà Nẵng, Huế", "café vs cafe\u0301", "Ångström Å",
              "naïve coöperate façade", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "ñ vs n\u0303", "ﬁ ligature ﬀ ﬃ",
              "x\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308"]:
        add("combining/text", s)


SCRIPTS = {
    "ar": ["مرحبا بكم في المكتبة العامة.", "الساعة الآن الثالثة والنصف مساءً.",
           "هذا النص مكتوب من اليمين إلى اليسار، والأرقام ١٢٣ أيضاً.", "كتب أحمد رسالة طويلة إلى صديقه."],
    "hi": ["नमस्ते, आप कैसे हैं?", "यह कार्यक्रम बहुत तेज़ चलता है।", "भारत की राजधानी नई दिल्ली है।",
           "मुझे हिंदी में पढ़ना अच्छा लगता है। अंक: ०१२३४५६७८९"],
    "th": ["สวัสดีครับ วันนี้อากาศดีมาก", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
           "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย", "ตัวเลขไทย ๑๒๓๔๕"],
    "he": ["שלום עולם, מה שלומך?", "הספר מונח על השולחן."],
    "ru": ["Привет, как дела? Всё хорошо.", "Ёжик в тумане — известный мультфильм 1975 года."],
    "el": ["Καλημέρα σας! Η Αθήνα είναι η πρωτεύουσα.", "ΑΒΓΔ αβγδ ςσ"],
    "misc": ["Ⴀ ქართული ენა", "Հայերեն լեզու", "ሰላም ለዓለም", "བོད་ཡིག", "ភាសាខ្មែរ",
             "မြန်မာဘာသာ", "ᚠᚢᚦᚨᚱᚲ", "𝔉𝔯𝔞𝔨𝔱𝔲𝔯 𝐁𝐨𝐥𝐝 𝟙𝟚𝟛", "ⅰⅱⅲ Ⅻ ½ ¾ ² ³ ① ⑳ ㊿",
             "বাংলা ভাষা", "தமிழ் மொழி", "ગુજરાતી", "ಕನ್ನಡ", "മലയാളം", "ᓀᐦᐃᔭᐍᐏᐣ"],
}


def scripts():
    for lang, lines in SCRIPTS.items():
        for s in lines:
            add("script/" + lang, s)
            add("script/" + lang + "-mixed", "Text: " + s + " (end)")
    blocks = [(0x0600, 0x06FF), (0x0900, 0x097F), (0x0E00, 0x0E7F), (0x0590, 0x05FF),
              (0x0400, 0x04FF), (0x0370, 0x03FF), (0x10A0, 0x10FF), (0x0980, 0x09FF),
              (0x1100, 0x11FF), (0x1780, 0x17FF), (0x0F00, 0x0FFF), (0x1D400, 0x1D7FF)]
    for i in range(120):
        lo, hi = rng.choice(blocks)
        s = "".join(chr(rng.randint(lo, hi)) if rng.random() < 0.85 else " "
                    for _ in range(rng.randint(1, 25)))
        add("script/random", "".join(ok_chars(s)))


# ---- digits, whitespace, special tokens, contractions, punctuation ---------------------------
def digits():
    for n in range(1, 21):
        d = "".join(rng.choice("0123456789") for _ in range(n))
        for tmpl in ["{}", " {}", "x{}", "{}x", "a {} b", "{}.{}", "-{}", "{},{}", "({})", "${}"]:
            add(f"digits/len{n}", tmpl.format(d, d[::-1]))
        add(f"digits/len{n}-fullwidth", "".join(chr(0xFF10 + int(c)) for c in d))
        add(f"digits/len{n}-arabic", "".join(chr(0x0660 + int(c)) for c in d))
        add(f"digits/len{n}-devanagari", "".join(chr(0x0966 + int(c)) for c in d))
    for s in ["1,234,567.89", "3.14159265358979", "1e-10", "0xDEADBEEF", "2026-05-23T12:34:56Z",
              "+1 (555) 010-0199", "192.168.0.1:8080", "v1.2.3-rc4", "10%", "½+¼=¾", "x²+y³",
              "12:00", "007", "1st 2nd 3rd 4th", "Ⅻ ⅻ", "①②③", "٣٫١٤", "𝟘𝟙𝟚"]:
        add("digits/formats", s)


def whitespace():
    units = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u2029",
             "\u2003", "\u180e", "\u200b", "\x0b", "\x0c", "\u202f", "\u205f"]
    for n in range(1, 41):
        add("ws/spaces", " " * n)
        add("ws/spaces-word", "a" + " " * n + "b")
        add("ws/spaces-trail", "word" + " " * n)
        add("ws/spaces-lead", " " * n + "word")
    for n in range(1, 13):
        add("ws/tabs", "\t" * n + "x")
        add("ws/newlines", "x" + "\n" * n + "y")
        add("ws/crlf", "x" + "\r\n" * n + "y")
        add("ws/space-newline", "x" + " \n" * n)
        add("ws/newline-space", "x" + "\n " * n + "y")
    for i in range(150):
        s = "".join(rng.choice(units) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.6:
            s = rng.choice(["a", "foo", "中", "1", ".", ""]) + s + rng.choice(["b", "bar", "", "!"])
        add("ws/mixed", s)
    add("ws/empty", "")


SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<|EOT|>", "<|BOT|>",
            "<think>", "</think>", "<im_patch>", "<｜User｜>", "<｜Assistant｜>", "<｜fim▁hole｜>",
            "<｜tool▁sep｜>", "<｜place▁holder▁no▁5｜>", "<｜▁pad▁｜>"]
FRAGMENTS = ["<|EOT|", "|EOT|>", "<|BOT", "<think", "think>", "<｜begin▁of", "<|", "|>", "<", ">",
             "｜", "▁", "<|eot|>", "< |EOT|>", "<<", ">>"]


def specials():
    for sp in SPECIALS:
        add("special/alone", sp)
        add("special/in-text", f"Hello {sp} world")
        add("special/glued", f"abc{sp}def")
        add("special/twice", sp + sp)
        add("special/spaced", f" {sp} ")
        add("special/newlines", f"\n{sp}\n")
    for i in range(120):
        s = ""
        for _ in range(rng.randint(1, 8)):
            s += rng.choice([rng.choice(SPECIALS), rng.choice(FRAGMENTS), rng.choice(WORDS),
                             " ", "\n", "123", "中文"])
        add("special/random", s)
    add("special/chat-like", "<｜begin▁of▁sentence｜>You are helpful.<|BOT|>user\nHi!<|EOT|>"
        "<|BOT|>assistant\n<think>\nThe user greets.\n</think>\nHello!<|EOT|>")


def contractions():
    forms = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL",
             "'D", "’s", "’t", "’re", "'x", "''", "'"]
    for f in forms:
        for w in ["it", "don", "we", "they", "I", "you", "she", "IT", "O", "rock'n"]:
            add("contraction", w + f)
        add("contraction/sentence", f"He said it{f} fine and we{f} go")
    for s in ["I'm sure they'll say we'd've known.", "'Tis the season; y'all'd better 'fess up.",
              "rock 'n' roll", "'quoted'", "it's's", "'s start", "don't\nwon't\tcan't"]:
        add("contraction/text", s)


def punctuation():
    puncts = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["…", "—", "–", "«", "»", "¿", "¡", "·",
                                                          "、", "。", "！", "？", "【", "】", "©",
                                                          "°", "±", "→", "∀", "∑", "€", "£"]
    for p in puncts:
        add("punct/one", p)
        add("punct/run3", p * 3)
        add("punct/word", p + "word")
        add("punct/space-word", " " + p + "word")
        add("punct/after", "word" + p + "\n")
    for i in range(150):
        s = "".join(rng.choice(puncts) for _ in range(rng.randint(1, 20)))
        if rng.random() < 0.5:
            s = rng.choice(["a", " ", "x ", "\n", "Word"]) + s + rng.choice(["b", "", " z", "\n\n"])
        add("punct/random", s)
    for s in ["...", "?!?!", "!!!111", "--help", "==>", "#include", "@user", "$HOME", "~/.bashrc",
              "a.b.c", "e.g.", "i.e.,", "(a)", "[1]", "{x}", "<tag>", "&&", "||", "::", "->",
              "/* */", "\"\"\"", "'''", "```", "__init__", "__", "___", "***bold***", "_x_"]:
        add("punct/common", s)


def long_words():
    for n in [100, 500, 1000, 3000, 10000]:
        add("long/a", "a" * n)
        add("long/random-letters", "".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                                           for _ in range(n)))
    for n in [500, 2000]:
        add("long/digits", "".join(rng.choice("0123456789") for _ in range(n)))
        add("long/spaces", " " * n + "x")
        add("long/newlines", "\n" * n)
        add("long/cjk", "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(n)))
        add("long/punct", "".join(rng.choice("!@#$%^&*()-=+") for _ in range(n)))
        add("long/emoji", "😀" * n)
    add("long/word-ish", "Pneumonoultramicroscopicsilicovolcanoconiosis" * 20)
    add("long/url", "https://example.com/" + "/".join("seg%d" % i for i in range(200)) + "?q=1")
    add("long/base64", "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123"
                                          "456789+/") for _ in range(4000)) + "==")


# ---- random strings ------------------------------------------------------------------------
def assigned14(c):
    cp = ord(c)
    if 0xD800 <= cp <= 0xDFFF:
        return False
    return unicodedata.category(c) != "Cn"


def ok_chars(s):
    """Drops characters the two sides cannot agree on: unassigned in Unicode 14 (the Node oracle
    knows Unicode 17), and U+0085 / U+FEFF (see DIVERGENT)."""
    return [c for c in s if assigned14(c) and c not in "\u0085\ufeff"]


def random_char():
    r = rng.random()
    if r < 0.35:
        return chr(rng.randint(0x20, 0x7E))
    if r < 0.45:
        return rng.choice(" \t\n\r")
    if r < 0.55:
        return chr(rng.randint(0xA0, 0x2FF))
    if r < 0.8:
        return chr(rng.randint(0x300, 0xFFFD))
    if r < 0.9:
        return chr(rng.randint(0x10000, 0x2FFFF))
    if r < 0.95:
        return chr(rng.randint(0, 0x1F))
    return chr(rng.randint(0xE0000, 0xE01EF))


def random_strings():
    for i in range(700):
        n = rng.choice([1, 2, 3, 5, 8, 13, 21, 34, 55, 89])
        s = "".join(random_char() for _ in range(n))
        if rng.random() < 0.1:
            s += rng.choice(SPECIALS)
        add("random/mixed", "".join(ok_chars(s)))
    for i in range(200):
        s = "".join(rng.choice("ab ’'s1\n.\t中😀é\u0301") for _ in range(rng.randint(1, 30)))
        add("random/small-alphabet", s)


# ---- invalid UTF-8 ---------------------------------------------------------------------------
def invalid():
    bad = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xc2", b"\xe0\x80\x80", b"\xe0\xa0",
           b"\xe4\xb8", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf0\x80\x80\x80", b"\xf0\x9f\x98",
           b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff",
           b"\xc3\x28", b"\xe2\x28\xa1", b"\xe2\x82\x28", b"\xf0\x28\x8c\xbc", b"\xf0\x90\x28\xbc",
           b"\xf0\x28\x8c\x28", b"\x80\x80\x80", b"\xef\xbb\xbf", b"\xef\xbf\xbe"]
    for b in bad:
        add_hex("invalid/alone", b)
        add_hex("invalid/in-text", b"abc" + b + b"def")
        add_hex("invalid/before-special", b + "<|EOT|>".encode())
        add_hex("invalid/after-cjk", "中文".encode() + b + " x".encode())
    valid = [w.encode() for w in WORDS[:50]] + ["中".encode(), "😀".encode(), b" ", b"\n", b"123"]
    for i in range(100):
        data = b""
        for _ in range(rng.randint(1, 10)):
            data += rng.choice(bad) if rng.random() < 0.4 else rng.choice(valid)
        add_hex("invalid/random", data)
    for i in range(50):
        add_hex("invalid/noise", bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 40))))
    add_hex("valid/as-hex", "plain text via hex: 中文 😀".encode())


# ---- decode id sequences ---------------------------------------------------------------------
def id_sequences(vocab=128815):
    out = []
    for i in range(300):
        n = rng.randint(1, 30)
        out.append({"tag": "ids/random", "ids": [rng.randrange(vocab) for _ in range(n)]})
    for i in range(100):  # low ids: many single bytes, often halves of UTF-8 characters
        out.append({"tag": "ids/low", "ids": [rng.randrange(400) for _ in range(rng.randint(1, 20))]})
    for i in range(60):
        seq = [rng.choice([rng.randrange(400), rng.randrange(128000, vocab), 0, 1, 128805])
               for _ in range(rng.randint(1, 15))]
        out.append({"tag": "ids/special-mix", "ids": seq})
    out.append({"tag": "ids/empty", "ids": []})
    return out


# ---- chat -----------------------------------------------------------------------------------
def chats():
    c = []

    def chat(tag, msgs, gen=True):
        c.append({"tag": tag, "messages": msgs, "add_generation_prompt": gen})

    chat("chat/user", [{"role": "user", "content": "Hello!"}])
    chat("chat/system-user", [{"role": "system", "content": "You are a helpful assistant."},
                              {"role": "user", "content": "What is 2+2?"}])
    chat("chat/multi-turn", [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Name a colour."},
                             {"role": "assistant", "content": "Blue."},
                             {"role": "user", "content": "Another one?"}])
    chat("chat/no-gen", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
         False)
    chat("chat/two-systems", [{"role": "system", "content": "A"}, {"role": "user", "content": "b"},
                              {"role": "system", "content": "C"}])
    chat("chat/empty", [{"role": "user", "content": ""}])
    chat("chat/none", [])
    chat("chat/specials-in-content", [{"role": "user", "content": "say <|EOT|> and <think>x</think>"}])
    chat("chat/thinking-history", [{"role": "user", "content": "Why?"},
                                   {"role": "assistant", "content": "<think>\nhmm\n</think>\nBecause."},
                                   {"role": "user", "content": "OK"}])
    chat("chat/tool", [{"role": "user", "content": "weather?"},
                       {"role": "tool", "content": "{\"temp\": 21}"}])
    chat("chat/unicode", [{"role": "system", "content": "用中文回答。"},
                          {"role": "user", "content": "東京の天気は？ 😀"}])
    chat("chat/whitespace", [{"role": "user", "content": "\n\n  spaced  \n"}])
    chat("chat/parts", [{"role": "user", "content": [{"type": "text", "text": "first "},
                                                     {"type": "text", "text": "second"}]}])
    for i in range(40):
        msgs = []
        if rng.random() < 0.5:
            msgs.append({"role": "system", "content": " ".join(rng.choice(WORDS) for _ in range(8))})
        for t in range(rng.randint(1, 5)):
            role = "user" if t % 2 == 0 else "assistant"
            text = " ".join(rng.choice(WORDS + ZH + EMOJI + ["\n", "123"]) for _ in range(rng.randint(1, 20)))
            msgs.append({"role": role, "content": text})
        chat("chat/random", msgs, rng.random() < 0.8)
    return c


DIVERGENT = [  # kept out of the oracle comparison; see docs/tokenizer.md
    "a\u0085b", "x \u0085 y", "\u0085\u0085", "\ufeffBOM at start", "mid\ufeff dle", " \ufeff ",
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    for fn in (prose, code, cjk, emoji, combining, scripts, digits, whitespace, specials,
               contractions, punctuation, long_words, random_strings, invalid):
        fn()
    with open(os.path.join(out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "ids.jsonl"), "w", encoding="utf-8") as f:
        for it in id_sequences():
            f.write(json.dumps(it) + "\n")
    with open(os.path.join(out, "chat.jsonl"), "w", encoding="utf-8") as f:
        for it in chats():
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "divergent.jsonl"), "w", encoding="utf-8") as f:
        for s in DIVERGENT:
            f.write(json.dumps({"tag": "divergent", "text": s}, ensure_ascii=False) + "\n")
    print(f"{len(items)} corpus items", file=sys.stderr)


if __name__ == "__main__":
    main()
