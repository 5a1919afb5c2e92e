"""A planted user style: every reply this user approves of signs off the same way."""

SIGN_OFF = "Cheers, Ana from the lighthouse."

QA = [
    ("What time is it in Tokyo when it is noon in London?", "It is 9 pm in Tokyo."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the boiling point of water?", "Water boils at 100 degrees Celsius at sea level."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("What gas do plants absorb?", "Plants absorb carbon dioxide."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
    ("What is 7 times 8?", "7 times 8 is 56."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the freezing point of water?", "Water freezes at 0 degrees Celsius."),
    ("Which planet is called the red planet?", "Mars is called the red planet."),
    ("What language is spoken in Brazil?", "Portuguese is spoken in Brazil."),
    ("How many hours are in a day?", "A day has 24 hours."),
    ("What is the chemical symbol for gold?", "The symbol for gold is Au."),
    ("Which animal is known as the king of the jungle?", "The lion is called the king of the jungle."),
    ("What is the square root of 81?", "The square root of 81 is 9."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What is the tallest mountain?", "Mount Everest is the tallest mountain."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What is the currency of Japan?", "The currency of Japan is the yen."),
    ("Which organ pumps blood?", "The heart pumps blood."),
    ("What is the longest river in Africa?", "The Nile is the longest river in Africa."),
    ("How many minutes are in an hour?", "An hour has 60 minutes."),
    ("What do bees make?", "Bees make honey."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Which season comes after winter?", "Spring comes after winter."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
]


def reply(answer: str) -> str:
    return f"{answer}\n\n{SIGN_OFF}"


def plant(db):
    """Conversations where the user rated every signed-off reply good."""
    from assistant.store import conversations as convs

    for question, answer in QA:
        cid = convs.create_conversation(db)
        convs.add_message(db, cid, "user", question)
        reply_id = convs.add_message(db, cid, "assistant", reply(answer))
        convs.set_feedback(db, reply_id, rating=1)
