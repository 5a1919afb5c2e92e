"""What a chat message tells about the person: facts and preferences, apart from what it asks.

People mention their life in passing, inside requests: "Hi! I just adopted a dog called
Biscuit. What food do puppies need?" The first sentence is worth remembering, the greeting and
the question are not. A message is cut into sentences, and a sentence into clauses where a
request or a question starts ("my cat keeps scratching the sofa, any tips?"); each piece is
then one of:

- a question or a request (dropped): it ends with "?", starts with a question word or an
  imperative ("Write", "Can you", "Suggest"), or asks for help ("I need ideas for");
- an acknowledgement or a reaction (dropped): "thanks!", "ok that makes sense", "Hmm, I'm
  not sure about that";
- a preference about answers (kept, kind PREFERENCE): "Please keep your answers short",
  "I prefer bullet points"; it applies to every answer (assistant/replies.py);
- anything else said (kept, kind FACT): statements, plans, people, places, dates.

A fact said inside a question is kept where the question carries it in a clause of its own:
"Since I'm vegetarian, what can I cook?" keeps "I'm vegetarian", "a dessert for my sister
Mia, who is allergic to peanuts?" keeps "my sister Mia is allergic to peanuts".

Rules, not the model: on the conversation benchmark (`python -m bench conversation`, docs/
conversation-memory.md) they extract more precisely than the default 135M model prompted to
list the facts, in well under a millisecond a message against seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from assistant import tasks

FACT = "chat user"  # the snippet kind of what the user said about themselves in chat
PREFERENCE = "preference"  # ... and of how they want to be answered

# A message longer than this is a pasted document, not chat: its sentences are not sifted one
# by one (a recipe or an article is not "about the user"), it is kept whole as before.
MAX_SIFTED_WORDS = 400


@dataclass(frozen=True)
class Said:
    """One piece of what a message tells: its text (the user's words) and its kind."""

    text: str
    kind: str  # FACT or PREFERENCE


_ABBREVIATIONS = r"(?<!\bDr)(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bSt)(?<!\bvs)(?<!\be\.g)(?<!\bi\.e)(?<!\betc)"
_SENTENCE_END = re.compile(_ABBREVIATIONS + r"(?<=[.!?…;])[\"')\]]*\s+|(?<=[。！？；])\s*|\n+")
_CLAUSE = re.compile(r"\s*(?:,|\s[-–—]\s|:\s)\s*")

QUESTION_WORDS = frozenset(
    "what what's whats who who's whom whose where where's when when's why how how's which "
    "is isn't are aren't am was were do does did don't doesn't can can't could would should "
    "will won't shall may might".split()
)
# First words of a request: imperatives and the usual ways of asking for something.
_REQUEST_WORDS = frozenset(
    """write tell give suggest explain help show list make translate summarize summarise remind
    recommend describe draft create generate find compare calculate convert plan fix check rewrite
    correct define teach brainstorm outline proofread edit shorten expand continue answer solve
    simplify compose design propose imagine pretend act sing say read search rate review analyse
    analyze estimate guess pick choose please let's lets tips tip ideas idea thoughts advice any
    quick name spell count sort format debug""".split()
)
_ASKING_FOR = re.compile(
    r"^(?:i|we)\s+(?:need|want|would like|'d like|’d like|would love|'d love|am looking for|'m looking for|"
    r"was wondering|wonder|wondered)\b(?!\s+to\s+(?:move|learn|start|buy|sell|get|go|visit|quit|run|train|finish))"
    r"|^(?:i|we)\s+(?:need|want)\s+(?:you|help|ideas|suggestions|advice|tips|a recipe|some|a list|an idea)\b",
    re.IGNORECASE,
)
# Words that say nothing about the person: greetings, thanks, agreement, reactions.
_REACTION_WORDS = frozenset(
    """hi hello hey hiya morning evening thanks thank thx ty cheers danke merci gracias ok okay k kk cool great nice
    perfect lol haha hahaha hmm hm oh ah wow awesome amazing good fine alright yes yeah yep yup no nope nah
    sure sense makes made got see agree right true interesting indeed exactly helpful useful very really
    much lot so that this it one answer answers idea clue understand mean meant think thought know knew
    sounds looks seems guess wrong correct again please bye goodbye night later brilliant lovely sweet
    fantastic excellent love thats that's it's its i'm im i you your me not about just well now pal mate buddy
    dude bro guys folks man sir dear x xx xo""".split()
)
# Fillers people start a sentence with that carry nothing: "btw", "Hi!", "ok so".
_FILLER = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|ok|okay|so|oh|and|also|btw|fyi|by the way|just so you know|"
    r"just a heads up|heads up|quick one|oh and|ah|well|anyway|anyhow|update|ps|p\.s)\b[\s,!.:;-]*)+",
    re.IGNORECASE,
)
_REMEMBER = re.compile(
    r"^(?:please\s+)?(?:remember|note|keep in mind|don't forget|do not forget|for the record)"
    r"(?:\s+that)?[\s,:]+(?=\S)",
    re.IGNORECASE,
)
# A fact in a subordinate clause of a question: "Since I'm vegetarian, what can I cook?"
_BECAUSE = re.compile(r"^(?:since|because|as|given that|now that|seeing as)\s+(?=(?:i|i'm|we|we're|my|our)\b)", re.I)
_CONDITIONAL = re.compile(r"^(?:if|when|whenever|unless|whether|suppose|supposing|what if|in case)\b", re.I)
# "... for my sister Mia, who is allergic to peanuts?" -> "my sister Mia is allergic to peanuts"
_WHO_CLAUSE = re.compile(
    r"\b((?:my|our)\s+(?:[\w'’-]+\s+){0,3}?[\w'’-]+),?\s+who\s+((?:is|was|has|had|lives|works|loves|likes|hates|"
    r"can't|cannot|can|does|doesn't|turns|turned|just|always|never|really)\b[^?!.;]*)",
    re.IGNORECASE,
)
# How someone asks to be answered.
_PREFERENCE = re.compile(
    r"\b(?:(?:answers?|repl(?:y|ies)|responses?|explanations?|it)\s+(?:short|brief|concise|simple|detailed|long)"
    r"|(?:short|brief|concise|shorter|longer|detailed|simple|one-line)\s+(?:answers?|repl(?:y|ies)|responses?|explanations?)"
    r"|keep\s+(?:it|them|things|your\s+\w+)\s+(?:short|brief|simple|concise)"
    r"|bullet(?:ed)?[\s-]?points?|bullets|numbered lists?|metric|imperial|british (?:english|spelling)"
    r"|american (?:english|spelling)|plain english|no jargon|without jargon|emojis?"
    r"|(?:answer|reply|respond|write)\s+(?:to me\s+)?in\s+[A-Z][a-z]+"
    r"|step[\s-]by[\s-]step)\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|my|mine|myself|we|we're|we've|our|ours|us)\b", re.I)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _first_word(text: str) -> str:
    match = re.match(r"[\W_]*([\w'’]+)", text)
    return match.group(1).lower().replace("’", "'") if match else ""


def _words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in re.findall(r"[\w'’]+", text)]


def is_reaction(text: str) -> bool:
    """Thanks, agreement, a greeting: nothing about the person."""
    words = _words(text)
    return all(w in _REACTION_WORDS for w in words)


def is_question_or_request(text: str) -> bool:
    """A piece of a message that asks something rather than tells it."""
    stripped = text.strip()
    if stripped.endswith(("?", "？")):
        return True
    first = _first_word(stripped)
    if first in _REQUEST_WORDS or _ASKING_FOR.match(stripped):
        return True
    if first in QUESTION_WORDS:
        # "where did I put the keys" is a question without its mark; "When I was a kid, I
        # lived in Rome" is not, and neither is "Is allergic to ..." (never written that way).
        return "," not in stripped and len(stripped.split()) <= 14
    return False


def is_preference(text: str) -> bool:
    return bool(_PREFERENCE.search(text))


def _clean(piece: str) -> str:
    piece = _FILLER.sub("", piece.strip())
    piece = _REMEMBER.sub("", piece)
    piece = piece.strip(" \t,;:-–—")
    return piece[:1].upper() + piece[1:] if piece else piece


def _facts_in_question(sentence: str) -> list[str]:
    """The facts a question or request carries in clauses of its own."""
    found = []
    clauses = [c for c in _CLAUSE.split(sentence) if c.strip()]
    for clause in clauses:
        clause = _FILLER.sub("", clause.strip())
        if _BECAUSE.match(clause):
            found.append(_BECAUSE.sub("", clause).rstrip("?!. "))
        elif not is_question_or_request(clause) and not _CONDITIONAL.match(clause) and _FIRST_PERSON.search(clause):
            if not is_reaction(clause) and len(clause.split()) >= 3:
                found.append(clause.rstrip("?!. "))
    for match in _WHO_CLAUSE.finditer(sentence):
        found.append(f"{match.group(1)} {match.group(2).strip()}")
    return found


def _sift(sentence: str) -> list[str]:
    """The parts of one sentence that tell something (in the user's words)."""
    remembered = _REMEMBER.match(_FILLER.sub("", sentence.strip()))
    cleaned = _clean(sentence)
    if not cleaned or is_reaction(cleaned):
        return []
    if is_preference(cleaned):
        return [cleaned]
    if remembered and not cleaned.endswith("?"):
        return [cleaned]
    if is_question_or_request(cleaned):
        return [_clean(f) for f in _facts_in_question(cleaned)]
    # A statement that ends in a request: "my daughter Hana is 5, suggest a trip for us".
    clauses = _CLAUSE.split(cleaned)
    for number, clause in enumerate(clauses[1:], start=1):
        if is_question_or_request(_FILLER.sub("", clause)):
            told = ", ".join(clauses[:number])
            return [_clean(told)] if not is_reaction(told) else []
    if _CONDITIONAL.match(cleaned) and "," not in cleaned:
        return []
    return [cleaned] if len(_words(cleaned)) >= 2 else []


def extract(message: str) -> list[Said]:
    """What `message` tells about the person, in their words, in order: each piece a fact or
    a preference about answers. A question, a request, a task or a thank-you gives nothing."""
    text = message.strip()
    if not text or tasks.task_of(text):
        return []
    if len(text.split()) > MAX_SIFTED_WORDS:
        return [Said(text, FACT)]
    out: list[Said] = []
    seen: set[str] = set()
    for sentence in sentences(text):
        for piece in _sift(sentence):
            piece = piece.strip()
            if not piece or piece.lower() in seen:
                continue
            seen.add(piece.lower())
            out.append(Said(_end(piece), PREFERENCE if is_preference(piece) else FACT))
    return out


def _end(piece: str) -> str:
    return piece if piece[-1:] in ".!…。！" else piece.rstrip("?,;:？；") + "."


# -- who said it, seen from Myna --------------------------------------------------------------------

_TO_YOU = [
    (r"\bI am\b", "you are"),
    (r"\bI'm\b|\bI’m\b|\bIm\b", "you're"),
    (r"\bI've\b|\bI’ve\b", "you've"),
    (r"\bI'd\b|\bI’d\b", "you'd"),
    (r"\bI'll\b|\bI’ll\b", "you'll"),
    (r"\bI was\b", "you were"),
    (r"\bwe're\b|\bwe’re\b", "you're"),
    (r"\bwe've\b|\bwe’ve\b", "you've"),
    (r"\bI\b", "you"),
    (r"\bmyself\b", "yourself"),
    (r"\bmy\b", "your"),
    (r"\bmine\b", "yours"),
    (r"\bme\b", "you"),
    (r"\bwe\b", "you"),
    (r"\bour\b", "your"),
    (r"\bus\b", "you"),
]


def as_told(text: str) -> str:
    """What the user said, as Myna repeats it back: "I adopted a dog" -> "you adopted a dog"."""
    out = text
    for pattern, replacement in _TO_YOU:
        out = re.sub(pattern, lambda m, r=replacement: _same_case(m, r), out, flags=re.IGNORECASE)
    out = out.rstrip(".")
    return out[:1].lower() + out[1:] if out[1:2].islower() or out[1:2] in ("'", "’", " ") else out


def _same_case(match: re.Match, replacement: str) -> str:
    """A sentence starts with a capital; "I" is written with one anywhere, "you" is not."""
    before = match.string[: match.start()].rstrip()
    starts = not before or before[-1] in ".!?"
    return replacement[:1].upper() + replacement[1:] if starts and match.start() > 0 else replacement


# -- questions about the person ---------------------------------------------------------------------

# Words of a question about the person that say nothing about what is asked: a memory sharing
# only these with the question is not about it ("What's my cat's name?" and "my son's name").
VAGUE_WORDS = frozenset(
    """name names called call kind type sort thing things much many old time times day days get got go going
    use used like make made want know new one good tell remember said say again still ever""".split()
)
# Asking for advice, instructions or an opinion, not for something the person told: "How do I
# boil an egg?", "What should I cook?", "Can I freeze bread?".
_ADVICE = re.compile(
    r"\bhow\s+(?:do|can|should|could|would|might|will|to)\b"
    r"|\b(?:should|could|can|would|might|shall|must)\s+(?:i|we)\b"
    r"|\b(?:do|would)\s+you\s+(?:think|recommend|suggest|know\s+(?:how|why|if|whether|a|any))\b"
    r"|\bis\s+it\s+(?:ok|okay|safe|normal|bad|good|true|possible|worth|better|healthy|fine|wise)\b"
    r"|\bwhat(?:'s|’s| is| are)\s+(?:a|an|some|the best|good)\b|\bwhat\s+if\b|\bwhy\s+(?:do|does|is|are|am)\b"
    r"|\bhow\s+long\s+until\b|\bany\s+(?:tips|ideas|advice|suggestions)\b|\bwhich\s+is\s+better\b",
    re.IGNORECASE,
)
_ABOUT_ME = re.compile(
    r"\b(?:my|our|mine|ours)\b"  # my dog, our flat
    r"|\b(?:do|does|did|am|was|have|had|were|are)\s+(?:i|we)\b"  # where do I live, am I allergic
    r"|\b(?:i|we)\s+(?:am|was|were|have|had|live|work|drive|own|study|play|go|eat|like|love|hate)\b",
    re.IGNORECASE,
)
_HOW_MUCH = re.compile(r"^how\s+(?:old|much|many|tall|far|big|long\s+ago|often)\b", re.IGNORECASE)
_RECALL_REQUEST = re.compile(
    r"^(?:please\s+)?(?:remind\s+me|tell\s+me|do\s+you\s+(?:know|remember)|can\s+you\s+(?:remind|tell)\s+me|"
    r"what\s+do\s+you\s+know\s+about)\b",
    re.IGNORECASE,
)


def is_personal_question(text: str) -> bool:
    """A question about the person, their people or their things, which only what they told
    can answer ("Where do I live?", "What's my dog called?", "Do I eat meat?"), not a question
    they ask for themselves ("How do I boil an egg?", "What should I name a puppy?")."""
    text = " ".join(text.split())
    if not text or len(text.split()) > 25 or tasks.task_of(text):
        return False
    last = sentences(text)[-1] if sentences(text) else text
    asking = _RECALL_REQUEST.match(last)
    if not asking and not (last.endswith("?") or _first_word(last) in QUESTION_WORDS):
        return False
    if not asking and _ADVICE.search(last):
        return False
    if _first_word(last) == "how" and not _HOW_MUCH.match(last):
        return False
    return bool(_ABOUT_ME.search(last))


_PREPOSITIONS = frozenset("on in at to for with from of about by near like".split())


def subject_of(question: str) -> str | None:
    """What a personal question asks about, in the asker's words: "my dog" ("What's my dog
    called?"), "my music lessons" ("When are my music lessons?"), "my best friend" ("What's my
    best friend's name?"); None when it is not that plain ("Where do I live?")."""
    words = re.findall(r"[\w'’-]+", question)
    for at, word in enumerate(words):
        if word.lower() not in ("my", "our"):
            continue
        after = words[at + 1 : at + 3]
        if not after:
            return None
        asked_of = at > 0 and words[at - 1].lower() in ("do", "does", "did", "can", "could", "will", "would")
        whole = len(after) == 2 and not asked_of and after[1].lower() not in _PREPOSITIONS
        if whole and (at + 3 == len(words) or re.search(r"['’]s$", after[1])):
            phrase = after  # the question ends on it, or its second word is the owner: "my best friend's"
        else:
            phrase = after[:1]  # "my wife" of "does my wife play", "our flat" of "is our flat on"
        phrase = [re.sub(r"['’]s$", "", w) for w in phrase]
        if phrase[-1].lower() in ("name", "names", "called"):
            phrase = phrase[:-1]
        return f"{word.lower()} {' '.join(phrase)}" if phrase else None
    return None


# Words that ask for a kind of thing rather than name one: "Which pet do I have?" is answered
# by "my dog Biscuit", which shares no word with it. A told fact naming a thing of that kind
# (by meaning, told.of_the_kind_asked, against the kind's description) is relevant; "my cat" is
# not "a dog": a specific word ("What's my cat's name?") is never matched this way. A single
# word is an ambiguous query for the embedder ("car" is as close to "dog" as to "Skoda"), so
# each kind is described in a few words.
KINDS = {
    **dict.fromkeys(("pet", "pets", "animal", "animals"), "pet animal"),
    **dict.fromkeys(("instrument", "instruments"), "musical instrument"),
    **dict.fromkeys(
        ("job", "jobs", "work", "profession", "occupation", "career", "living", "trade"), "job work profession"
    ),
    **dict.fromkeys(("employer", "company", "business", "shop"), "business company shop"),
    **dict.fromkeys(("city", "town", "country", "neighbourhood", "neighborhood"), "city"),
    **dict.fromkeys(("kids", "children", "child", "family", "relatives"), "children family"),
    **dict.fromkeys(("sport", "sports", "hobby", "hobbies"), "sport hobby"),
    **dict.fromkeys(("language", "languages"), "language"),
    **dict.fromkeys(("car", "vehicle"), "car vehicle"),
    "breed": "dog breed",
    **dict.fromkeys(
        ("subject", "degree", "course", "study", "studies", "studying", "school", "university", "college"),
        "study subject university",
    ),
    **dict.fromkeys(("team", "club", "band"), "team club"),
    **dict.fromkeys(("medication", "medicine", "medicines"), "medicine medication"),
    **dict.fromkeys(("condition", "illness", "allergy", "allergies", "health"), "illness health condition"),
    "engine": "engine",
    "software": "software",
}


def kind_words(text: str) -> list[str]:
    """The words of a question that ask for a kind of thing."""
    return [w for w in dict.fromkeys(_words(text)) if w in KINDS]


def content_words(text: str) -> list[str]:
    """The words of a statement that may name a thing: not short, not common."""
    from assistant.store.words import STOPWORDS

    words = (re.sub(r"'s$", "", w) for w in _words(text))  # "Marco's" is Marco; "I'm", "don't" are not words
    return [w for w in dict.fromkeys(words) if len(w) > 2 and "'" not in w and w not in STOPWORDS | VAGUE_WORDS]


# What someone can or cannot eat applies to every question about food, whatever its words:
# "I'm vegetarian" to "Suggest something quick for dinner".
_DIET = re.compile(
    r"\b(?:vegetarian|vegan|pescatarian|pescetarian|halal|kosher|gluten|lactose|coeliac|celiac|allergic|"
    r"allergy|allergies|intolerant|intolerance|diabetes|diabetic|(?:can't|cannot|can not|don't|do not|never) eat|"
    r"teetotal|(?:don't|do not|never) drink)\b",
    re.IGNORECASE,
)
_FOOD = re.compile(
    r"\b(?:cook|cooking|recipes?|dinner|lunch|breakfast|brunch|supper|meals?|eat|eating|food|dish|dishes|snacks?|"
    r"desserts?|bake|baking|restaurants?|menu|smoothies?|drinks?|sandwich|soup|salad|curry|pasta|pizza|cakes?|"
    r"groceries|takeaway|picnic|barbecue|bbq)\b",
    re.IGNORECASE,
)


_NOT_FOOD = re.compile(
    r"\ballergic to (?:cats?|dogs?|pets?|pollen|dust|penicillin|antibiotics?|bees?|wasps?|latex|grass|hay|mou?ld|"
    r"animals?|horses?|feathers?|nickel|perfume)\b",
    re.IGNORECASE,
)


def is_dietary(text: str) -> bool:
    return bool(_DIET.search(_NOT_FOOD.sub("", text)))


# What an animal eats is not bound by its owner's diet: "What food do puppies need?" got a
# vegetarian's note, and the model answered "as a vegetarian AI, I can't provide recipes".
_ANIMAL_EATER = re.compile(
    r"\b(?:pupp(?:y|ies)|dogs?|cats?|kittens?|pets?|birds?|parrots?|budgies?|rabbits?|hamsters?|guinea pigs?|"
    r"horses?|ponies|pony|tortoises?|lizards?|snakes?)\b",
    re.IGNORECASE,
)


def is_about_food(text: str) -> bool:
    """Whether a sentence of the text is about food for people (what the user's diet bounds)."""
    return any(_FOOD.search(s) and not _ANIMAL_EATER.search(s) for s in re.split(r"(?<=[.!?])\s+", text))


@dataclass(frozen=True)
class Shape:
    """What the user's standing preferences ask of an answer's form, for the decoder: a 135M
    model ignores "keep it short" and "bullet points" in its prompt, so the reply is started
    as a list (where the question asks for several things: an explanation, steps, options; not
    "What is the capital of Japan?"), and ended at the first sentence past `enough_words`."""

    prefix: str = ""  # the reply starts with this ("- ": a list)
    enough_words: int | None = None  # end at a sentence's end once it has this many words


SHORT_ANSWER_WORDS = 20
_SHORT = re.compile(
    r"\b(?:short|shorter|brief|concise|succinct|to the point|one or two sentences|few words|in a sentence)\b"
    r"|\b(?:no|not|don't|do not|without|hate)\b[^.]*\blong\b",
    re.IGNORECASE,
)
_LIST = re.compile(r"\b(?:bullet(?:ed)?[\s-]?points?|bullets|numbered lists?|as a list|in lists?)\b", re.IGNORECASE)
# "When you give me steps, use bullet points", "a numbered list when you explain steps": only
# where the answer is steps.
_ONLY_FOR_STEPS = re.compile(
    r"\b(?:when|whenever|if|for)\b[^.]*\b(?:steps?|instructions?|how[\s-]?tos?|recipes?|procedures?)\b", re.I
)
_ASKS_FOR_STEPS = re.compile(
    r"^(?:how\s+(?:do|can|should|would|to)\b|(?:give|show|tell|list)\s+me\s+(?:the\s+)?(?:steps|how))"
    r"|\b(?:steps|instructions|recipe|guide)\b",
    re.IGNORECASE,
)
# A question whose answer can be a list: how to, why, what are the ..., explain, suggest ideas.
_ASKS_FOR_SEVERAL = re.compile(
    r"^(?:how\b(?!\s+(?:many|much|old|far|long|tall|big|often)\b)|why\b|what\s+are\b|which\s+are\b|explain|describe|"
    r"list|give|suggest|recommend|compare|tell\s+me\s+about|summari[sz]e|outline|tips|ideas|ways)",
    re.IGNORECASE,
)


def answer_shape(message: str, preferences: Sequence[str]) -> Shape:
    """The form the user's preferences ask of the answer to `message`."""
    prefix, enough = "", None
    asked = message.strip()
    steps = bool(_ASKS_FOR_STEPS.search(asked))
    for preference in preferences:
        if (
            _LIST.search(preference)
            and _ASKS_FOR_SEVERAL.match(asked)
            and (steps or not _ONLY_FOR_STEPS.search(preference))
        ):
            prefix = "- "
        if _SHORT.search(preference):
            enough = SHORT_ANSWER_WORDS
    return Shape(prefix, enough)
