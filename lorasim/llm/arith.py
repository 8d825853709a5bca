"""Generated grade-school arithmetic word problems (``task=arith``): a task that does not saturate.

A problem is a start value and ``steps`` operations (+, −, ×) told as a short story::

    Mia has 12 marbles. A friend gives Mia 5 more marbles. Mia loses 3 marbles. Mia ends up with 2
    times as many marbles as before. How many marbles does Mia have now?

and its reference response is a worked solution, one equation per operation, ending in GSM8K's
marker::

    12 + 5 = 17. 17 - 3 = 14. 14 * 2 = 28. #### 28

Why a worked solution and not the bare answer: each equation uses only numbers already written,
so a small model can learn the procedure step by step (as GSM8K's reference answers do), while the
answer alone would need the whole chain computed in one token's worth of depth. ASCII operators
(``-``, ``*``) keep every tokenizer, the byte-level test tokenizer included, on plain characters.

The difficulty knob: ``steps`` (operations per problem) and the operand sizes: every start value
and +/− operand is in [1, ``max_operand``], every multiplier in [2, ``max_multiplier``] (kept
separate because a large multiplier is long multiplication, a different skill from carrying).
Subtractions never take a value below 1, so every intermediate value is a positive integer.

Randomness: the arithmetic (start, operations, operands) draws from stream ``llm/arith_problems``
and the wording (name, object, sentence templates) from ``llm/arith_wording``, both at
``data_seed``; the wording stream takes a fixed number of draws per problem, so editing the word
lists changes the texts but never the arithmetic.

Splits: one sequence of problems, duplicates of an earlier problem's arithmetic (start and
operations) dropped, is cut into test, then validation, then train. No two splits share a problem,
not even under other names (and so no text: distinct arithmetic means other numbers in the text
or another operation's phrase), and the test split depends only on the seed, the difficulty and ``n_test``: growing
the training set never changes it.

Scoring: :func:`extract_answer` reads the integer after the first ``####`` (the rule is in its
docstring), and a response is correct when that integer equals the answer (exact match).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .. import streams

# The defaults of the API and of conf/llm/task/arith.yaml (a test keeps the two equal). The
# difficulty is chosen so that SmolLM2-135M-Instruct starts low and a 200-step run of batch 16 stays
# below the ceiling (README, "task=arith"); n_train covers such a run without repeating a problem;
# the eval splits are sized for a CPU (presets for the GPU take larger ones).
DEFAULTS = {"steps": 4, "max_operand": 20, "max_multiplier": 9, "n_train": 4000, "n_validation": 100, "n_test": 100}
MARKER = "####"
OPS = ("+", "-", "*")
NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jamal", "Kai", "Lena", "Mia",
         "Noah", "Omar", "Priya", "Quinn", "Ravi", "Sofia", "Tom")
OBJECTS = (("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("coin", "coins"), ("book", "books"),
           ("pencil", "pencils"), ("cookie", "cookies"), ("shell", "shells"), ("card", "cards"), ("stamp", "stamps"),
           ("balloon", "balloons"), ("bead", "beads"))
OPENINGS = ("{name} has {n} {obj}.", "{name} starts the day with {n} {obj}.", "{name}'s box holds {n} {obj}.",
            "{name} owns {n} {obj}.")
PHRASES = {
    "+": ("{name} buys {n} more {obj}.", "A friend gives {name} {n} more {obj}.", "{name} finds {n} more {obj}.",
          "Then {name} gets {n} more {obj}."),
    "-": ("{name} gives away {n} {obj}.", "{name} loses {n} {obj}.", "{name} sells {n} {obj}.",
          "Then {name} uses up {n} {obj}."),
    "*": ("{name} ends up with {n} times as many {obj} as before.",
          "The number of {obj} {name} has becomes {n} times as large.",
          "Then {name}'s {obj} are multiplied by {n}.", "{name} collects until there are {n} times as many {obj}."),
}
QUESTIONS = ("How many {obj} does {name} have now?", "How many {obj} does {name} have at the end?",
             "In the end, how many {obj} does {name} have?")
_DRAWS = 1 << 30  # each wording choice is one draw in [0, 2^30), reduced mod its list's length


@dataclass(frozen=True)
class Problem:
    text: str
    start: int
    ops: tuple  # ((op, operand), ...) in order, op in OPS
    solution: str  # the worked solution, ending "#### <answer>"
    answer: int


def _arithmetic(rng, steps: int, max_operand: int, max_multiplier: int) -> tuple[int, tuple]:
    """(start, ((op, operand), ...)): every intermediate value a positive integer."""
    start = value = int(rng.integers(1, max_operand + 1))
    ops = []
    for _ in range(steps):
        allowed = [op for op in OPS if op != "-" or value > 1]  # a subtraction keeps the value ≥ 1
        op = allowed[int(rng.integers(len(allowed)))]
        if op == "+":
            n = int(rng.integers(1, max_operand + 1))
        elif op == "-":
            n = int(rng.integers(1, min(value - 1, max_operand) + 1))
        else:
            n = int(rng.integers(2, max_multiplier + 1))
        value = value + n if op == "+" else value - n if op == "-" else value * n
        ops.append((op, n))
    return start, tuple(ops)


def _solution(start: int, ops) -> tuple[str, int]:
    value, parts = start, []
    for op, n in ops:
        new = value + n if op == "+" else value - n if op == "-" else value * n
        parts.append(f"{value} {op} {n} = {new}.")
        value = new
    return " ".join(parts) + f" {MARKER} {value}", value


def _wording(rng, start: int, ops) -> str:
    picks = [int(x) for x in rng.integers(_DRAWS, size=3 + len(ops) + 1)]  # a fixed count per problem
    name = NAMES[picks[0] % len(NAMES)]
    one, many = OBJECTS[picks[1] % len(OBJECTS)]

    def obj(n):
        return one if n == 1 else many
    sentences = [OPENINGS[picks[2] % len(OPENINGS)].format(name=name, n=start, obj=obj(start))]
    for (op, n), pick in zip(ops, picks[3:]):
        plural = many if op == "*" else obj(n)  # "3 times as many apples", never "apple"
        sentences.append(PHRASES[op][pick % len(PHRASES[op])].format(name=name, n=n, obj=plural))
    sentences.append(QUESTIONS[picks[-1] % len(QUESTIONS)].format(name=name, obj=many))
    return " ".join(sentences)


def generate(n: int, steps: int = DEFAULTS["steps"], max_operand: int = DEFAULTS["max_operand"],
             max_multiplier: int = DEFAULTS["max_multiplier"], data_seed: int = 0,
             max_tries: Optional[int] = None) -> list[Problem]:
    """The first ``n`` problems of seed ``data_seed`` with distinct arithmetic, in order; fewer when
    the difficulty has too few: the search stops after ``max_tries`` draws (default 50·n + 1000) or
    after 1000 duplicates in a row (by then nearly every problem of that difficulty has been seen)."""
    numbers = streams.numpy_rng(data_seed, "llm/arith_problems")
    words = streams.numpy_rng(data_seed, "llm/arith_wording")
    seen, out, misses = set(), [], 0
    for _ in range(50 * n + 1000 if max_tries is None else max_tries):
        if len(out) == n or misses == 1000:
            break
        start, ops = _arithmetic(numbers, steps, max_operand, max_multiplier)
        text = _wording(words, start, ops)  # drawn for a duplicate too: both streams advance per problem
        if (start, ops) in seen:
            misses += 1
            continue
        seen.add((start, ops))
        misses = 0
        solution, answer = _solution(start, ops)
        out.append(Problem(text, start, ops, solution, answer))
    return out


SPLITS = ("test", "validation", "train")


def splits(n_train: int = DEFAULTS["n_train"], n_validation: int = DEFAULTS["n_validation"],
           n_test: int = DEFAULTS["n_test"], steps: int = DEFAULTS["steps"], max_operand: int = DEFAULTS["max_operand"],
           max_multiplier: int = DEFAULTS["max_multiplier"], data_seed: int = 0) -> dict[str, list[Problem]]:
    """{"train", "validation", "test"}: one sequence of distinct problems cut in the order test,
    validation, train. Raises ValueError (naming the sizes) when the difficulty has too few problems."""
    total = n_train + n_validation + n_test
    problems = generate(total, steps, max_operand, max_multiplier, data_seed)
    if len(problems) < total:
        raise ValueError(f"only {len(problems)} distinct problems found at steps={steps}, max_operand={max_operand}, "
                         f"max_multiplier={max_multiplier}, fewer than n_train + n_validation + n_test = {total}")
    return {"test": problems[:n_test], "validation": problems[n_test:n_test + n_validation],
            "train": problems[n_test + n_validation:]}


# The integer right after the first marker: optional spaces, an optional sign, digits with optional
# thousands commas, an optional decimal part.
_ANSWER = re.compile(r"\s*([-+]?)(\d[\d,]*)(?:\.(\d+))?")


def extract_answer(text: str) -> Optional[int]:
    """The integer after the first ``####`` in ``text``, else None. The fixed rule (GSM8K's marker):

    - only the first ``####`` counts; if no number follows it (after optional whitespace), None, even
      when a later marker has one;
    - the number is an optional sign (+ or −), a digit, then digits and commas; commas are dropped
      ("1,234" → 1234; a trailing comma, as in "#### 14, so", is punctuation);
    - a decimal part of zeros is accepted ("14.0" → 14); any other decimal part means the number is not
      an integer: None; a period not followed by a digit ends the number ("#### 14." → 14);
    - whatever follows the number is ignored ("#### 14 marbles" → 14).
    """
    at = text.find(MARKER)
    if at < 0:
        return None
    m = _ANSWER.match(text, at + len(MARKER))
    if m is None:
        return None
    sign, digits, decimals = m.groups()
    if decimals is not None and decimals.strip("0"):
        return None
    value = int(digits.replace(",", ""))
    return -value if sign == "-" else value


def exact_match(response: str, answer: int) -> bool:
    """Whether ``response``'s extracted answer is ``answer``."""
    return extract_answer(response) == answer


def accuracy(responses, answers) -> float:
    """The fraction of exact matches (0.0 for no responses)."""
    responses, answers = list(responses), list(answers)
    if len(responses) != len(answers):
        raise ValueError(f"responses={len(responses)}: allowed as many as answers ({len(answers)})")
    return sum(map(exact_match, responses, answers)) / len(answers) if answers else 0.0
